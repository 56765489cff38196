"""A toy connector that imports its "service SDK" (toy_heavy_sdk) only on first use, as real connectors must."""

from __future__ import annotations

from flyteconnectors.core import AsyncConnector, CallContext, JobMeta, Resource, TaskConfig, TaskContext


class LazyConfig(TaskConfig):
    pass


class LazyMeta(JobMeta):
    job_id: str


class LazyJob(AsyncConnector[LazyConfig, LazyMeta]):
    name = "Lazy"
    task_type = "toy_lazy"

    def warm_up(self) -> None:
        import toy_heavy_sdk  # noqa: F401  (the import is the point)

    def create(self, task: TaskContext[LazyConfig]) -> LazyMeta:
        import toy_heavy_sdk

        return LazyMeta(job_id=toy_heavy_sdk.submit(task.idempotency_key))

    def get(self, job: LazyMeta, ctx: CallContext) -> Resource:
        return Resource.succeeded()

    def delete(self, job: LazyMeta, ctx: CallContext) -> None:
        return None


CONNECTORS = (LazyJob,)
