"""Toy connectors used by the core's own tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

from flyteconnectors.core import (
    AsyncConnector,
    CallContext,
    JobMeta,
    JobNotFound,
    Phase,
    Resource,
    StateMap,
    SyncConnector,
    TaskConfig,
    TaskContext,
    TransientServiceError,
)


class ToyConfig(TaskConfig):
    steps: list[str] = ["RUNNING", "DONE"]
    sleep: float = 0.0
    fail_get_times: int = 0


class ToyMeta(JobMeta):
    job_id: str


STATES = StateMap({"PENDING": Phase.QUEUED, "RUNNING": Phase.RUNNING, "DONE": Phase.SUCCEEDED,
                   "BROKEN": Phase.FAILED, "CANCELLED": Phase.ABORTED}, service="toy")

JOBS: dict[str, dict] = {}
LOCK = threading.Lock()


class ToyJob(AsyncConnector[ToyConfig, ToyMeta]):
    name = "Toy"
    task_type = "toy_job"

    def create(self, task: TaskContext[ToyConfig]) -> ToyMeta:
        with LOCK:
            JOBS.setdefault(task.idempotency_key, {"steps": list(task.config.steps), "i": 0,
                                                    "inputs": dict(task.inputs),
                                                    "fail": task.config.fail_get_times, "deleted": False})
        if task.config.sleep:
            time.sleep(task.config.sleep)
        return ToyMeta(job_id=task.idempotency_key)

    def get(self, job: ToyMeta, ctx: CallContext) -> Resource:
        with LOCK:
            state = JOBS.get(job.job_id)
            if state is None:
                raise JobNotFound(job.job_id)
            if state["fail"] > 0:
                state["fail"] -= 1
                raise TransientServiceError("503 try later")
            step = state["steps"][min(state["i"], len(state["steps"]) - 1)]
            state["i"] += 1
        outputs = {"echo": state["inputs"].get("x", 0) * 2}
        return STATES.resource(step, outputs=outputs)

    def delete(self, job: ToyMeta, ctx: CallContext) -> None:
        with LOCK:
            state = JOBS.get(job.job_id)
            if state is None:
                raise JobNotFound(job.job_id)
            state["deleted"] = True
            state["steps"] = ["CANCELLED"]
            state["i"] = 0


class EchoConfig(TaskConfig):
    prefix: str = ""
    sleep: float = 0.0


class Echo(SyncConnector[EchoConfig]):
    name = "Echo"
    task_type = "toy_echo"

    async def do(self, task: TaskContext[EchoConfig]) -> Resource:
        if task.config.sleep:
            await asyncio.sleep(task.config.sleep)
        return Resource.succeeded({"out": task.config.prefix + str(task.inputs.get("text", ""))})


class LoggingJob(ToyJob):
    """A toy job that streams its log lines (GetTaskLogs)."""

    name = "Toy with logs"
    task_type = "toy_logs"

    async def get_logs(self, job: ToyMeta, ctx: CallContext) -> AsyncIterator[str]:
        for i in range(250):
            yield f"{job.job_id} line {i}"


CONNECTORS = (ToyJob, Echo, LoggingJob)
