"""2. Service faults: every connector's fake answers 429/500/503, hangs past the deadline and loses responses
(after the side effect) on 20 % of its requests. Every job still reaches its true final phase, the service
holds exactly one job per task attempt, and no GetTask answers a gRPC error (one of Propeller's six strikes)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from relsuite.jobs import Fleet, Job, Propeller, remote_jobs_per_attempt

SECTION = "service_faults"
KINDS = ("429", "500", "503", "hang", "lost-503", "dropped")


def inject(fake: Any, rate: float, seed: int, hang: float) -> list[Any]:
    """The fault mix: each kind once early on (so a small run sees every kind), then each kind at a rate chosen
    so that ``rate`` of all requests get one of them."""
    fake._rng.seed(seed)  # fakes default to one seed; give each its own sequence
    each = 1 - (1 - rate) ** (1 / len(KINDS))
    early = [
        fake.inject_fault(429, nth=3, headers={"Retry-After": "0"}),
        fake.inject_fault(None, nth=6, hang=hang),
        fake.inject_fault(503, nth=9, after=True),
        fake.inject_fault(500, nth=12),
        fake.inject_fault(None, nth=15, drop=True),
        fake.inject_fault(503, nth=18),
    ]
    return [
        *early,
        fake.inject_fault(429, rate=each, headers={"Retry-After": "0"}),
        fake.inject_fault(500, rate=each),
        fake.inject_fault(503, rate=each),
        fake.inject_fault(None, rate=each, hang=hang),
        fake.inject_fault(503, rate=each, after=True),
        fake.inject_fault(None, rate=each, drop=True),
    ]


def run_connector(lab: Any, host: Any, profile: Any, count: int, rate: float, seed: int,
                  deadline: float) -> dict[str, Any]:
    fake = lab.fakes[profile.package]
    tag = f"flt{profile.package[:4]}{int(time.time()) % 100000}"
    half = max(1, count // 2)
    outcomes = [("SUCCEEDED", (profile.running, profile.running, profile.success)),
                ("FAILED", (profile.running, profile.failure))]
    jobs: list[Job] = []
    faults = inject(fake, rate, seed, deadline + 1.0)
    journal_before = len(fake.requests())
    channel = host.channel()
    client = Propeller([channel], lab.recorder, timeout=deadline)
    start = time.monotonic()
    try:
        for index, (expected, steps) in enumerate(outcomes):
            # New jobs get this outcome; wait out hung creates of the previous group so none takes the wrong one.
            if index:
                time.sleep(deadline + 1.5)
            profile.set_outcome(fake, steps)
            group = [Job(profile, profile.job(fake), execution=f"{tag}g{index}j{i}", expected=expected)
                     for i in range(half)]
            fleet = Fleet(client, group, workers=len(group))
            fleet.create_all()
            jobs += group
        fleet = Fleet(client, jobs, workers=len(jobs))
        fleet.poll_until_done(limit=180, interval=0.1)
    finally:
        early = dict(zip(("429", "hang", "lost-503", "500", "dropped", "503"), faults[:6], strict=True))
        fired = {kind: f.fired + early[kind].fired for kind, f in zip(KINDS, faults[6:], strict=True)}
        fake.clear_faults()
        channel.close()
    seconds = time.monotonic() - start
    per_attempt, _ = remote_jobs_per_attempt(jobs, profile.jobs(fake))
    duplicates = {d: n for d, n in per_attempt.items() if n > 1}
    reached = [j for j in jobs if j.meta is not None]
    missing = [j.execution for j in reached if per_attempt[j.attempts[-1]] != 1]
    # Jobs the service started for an attempt whose CreateTask failed (deadline passed): Propeller moves on to
    # the next attempt and never cancels them (wire reference §2.10).
    orphans = sum(per_attempt[d] for j in jobs for d in j.attempts[:-1])
    requests = len(fake.requests()) - journal_before
    summary = Fleet(client, jobs).summary()
    summary.update({
        "seconds": round(seconds, 1),
        "service_requests": requests,
        "faults_fired": fired,
        "fault_share": round(sum(fired.values()) / max(requests, 1), 3),
        "remote_jobs": sum(per_attempt.values()),
        "duplicates": len(duplicates),
        "orphaned_by_failed_create": orphans,
        "attempts_without_exactly_one_job": len(missing),
        "wrong_final_phase": [f"{j.execution}: expected {j.expected}, got {j.phase} ({j.message[:120]})"
                              for j in jobs if not j.ok][:10],
        "get_error_samples": [e for j in jobs for e in j.get_errors][:5],
        "create_error_samples": [e for j in jobs for e in j.create_errors][:5],
    })
    return summary


def test_every_job_reaches_its_true_final_phase_under_service_faults(lab, main_host, sizes, results):
    section = results.section(SECTION)
    section["rate"] = sizes.fault_rate
    section["seed"] = lab.seed
    section["rpc_deadline"] = sizes.fault_deadline
    section["kinds"] = list(KINDS)
    section["jobs_per_connector"] = sizes.fault_jobs
    per: dict[str, Any] = {}
    lock = threading.Lock()

    def one(profile: Any) -> None:
        seed = lab.seed + sum(map(ord, profile.package))
        summary = run_connector(lab, main_host, profile, sizes.fault_jobs, sizes.fault_rate, seed,
                                sizes.fault_deadline)
        with lock:
            per[profile.package] = summary

    with ThreadPoolExecutor(len(lab.profiles)) as pool:
        for future in [pool.submit(one, p) for p in lab.profiles]:
            future.result()
    lab.reset_fakes()
    section["per_connector"] = per
    totals: Counter[str] = Counter()
    for summary in per.values():
        totals.update({k: summary[k] for k in ("jobs", "as_expected", "get_errors", "create_errors", "duplicates",
                                                 "attempts_without_exactly_one_job", "service_requests")})
        totals.update({f"fault {k}": v for k, v in summary["faults_fired"].items()})
    section["totals"] = dict(totals)

    problems = []
    for package, s in per.items():
        if s["as_expected"] != s["jobs"]:
            problems.append(f"{package}: {s['jobs'] - s['as_expected']} of {s['jobs']} jobs did not reach their "
                            f"true final phase: {s['wrong_final_phase'][:3]}")
        if s["get_errors"]:
            problems.append(f"{package}: {s['get_errors']} GetTask gRPC errors: {s['get_error_samples'][:3]}")
        if s["duplicates"] or s["attempts_without_exactly_one_job"]:
            problems.append(f"{package}: {s['duplicates']} attempts with duplicate remote jobs, "
                            f"{s['attempts_without_exactly_one_job']} without exactly one")
    assert not problems, "\n".join(problems)
    assert all(sum(s["faults_fired"].values()) > 0 for s in per.values()), "some fake injected no fault"


def test_every_installed_connector_package_has_a_profile(lab):
    """A connector without a profile would be fuzzed (through ListAgents) but not faulted, killed or soaked."""
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group="flyteconnectors")}
    covered = {p.package for p in lab.profiles}
    missing = sorted(installed - covered)
    assert not missing, f"add a profile to reliability/relsuite/profiles.py for: {', '.join(missing)}"
