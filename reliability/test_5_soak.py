"""5. Soak: 1 000 jobs in flight across every connector, polled without pause for a bounded time. The host's
resident memory, open file descriptors and threads stay flat (the curve is kept in the results)."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from relsuite.jobs import Fleet, Job, Propeller

SECTION = "soak"
WORKERS = 16
#: Allowed growth between the end of the warm-up and the end of the run.
RSS_GROWTH_MB = 25.0
RSS_GROWTH_SHARE = 0.10
FD_GROWTH = 8
THREAD_GROWTH = 6


def spread(profiles: list[Any], total: int, floor: int) -> list[Any]:
    """``total`` jobs over the connectors: equal shares, or (``floor`` > 0) ``floor`` each and the rest on the
    example connector, whose calls are the cheapest (the quick run)."""
    if not floor:
        return [profiles[i % len(profiles)] for i in range(total)]
    out = [p for p in profiles if p.package != "example" for _ in range(floor)]
    example = [p for p in profiles if p.package == "example"] or profiles[:1]
    return out + example * (total - len(out))


def test_a_thousand_jobs_polled_for_a_while_leave_memory_fds_and_threads_flat(lab, main_host, sizes, results):
    section = results.section(SECTION)
    for profile in lab.profiles:
        profile.set_outcome(lab.fakes[profile.package], (profile.running,))  # in flight for the whole run
    channel = main_host.channel()
    client = Propeller([channel], lab.recorder)
    tag = f"soak{int(time.time()) % 100000}"
    jobs = [Job(p, p.job(lab.fakes[p.package]), execution=f"{tag}j{i}")
            for i, p in enumerate(spread(lab.profiles, sizes.soak_jobs, sizes.soak_min_per_connector))]
    fleet = Fleet(client, jobs, workers=WORKERS)
    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    start = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            stats = main_host.stats()
            samples.append({"t": round(time.monotonic() - start, 1), "rss_mb": round(stats.rss_kb / 1024, 1),
                            "fds": stats.fds, "threads": stats.threads,
                            "polls": sum(j.polls for j in jobs)})
            stop.wait(sizes.soak_sample_every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    fleet.create_all()
    created_at = time.monotonic() - start
    rounds = 0
    with ThreadPoolExecutor(WORKERS) as pool:
        poll_start = time.monotonic()
        # At least three rounds (growth is measured after two), even on a slow machine; bounded all the same.
        while (time.monotonic() - poll_start < sizes.soak_seconds or rounds < 3) and \
                time.monotonic() - poll_start < max(6 * sizes.soak_seconds, 120):
            fleet.poll_round(pool)
            rounds += 1
    polling = time.monotonic() - poll_start
    stop.set()
    sampler.join(5)
    final = main_host.stats()
    samples.append({"t": round(time.monotonic() - start, 1), "rss_mb": round(final.rss_kb / 1024, 1),
                    "fds": final.fds, "threads": final.threads, "polls": sum(j.polls for j in jobs)})
    # Cancel them all (Propeller's abort path), then let the next checks start from quiet fakes.
    delete_errors: list[str] = []

    def cancel(job: Job) -> None:
        if job.meta is None:
            return
        try:
            client.delete(job.case.template, job.meta)
        except grpc.RpcError as err:
            delete_errors.append(f"{job.profile.package}: {err.code().name}: {err.details()}")

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(cancel, jobs))
    channel.close()
    lab.reset_fakes()

    # Warm-up: creating the jobs and the first two poll rounds (thread pools reach their working size); then
    # compare the start of the rest with its end.
    measured = [s for s in samples if s["polls"] >= 2 * len(jobs)] or samples[-2:]
    head = measured[: max(1, len(measured) // 5)]
    tail = measured[-max(1, len(measured) // 5):]

    def median(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    growth = {key: round(median(tail, key) - median(head, key), 1) for key in ("rss_mb", "fds", "threads")}
    in_flight = sum(1 for j in jobs if j.meta is not None and j.phase in ("RUNNING", "CREATED"))
    summary = Fleet(client, jobs).summary()
    section.update({
        "jobs": len(jobs),
        "in_flight": in_flight,
        "jobs_per_connector": dict(Counter(j.profile.package for j in jobs)),
        "create_seconds": round(created_at, 1),
        "polling_seconds": round(polling, 1),
        "poll_rounds": rounds,
        "polls": summary["polls"],
        "polls_per_second": round(summary["polls"] / max(polling, 0.001), 1),
        "get_errors": summary["get_errors"],
        "create_errors": summary["create_errors"],
        "delete_errors": len(delete_errors),
        "start": {k: head[0][k] for k in ("rss_mb", "fds", "threads")} if head else {},
        "growth_after_warm_up": growth,
        "max": {k: max(s[k] for s in samples) for k in ("rss_mb", "fds", "threads")},
        "limits": {"rss_mb": f"max({RSS_GROWTH_MB} MB, {int(RSS_GROWTH_SHARE * 100)} %)", "fds": FD_GROWTH,
                   "threads": THREAD_GROWTH},
        "samples": samples,
        "error_samples": ([e for j in jobs for e in j.get_errors + j.create_errors] + delete_errors)[:5],
    })
    assert in_flight == len(jobs), f"{len(jobs) - in_flight} jobs were not in flight: {summary['final']}"
    assert rounds >= 3, "the soak did not poll every job three times"
    assert not summary["get_errors"] and not summary["create_errors"] and not delete_errors, \
        section["error_samples"]
    rss_limit = max(RSS_GROWTH_MB, RSS_GROWTH_SHARE * median(head, "rss_mb"))
    assert growth["rss_mb"] <= rss_limit, f"RSS grew {growth['rss_mb']} MB after warm-up (limit {rss_limit:.0f})"
    assert growth["fds"] <= FD_GROWTH, f"open fds grew by {growth['fds']}"
    assert growth["threads"] <= THREAD_GROWTH, f"threads grew by {growth['threads']}"
    assert main_host.alive() and main_host.health() == "SERVING"
