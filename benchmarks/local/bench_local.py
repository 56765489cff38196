"""Per-task overhead of local connector execution: flyteconnectors vs flytekit's own local connector path.

A workflow chains N connector tasks whose job has already finished when it is first checked. The same
workflow shape runs three ways in this one process, alternating in every repeat:

* ``ours``: ``flyteconnectors.core.local.ConnectorTask`` with an ``AsyncConnector`` (plain ``def`` methods,
  as connectors wrapping a blocking SDK are written);
* ``flytekit``: a ``PythonTask`` with flytekit's ``AsyncConnectorExecutorMixin`` and a trivial flytekit
  ``AsyncConnectorBase`` registered in-process;
* ``baseline``: plain ``@task`` functions, i.e. what flytekit's local workflow engine costs per node anyway.

Per-task overhead = (workflow time - median baseline workflow time) / N. Prints one JSON document.

    uv run python benchmarks/local/bench_local.py --n 10 --repeats 5
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import flytekit
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit import task, workflow
from flytekit.core.base_task import PythonTask
from flytekit.core.interface import Interface
from flytekit.extend.backend.base_connector import (
    AsyncConnectorBase,
    AsyncConnectorExecutorMixin,
    ConnectorRegistry,
    Resource,
    ResourceMeta,
)

from flyteconnectors.core import AsyncConnector, CallContext, JobMeta, TaskConfig, TaskContext
from flyteconnectors.core import Resource as FcResource
from flyteconnectors.core.local import ConnectorTask


# ============================================================================================ ours
class InstantConfig(TaskConfig):
    label: str = "bench"


class InstantMeta(JobMeta):
    job_id: str


class InstantJob(AsyncConnector[InstantConfig, InstantMeta]):
    """A job that is done by the time anyone asks."""

    name = "Instant"
    task_type = "bench-instant"

    def create(self, task: TaskContext[InstantConfig]) -> InstantMeta:
        return InstantMeta(job_id=f"{task.idempotency_key}:{task.inputs['x']}")

    def get(self, job: InstantMeta, ctx: CallContext) -> FcResource:
        return FcResource.succeeded({"y": int(job.job_id.rsplit(":", 1)[1]) + 1})

    def delete(self, job: InstantMeta, ctx: CallContext) -> None:
        pass


ours_step = ConnectorTask("ours_step", InstantJob, InstantConfig(), inputs={"x": int}, outputs={"y": int})


# ============================================================================================ flytekit's path
@dataclass
class FkMeta(ResourceMeta):
    x: int


class FkInstantConnector(AsyncConnectorBase):
    name = "Flytekit Instant"

    def __init__(self) -> None:
        super().__init__(task_type_name="fk-bench-instant", metadata_type=FkMeta)

    def create(self, task_template: Any, inputs: Any = None, **kwargs: Any) -> FkMeta:
        return FkMeta(x=inputs.literals["x"].scalar.primitive.integer)

    def get(self, resource_meta: FkMeta, **kwargs: Any) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED, outputs={"y": resource_meta.x + 1})

    def delete(self, resource_meta: FkMeta, **kwargs: Any) -> None:
        pass


ConnectorRegistry.register(FkInstantConnector(), override=True)


class FkInstantTask(AsyncConnectorExecutorMixin, PythonTask):
    def __init__(self, name: str) -> None:
        super().__init__(task_type="fk-bench-instant", name=name, task_config=None,
                         interface=Interface(inputs={"x": int}, outputs={"y": int}))


fk_step = FkInstantTask("fk_step")


# ============================================================================================ baseline
@task
def plain_step(x: int) -> int:
    return x + 1


# ============================================================================================ workflows
def chain(step: Any, n: int) -> Any:
    @workflow
    def wf(x: int) -> int:
        for _ in range(n):
            x = step(x=x)
        return x

    return wf


def timed(wf: Any, n: int) -> float:
    start = time.perf_counter()
    result = wf(x=0)
    elapsed = time.perf_counter() - start
    assert result == n, result
    return elapsed


def summary(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10, help="connector tasks per workflow")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one run of ours")
    parser.add_argument("--display", choices=("plain", "rich", "off"), default="plain",
                        help="our progress display; flytekit always draws its own")
    parser.add_argument("--json-out", help="also write the JSON here")
    args = parser.parse_args()
    os.environ["FLYTECONNECTORS_LOCAL_PROGRESS"] = args.display
    n = args.n
    workflows = {"ours": chain(ours_step, n), "flytekit": chain(fk_step, n), "baseline": chain(plain_step, n)}
    for kind in ("baseline", "ours"):  # warm-up: imports, first serialization, the runner's loop thread
        timed(workflows[kind], n)

    times: dict[str, list[float]] = {k: [] for k in workflows}
    order = list(workflows)
    for r in range(args.repeats):
        for kind in order[r % 3:] + order[:r % 3]:  # rotate so no kind always runs first
            times[kind].append(timed(workflows[kind], n))

    # Against the median baseline, not the same repeat's: on a shared machine the pairwise difference mostly
    # measures the noise of two runs.
    base = statistics.median(times["baseline"])
    per_task = {k: [(t - base) * 1000 / n for t in times[k]] for k in ("ours", "flytekit")}
    result = {
        "benchmark": "local connector execution, per-task overhead",
        "n_tasks": n,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "flytekit": flytekit.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "workflow_seconds": {k: summary(v) for k, v in times.items()},
        "per_task_wall_ms": {k: summary([t * 1000 / n for t in v]) for k, v in times.items()},
        "per_task_overhead_ms": {k: summary(v) for k, v in per_task.items()},
        # Where the win comes from: flytekit sleeps 1 s before every status check; the rest is its machinery.
        "flytekit_overhead_without_its_1s_sleep_ms": summary([v - 1000 for v in per_task["flytekit"]]),
        "ratio_ours_to_flytekit": {
            "median": round(statistics.median(per_task["ours"]) / statistics.median(per_task["flytekit"]), 4),
            "worst": round(max(per_task["ours"]) / min(per_task["flytekit"]), 4),
        },
        "display": args.display,
        "goal": 0.05,
    }
    result["goal_met"] = result["ratio_ours_to_flytekit"]["worst"] <= 0.05

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        timed(workflows["ours"], n)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue(), file=sys.stderr)
    text = json.dumps(result, indent=2)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
