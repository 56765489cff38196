"""Run sizes. Small by default (CI: ``pytest reliability/``), full with ``RELIABILITY_FULL=1`` (``nox -s reliability``).

Every count can be overridden on its own, e.g. ``RELIABILITY_FUZZ_PER_RPC=2000``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Sizes:
    #: Malformed requests per RPC (hypothesis examples), plus a few oversized ones.
    fuzz_per_rpc: int
    #: Requests sent per hypothesis example (the example plus cheap field- and byte-wise variants).
    fuzz_fanout: int
    oversized_per_rpc: int
    #: Jobs per connector under injected service faults (half succeed, half fail at the service).
    fault_jobs: int
    fault_rate: float
    #: Propeller's per-RPC deadline in the fault run (its default is 10 s; ``timeouts`` can lower it).
    fault_deadline: float
    #: Jobs in flight across two replicas when one is killed.
    replica_jobs: int
    #: Pollers and seconds of load around SIGTERM.
    drain_seconds: float
    #: In-flight jobs and seconds of polling for the soak.
    soak_jobs: int
    #: 0: the jobs are spread evenly over the connectors; N: N per connector, the rest on the example connector.
    soak_min_per_connector: int
    soak_seconds: float
    #: Seconds between RSS/fd/thread samples.
    soak_sample_every: float


QUICK = Sizes(fuzz_per_rpc=250, fuzz_fanout=4, oversized_per_rpc=2, fault_jobs=8, fault_rate=0.2, fault_deadline=4.0,
              replica_jobs=200,
              drain_seconds=4.0, soak_jobs=1000, soak_min_per_connector=25, soak_seconds=10.0, soak_sample_every=1.0)
FULL = Sizes(fuzz_per_rpc=10_000, fuzz_fanout=8, oversized_per_rpc=20, fault_jobs=40, fault_rate=0.2,
             fault_deadline=10.0, replica_jobs=200,
             drain_seconds=10.0, soak_jobs=1000, soak_min_per_connector=0, soak_seconds=300.0, soak_sample_every=5.0)


def is_full() -> bool:
    return os.environ.get("RELIABILITY_FULL", "").strip().lower() in ("1", "true", "yes", "full")


def mode() -> str:
    return "full" if is_full() else "quick"


def sizes() -> Sizes:
    base = FULL if is_full() else QUICK
    values = {}
    for f in fields(Sizes):
        raw = os.environ.get(f"RELIABILITY_{f.name.upper()}")
        values[f.name] = type(getattr(base, f.name))(raw) if raw else getattr(base, f.name)
    return Sizes(**values)
