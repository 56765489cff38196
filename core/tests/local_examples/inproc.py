"""In-memory connectors for fast in-process tests of the local runner: they record every call they get."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from flyteidl.core import literals_pb2

from flyteconnectors.core import (
    AsyncConnector,
    CallContext,
    JobMeta,
    LogLink,
    Phase,
    Resource,
    SyncConnector,
    TaskConfig,
    TaskContext,
)
from flyteconnectors.core import literals as fc_literals


class ScriptConfig(TaskConfig):
    #: Phases the job reports on successive polls; the last one sticks.
    phases: list[str] = ["SUCCEEDED"]
    message: str = ""
    #: Write the outputs to <output_prefix>/outputs.pb instead of returning them.
    write_outputs_file: bool = False
    #: Seconds create takes (a slow service).
    create_delay: float = 0.0


class ScriptMeta(JobMeta):
    job_id: str


class Calls:
    """What the service saw: one list of (operation, job id, monotonic time, thread name)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, float, str]] = []
        self.jobs: dict[str, dict[str, Any]] = {}

    def add(self, op: str, job_id: str) -> None:
        with self.lock:
            self.log.append((op, job_id, time.monotonic(), threading.current_thread().name))

    def times(self, op: str) -> list[float]:
        return [t for o, _, t, _ in self.log if o == op]

    def ops(self) -> list[str]:
        return [o for o, *_ in self.log]

    def clear(self) -> None:
        with self.lock:
            self.log.clear()
            self.jobs.clear()


CALLS = Calls()


class ScriptedJob(AsyncConnector[ScriptConfig, ScriptMeta]):
    """Reports the configured phases; ``async def`` so calls run on the runner's loop thread."""

    name = "Scripted"
    task_type = "scripted-job"

    async def create(self, task: TaskContext[ScriptConfig]) -> ScriptMeta:
        job_id = task.idempotency_key
        CALLS.add("create", job_id)
        if task.config.create_delay:
            await asyncio.sleep(task.config.create_delay)
            CALLS.add("created", job_id)
        CALLS.jobs.setdefault(job_id, {"config": task.config, "inputs": dict(task.inputs), "polls": 0,
                                       "prefix": task.output_prefix})
        return ScriptMeta(job_id=job_id)

    async def get(self, job: ScriptMeta, ctx: CallContext) -> Resource:
        CALLS.add("get", job.job_id)
        state = CALLS.jobs[job.job_id]
        config: ScriptConfig = state["config"]
        phase = Phase[config.phases[min(state["polls"], len(config.phases) - 1)]]
        state["polls"] += 1
        outputs = {"total": sum(v for v in state["inputs"].values() if isinstance(v, int))}
        if phase is Phase.SUCCEEDED and config.write_outputs_file:
            _write_outputs(ctx.output_prefix, outputs)
            outputs = None
        return Resource(phase, config.message, outputs if phase is Phase.SUCCEEDED else None,
                        log_links=[LogLink("Scripted console", f"https://scripted.example/{job.job_id}")])

    async def delete(self, job: ScriptMeta, ctx: CallContext) -> None:
        CALLS.add("delete", job.job_id)


def _write_outputs(prefix: str, outputs: dict[str, Any]) -> None:
    """What a remote job does with its results: a LiteralMap at <output_prefix>/outputs.pb (a local dir here)."""
    lm = literals_pb2.LiteralMap(literals={k: fc_literals.to_literal(v, None, k) for k, v in outputs.items()})
    path = Path(prefix.removeprefix("file://"))
    path.mkdir(parents=True, exist_ok=True)
    (path / "outputs.pb").write_bytes(lm.SerializeToString())


class SlowAnswer(SyncConnector[ScriptConfig]):
    """A sync request that takes ``create_delay`` seconds."""

    name = "Slow answer"
    task_type = "slow-answer"

    async def do(self, task: TaskContext[ScriptConfig]) -> Resource:
        CALLS.add("do", "")
        await asyncio.sleep(task.config.create_delay)
        return Resource.succeeded({"total": 0})


CONNECTORS = (ScriptedJob, SlowAnswer)
