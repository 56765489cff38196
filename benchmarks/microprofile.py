"""Where our host's own time goes per RPC, without the network: cProfile of CreateTask + GetTask through the v1
servicer and the dispatcher, for the trivial benchmark connector. Prints one JSON document.

    python benchmarks/microprofile.py [--pairs 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench_connectors"))


class _Context:
    """The parts of grpc.aio's ServicerContext the servicer uses."""

    def time_remaining(self) -> float:
        return 10.0

    async def abort(self, code: Any, message: str) -> None:
        raise RuntimeError(f"{code}: {message}")


async def _pairs(n: int, profiler: cProfile.Profile | None) -> float:
    import fc_bench_connectors

    from flyteconnectors.core.dispatcher import Dispatcher
    from flyteconnectors.core.host import services_v1
    from flyteconnectors.core.registry import Registry
    from flyteconnectors.core.testing import builders

    registry = Registry(lambda package: {})
    registry.register(*fc_bench_connectors.CONNECTORS, package="bench")
    service = services_v1.AsyncAgentService(Dispatcher(registry))
    template = builders.task_template("bench-trivial")
    requests = [builders.create_request(template, {}, ident=builders.identity(f"e{i}")) for i in range(n + 100)]
    context = _Context()
    for request in requests[:100]:  # warm-up
        meta = (await service.CreateTask(request, context)).resource_meta
        await service.GetTask(builders.get_request(template, meta), context)
    if profiler is not None:
        profiler.enable()
    started = time.perf_counter()
    for request in requests[100:]:
        meta = (await service.CreateTask(request, context)).resource_meta
        await service.GetTask(builders.get_request(template, meta), context)
    elapsed = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    plain = asyncio.run(_pairs(args.pairs, None))
    profiler = cProfile.Profile()
    asyncio.run(_pairs(args.pairs, profiler))
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = "/".join(Path(filename).parts[-2:])
        rows.append({"function": f"{name} ({short}:{line})", "calls_per_rpc": round(calls / (2 * args.pairs), 2),
                     "self_pct": round(100 * tottime / total, 1), "cumulative_pct": round(100 * cumtime / total, 1)})
    rows.sort(key=lambda r: r["self_pct"], reverse=True)
    print(json.dumps({"pairs": args.pairs, "us_per_rpc": round(plain * 1e6 / (2 * args.pairs), 1),
                      "top_self": rows[:args.top]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
