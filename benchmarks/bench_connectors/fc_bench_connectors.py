"""Benchmark connectors for our host (``FLYTECONNECTORS_MODULES=bench=fc_bench_connectors``).

* ``bench-trivial``: ``async def`` create/get that answer at once (the framework's own cost per RPC);
* ``bench-blocking-def``: a 20 ms blocking call (``time.sleep``) in plain ``def`` create/get, as a connector
  wrapping a blocking SDK is written;
* ``bench-blocking-async``: the same 20 ms blocking call inside ``async def`` (the mistake flytekit's
  Snowflake connector makes).

Every job is SUCCEEDED on its first GetTask, so a job is one CreateTask and one GetTask.
"""

from __future__ import annotations

import time

from flyteconnectors.core import AsyncConnector, CallContext, JobMeta, Resource, TaskConfig, TaskContext

BLOCKING_SECONDS = 0.020


class BenchConfig(TaskConfig):
    pass


class BenchMeta(JobMeta):
    job_id: str


class Trivial(AsyncConnector[BenchConfig, BenchMeta]):
    name = "Bench trivial"
    task_type = "bench-trivial"

    async def create(self, task: TaskContext[BenchConfig]) -> BenchMeta:
        return BenchMeta(job_id=task.idempotency_key)

    async def get(self, job: BenchMeta, ctx: CallContext) -> Resource:
        return Resource.succeeded()

    async def delete(self, job: BenchMeta, ctx: CallContext) -> None:
        return None


class BlockingDef(AsyncConnector[BenchConfig, BenchMeta]):
    name = "Bench blocking def"
    task_type = "bench-blocking-def"

    def create(self, task: TaskContext[BenchConfig]) -> BenchMeta:
        time.sleep(BLOCKING_SECONDS)
        return BenchMeta(job_id=task.idempotency_key)

    def get(self, job: BenchMeta, ctx: CallContext) -> Resource:
        time.sleep(BLOCKING_SECONDS)
        return Resource.succeeded()

    def delete(self, job: BenchMeta, ctx: CallContext) -> None:
        return None


class BlockingAsync(AsyncConnector[BenchConfig, BenchMeta]):
    name = "Bench blocking async"
    task_type = "bench-blocking-async"

    async def create(self, task: TaskContext[BenchConfig]) -> BenchMeta:
        time.sleep(BLOCKING_SECONDS)  # deliberately blocking the event loop
        return BenchMeta(job_id=task.idempotency_key)

    async def get(self, job: BenchMeta, ctx: CallContext) -> Resource:
        time.sleep(BLOCKING_SECONDS)
        return Resource.succeeded()

    async def delete(self, job: BenchMeta, ctx: CallContext) -> None:
        return None


CONNECTORS = (Trivial, BlockingDef, BlockingAsync)
