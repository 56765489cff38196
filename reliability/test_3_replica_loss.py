"""3. Replica loss: two host processes behind a round-robin client (a channel per replica, alternating per RPC
as grpc's round_robin does for Propeller), 200 jobs in flight across every connector, one replica SIGKILLed
mid-run. Every job reaches its final phase through the survivor and the services hold exactly one job each."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from relsuite.jobs import Fleet, Job, Propeller, remote_jobs_per_attempt

SECTION = "replica_loss"
RUNNING_POLLS = 4  # each job reports RUNNING this many times before it succeeds


def test_all_jobs_finish_through_the_survivor_when_a_replica_is_killed(lab, main_host, spare_host, sizes,
                                                                          results):
    section = results.section(SECTION)
    # The survivor is the suite's main host, the victim a spare replica (both warm).
    hosts = [spare_host, main_host]
    try:
        for profile in lab.profiles:
            profile.set_outcome(lab.fakes[profile.package], (*[profile.running] * RUNNING_POLLS, profile.success))
        channels = [h.channel() for h in hosts]
        client = Propeller(channels, lab.recorder)
        tag = f"rep{int(time.time()) % 100000}"
        jobs = [Job(p, p.job(lab.fakes[p.package]), execution=f"{tag}j{i}")
                for i, p in zip(range(sizes.replica_jobs), _cycle(lab.profiles), strict=False)]
        # A create that failed because its replica died is sent again unchanged, as Propeller does after a
        # restart (wire reference §2.11): the survivor must adopt the job the dead replica may have started.
        fleet = Fleet(client, jobs, workers=32, recreate="same-attempt")
        victim = hosts[0]
        killed_at: list[float] = []
        errors_at_kill: list[str] = []

        def on_error(job: Job, err: grpc.RpcError) -> None:
            index = getattr(err, "channel_index", None)
            if killed_at:
                errors_at_kill.append(f"{err.code().name}")
            if index is not None and not hosts[index].alive():
                client.down.add(index)  # what round_robin does once the subchannel's connection fails

        fleet.on_error = on_error
        kill_after = len(jobs) // 2
        created = threading.Event()

        def create_all() -> None:
            with ThreadPoolExecutor(16) as pool:
                for i, job in enumerate(jobs):
                    if i == kill_after:
                        victim.kill()
                        killed_at.append(time.monotonic())
                    pool.submit(fleet.create_one, job, 0.05)
                    time.sleep(0.01)
            created.set()

        start = time.monotonic()
        creator = threading.Thread(target=create_all)
        creator.start()
        with ThreadPoolExecutor(32) as pool:
            while time.monotonic() - start < 240:
                fleet.poll_round(pool)
                if created.is_set() and all(j.done for j in jobs):
                    break
                time.sleep(0.05)
        creator.join()
        seconds = time.monotonic() - start
        survivor_alive = hosts[1].alive() and hosts[1].health() == "SERVING"
        for channel in channels:
            channel.close()
    finally:
        lab.reset_fakes()
        hosts[0].stop(10)

    remote: list[str] = []
    for profile in lab.profiles:
        remote += profile.jobs(lab.fakes[profile.package])
    per_attempt, _ = remote_jobs_per_attempt(jobs, remote)
    summary = fleet.summary()
    calls = {f"{'killed' if i == 0 else 'survivor'} {method}": n for (i, method), n in sorted(client.calls.items())}
    section.update(summary)
    section.update({
        "connectors": [p.package for p in lab.profiles],
        "seconds": round(seconds, 1),
        "killed_after_creates": kill_after,
        "victim_exit": victim.proc.returncode if victim.proc else None,
        "survivor_serving_at_the_end": survivor_alive,
        "rpcs_by_replica": calls,
        "failed_rpcs_after_kill": len(errors_at_kill),
        "remote_jobs": sum(per_attempt.values()),
        "duplicated_jobs": sum(1 for n in per_attempt.values() if n > 1),
        "jobs_without_a_remote_job": sum(1 for j in jobs if per_attempt[j.attempts[-1]] == 0),
        "not_finished": [f"{j.execution} ({j.profile.package}): {j.phase} {j.message[:80]}"
                         for j in jobs if not j.ok][:10],
    })
    assert summary["as_expected"] == len(jobs), f"jobs not SUCCEEDED: {section['not_finished']}"
    assert section["remote_jobs"] == len(jobs) and not section["duplicated_jobs"], section
    assert summary["max_strikes"] <= 1, "a job took more than one GetTask error from the replica loss"
    assert victim.proc is not None and victim.proc.returncode == -9
    assert survivor_alive
    assert client.calls[(1, "GetTask")] > 0 and errors_at_kill, "the kill happened with no RPC in flight"


def _cycle(items: list[Any]) -> Any:
    while True:
        yield from items


def test_a_fresh_replica_answers_concurrent_first_calls(lab):
    """A replica that just started gets eight creates at once (found by this suite: the openai connector read its
    half-imported SDK module on concurrent first calls; fixed)."""
    if "openai" not in lab.fakes:
        pytest.skip("openai connector not installed")
    profile = lab.profile("openai")
    fake = lab.fakes["openai"]
    with lab.running("cold-openai", "--connectors", "openai") as host, host.channel() as channel:
        client = Propeller([channel], lab.recorder)
        case = profile.job(fake)
        jobs = [Job(profile, case, execution=f"cold{i}") for i in range(8)]
        def create(job: Job) -> str:
            try:
                client.create(case.template, case.inputs, job.identity())
                return "OK"
            except grpc.RpcError as err:
                return f"{err.code().name}: {err.details()}"

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(create, jobs))
    assert answers == ["OK"] * len(jobs), answers
