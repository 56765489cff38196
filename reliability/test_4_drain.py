"""4. Drain: SIGTERM to one of two replicas under load. Health turns NOT_SERVING first (the client, like a load
balancer, stops sending to it), the calls in flight complete, the process exits within its grace period, and
the client sees no failed RPC."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from conftest import SPARE_FLAGS
from grpc_health.v1 import health_pb2, health_pb2_grpc
from relsuite.jobs import Fleet, Job, Propeller

SECTION = "drain"
DRAIN_DELAY = float(SPARE_FLAGS[1])
GRACE = float(SPARE_FLAGS[3])
WORKERS = 12


def test_sigterm_under_load_drains_without_a_failed_rpc(lab, main_host, spare_host, sizes, results):
    section = results.section(SECTION)
    draining = spare_host  # started with SPARE_FLAGS: --drain-delay 1 --grace-period 10
    other = main_host  # the replica that stays
    hosts = [draining, other]
    for profile in lab.profiles:
        fake = lab.fakes[profile.package]
        profile.set_outcome(fake, (profile.running, profile.running, profile.success))
        fake.set_latency((0.05, 0.4))  # calls take a while, so some are in flight when the signal comes
    channels = [h.channel() for h in hosts]
    client = Propeller(channels, lab.recorder)
    client.trace = True
    stop = threading.Event()
    failures: list[str] = []
    finished: list[Job] = []
    counter = itertools.count()
    marks: dict[str, float] = {}

    def watch() -> None:
        with draining.channel() as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
            try:
                for update in stream:
                    if update.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        marks["not_serving"] = time.monotonic()
                        client.down.add(0)  # the balancer takes the replica out
                        return
            except grpc.RpcError as err:
                marks.setdefault("watch_ended", time.monotonic())
                failures.append(f"health watch ended before NOT_SERVING: {err.code().name}")

    def work() -> None:
        while not stop.is_set():
            i = next(counter)
            profile = lab.profiles[i % len(lab.profiles)]
            job = Job(profile, profile.job(lab.fakes[profile.package]), execution=f"drn{i}x{int(marks['t'])}")
            fleet = Fleet(client, [job], workers=1, max_attempts=1)
            fleet.create_one(job)
            while not job.done and not stop.is_set():
                fleet.poll_one(job)
                time.sleep(0.05)
            if job.create_errors or job.get_errors:
                failures.extend(job.create_errors + job.get_errors)
            finished.append(job)

    marks["t"] = time.time() % 100000
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.3)
    with ThreadPoolExecutor(WORKERS) as pool:
        for _ in range(WORKERS):
            pool.submit(work)
        time.sleep(sizes.drain_seconds / 2)
        marks["sigterm"] = time.monotonic()
        draining.terminate()
        code = draining.wait(DRAIN_DELAY + GRACE + 5)
        marks["exited"] = time.monotonic()
        time.sleep(sizes.drain_seconds / 2)
        stop.set()
    watcher.join(5)
    for channel in channels:
        channel.close()
    for profile in lab.profiles:
        lab.fakes[profile.package].set_latency(None)
    lab.reset_fakes()
    other_alive = other.alive() and other.health() == "SERVING"

    sigterm = marks["sigterm"]
    in_flight = [t for t in client.traced if t[0] == 0 and t[2] < sigterm < t[3]]
    after = [t for t in client.traced if t[0] == 0 and t[2] >= sigterm]
    section.update({
        "replicas": 2,
        "load_workers": WORKERS,
        "drain_delay_s": DRAIN_DELAY,
        "grace_period_s": GRACE,
        "rpcs": len(client.traced),
        "failed_rpcs": sum(1 for t in client.traced if t[4] != "OK"),
        "rpcs_in_flight_on_the_draining_replica_at_sigterm": len(in_flight),
        "of_which_completed_ok": sum(1 for t in in_flight if t[4] == "OK"),
        "rpcs_sent_to_it_after_sigterm": len(after),
        "not_serving_after_s": round(marks.get("not_serving", float("nan")) - sigterm, 3),
        "exit_after_s": round(marks["exited"] - sigterm, 2),
        "exit_code": code,
        "jobs_finished": sum(1 for j in finished if j.done),
        "failure_samples": failures[:5],
    })
    assert code == 0, f"the draining host exited with {code}:\n{draining.stderr_tail()}"
    assert "not_serving" in marks, "health never reported NOT_SERVING"
    assert marks["not_serving"] < marks["exited"]
    assert marks["exited"] - sigterm <= DRAIN_DELAY + GRACE
    assert in_flight and all(t[4] == "OK" for t in in_flight), "calls in flight at SIGTERM did not complete"
    assert not failures and section["failed_rpcs"] == 0, failures[:5]
    assert other_alive
