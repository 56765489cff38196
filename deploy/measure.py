#!/usr/bin/env python3
"""Measure what one host process costs, for the resource requests in deploy/values.yaml and docs/deploy.md.

    python deploy/measure.py [--polls 300] [--jobs 8] [--only databricks snowflake]

Runs ``flyteconnectors serve`` (one process, as in a pod with ``workers = 1``) with every installed connector,
each pointed at its local fake (the sandbox specs), and reports as JSON:

* ``idle_rss_mib``: memory once the host serves, before any job (SDKs are imported on first use);
* per package: ``rss_after_mib`` once its jobs ran (its SDK loaded, clients cached), and the host's
  ``cpu_ms_per_get``: CPU time per GetTask of a RUNNING job (what Propeller sends for every running task every
  resync interval, 30 s by default), measured over ``--polls`` calls from ``--jobs`` client threads;
* ``rss_all_mib``: memory with every connector's SDK loaded.

The fakes run in this process, so the host's CPU figures exclude the service side. Numbers depend on the
machine: run it on your nodes' CPU type before sizing a large deployment.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--polls", type=int, default=300, help="GetTask calls per package")
    parser.add_argument("--jobs", type=int, default=8, help="running jobs (and client threads) per package")
    parser.add_argument("--only", nargs="*", help="packages to measure (default: every installed one)")
    args = parser.parse_args(argv)

    import grpc

    from flyteconnectors.core.sandbox import Sandbox, discover_specs
    from flyteconnectors.core.testing import builders
    from flyteconnectors.core.testing.host import PropellerClient

    specs, problems = discover_specs(args.only or None)
    if problems:
        print("\n".join(problems), file=sys.stderr)
    if not specs:
        print("no sandbox specs: install connector packages", file=sys.stderr)
        return 1
    sandbox = Sandbox(specs, say=lambda msg: print(msg, file=sys.stderr), local=False)
    report: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "load_average_1m": os.getloadavg()[0], "packages": {}}
    try:
        sandbox.start()
        assert sandbox.host_proc is not None
        pid = sandbox.host_proc.pid
        time.sleep(1.0)
        report["idle_rss_mib"] = round(rss_mib(pid), 1)
        channel = grpc.insecure_channel(f"127.0.0.1:{sandbox.port}")
        client = PropellerClient(channel, timeout=10.0)
        for spec in specs:
            fake = sandbox.fakes[spec.package]
            cases = list(spec.cases(fake))
            running = [c for c in cases if c.cancel and c.script]
            if not running:
                report["packages"][spec.package] = {"note": "no running-job case in its sandbox spec"}
                continue
            case = running[0]
            jobs = []
            for i in range(args.jobs):
                fake.script_next_job(*case.script)  # type: ignore[misc]
                ident = builders.identity(f"measure{i}", node_id=f"{spec.package}{i}")
                jobs.append(client.create(case.template, case.inputs, ident=ident))
            for meta in jobs:  # first polls: SDK clients built and cached
                client.get(case.template, meta)
            per_thread = max(1, args.polls // args.jobs)

            def poll(meta: bytes, template: Any = case.template, n: int = per_thread) -> list[float]:
                took = []
                for _ in range(n):
                    start = time.perf_counter()
                    client.get(template, meta)
                    took.append(time.perf_counter() - start)
                return took

            cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
            with ThreadPoolExecutor(args.jobs) as pool:
                latencies = [t for batch in pool.map(poll, jobs) for t in batch]
            cpu_used, wall = cpu_seconds(pid) - cpu_before, time.perf_counter() - wall_before
            for meta in jobs:
                client.delete(case.template, meta)
            report["packages"][spec.package] = {
                "task_type": case.template.type,
                "gets": len(latencies),
                "cpu_ms_per_get": round(1000 * cpu_used / len(latencies), 2),
                "gets_per_s": round(len(latencies) / wall, 1),
                "latency_ms_median": round(1000 * statistics.median(latencies), 1),
                "rss_after_mib": round(rss_mib(pid), 1),
            }
        report["rss_all_mib"] = round(rss_mib(pid), 1)
        channel.close()
    finally:
        sandbox.stop()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
