"""The same benchmark connectors for flytekit's host (``pyflyte serve connector --modules fk_bench_connectors``).

Registered at import time, as flytekit connectors are. See fc_bench_connectors.py for what each one does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import AsyncConnectorBase, ConnectorRegistry, Resource, ResourceMeta

BLOCKING_SECONDS = 0.020


@dataclass
class BenchMeta(ResourceMeta):
    job_id: str


def _job_id(kwargs: dict[str, Any]) -> str:
    meta = kwargs.get("task_execution_metadata")
    if meta is None:
        return "job"
    ident = meta.task_execution_id
    return f"{ident.node_execution_id.execution_id.name}-{ident.retry_attempt}"


class Trivial(AsyncConnectorBase):
    name = "Bench trivial"

    def __init__(self) -> None:
        super().__init__(task_type_name="bench-trivial", metadata_type=BenchMeta)

    async def create(self, task_template: Any, inputs: Any = None, **kwargs: Any) -> BenchMeta:
        return BenchMeta(job_id=_job_id(kwargs))

    async def get(self, resource_meta: BenchMeta, **kwargs: Any) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED)

    async def delete(self, resource_meta: BenchMeta, **kwargs: Any) -> None:
        return None


class BlockingDef(AsyncConnectorBase):
    name = "Bench blocking def"

    def __init__(self) -> None:
        super().__init__(task_type_name="bench-blocking-def", metadata_type=BenchMeta)

    def create(self, task_template: Any, inputs: Any = None, **kwargs: Any) -> BenchMeta:
        time.sleep(BLOCKING_SECONDS)
        return BenchMeta(job_id=_job_id(kwargs))

    def get(self, resource_meta: BenchMeta, **kwargs: Any) -> Resource:
        time.sleep(BLOCKING_SECONDS)
        return Resource(phase=TaskExecution.SUCCEEDED)

    def delete(self, resource_meta: BenchMeta, **kwargs: Any) -> None:
        return None


class BlockingAsync(AsyncConnectorBase):
    name = "Bench blocking async"

    def __init__(self) -> None:
        super().__init__(task_type_name="bench-blocking-async", metadata_type=BenchMeta)

    async def create(self, task_template: Any, inputs: Any = None, **kwargs: Any) -> BenchMeta:
        time.sleep(BLOCKING_SECONDS)  # deliberately blocking the event loop
        return BenchMeta(job_id=_job_id(kwargs))

    async def get(self, resource_meta: BenchMeta, **kwargs: Any) -> Resource:
        time.sleep(BLOCKING_SECONDS)
        return Resource(phase=TaskExecution.SUCCEEDED)

    async def delete(self, resource_meta: BenchMeta, **kwargs: Any) -> None:
        return None


for _connector in (Trivial(), BlockingDef(), BlockingAsync()):
    ConnectorRegistry.register(_connector, override=True)
