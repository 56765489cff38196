"""Connector bases. A connector holds service logic only; the dispatcher owns everything cross-cutting.

Methods may be ``async def`` (native async SDKs run on the event loop) or plain ``def`` (blocking SDKs run in
a bounded thread pool of their own, sized for I/O waits). A connector never sleeps, retries, maps phases for
the wire, or touches protobuf.
"""

from __future__ import annotations

import os
import typing
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from flyteconnectors.core.clients import ClientCache
from flyteconnectors.core.config import TaskConfig
from flyteconnectors.core.context import CallContext, TaskContext
from flyteconnectors.core.errors import InvalidTaskConfig
from flyteconnectors.core.meta import JobMeta
from flyteconnectors.core.resource import Resource

C = TypeVar("C", bound=TaskConfig)
M = TypeVar("M", bound=JobMeta)


class ConnectorSettings(BaseModel):
    """Connector-level settings chosen by whoever runs the host (not by task authors).

    Values come from the host's config file section ``[connectors.<package>]`` and from environment
    variables ``FLYTECONNECTORS_<PACKAGE>_<FIELD>`` (e.g. ``FLYTECONNECTORS_DATABRICKS_HOST``). Endpoint
    overrides for private endpoints and the local fakes live here.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    #: Threads for this package's blocking calls. flytekit's default pool has 6 for everything.
    executor_threads: int = 64
    #: Where this package's ``async def`` methods run: ``loop`` (the host's event loop), ``isolated`` (the
    #: package's own event loops, at most ``executor_threads``, so a blocking call inside ``async def`` stalls
    #: only them) or ``auto`` (the host's loop until the loop watchdog sees the package's code stall it).
    async_mode: Literal["loop", "isolated", "auto"] = "auto"

    @classmethod
    def load(cls, package: str, file_values: Mapping[str, Any] | None = None,
             env: Mapping[str, str] | None = None) -> ConnectorSettings:
        env = os.environ if env is None else env
        prefix = f"FLYTECONNECTORS_{package.upper().replace('-', '_')}_"
        data: dict[str, Any] = dict(file_values or {})
        for name in cls.model_fields:
            value = env.get(prefix + name.upper())
            if value is not None:
                data[name] = value
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            fields = "; ".join(
                f"{prefix}{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in err.errors()
            )
            raise InvalidTaskConfig(f"settings:{package}", f"bad connector settings: {fields}") from None


class Connector(Generic[C]):
    """What every connector declares."""

    #: Human name, shown in ListAgents and ``flyteconnectors list``.
    name: ClassVar[str]
    #: The task type this connector serves (``TaskTemplate.type``) and its version.
    task_type: ClassVar[str]
    task_version: ClassVar[int] = 0
    #: Typed config model; inferred from the generic parameter when not set.
    config_model: ClassVar[type[TaskConfig]]
    settings_model: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    #: Secret names this connector may read (documented in ``flyteconnectors list``).
    secret_names: ClassVar[tuple[str, ...]] = ()
    #: Set on each instance by the registry: the package (entry-point name) it was registered from.
    package: str = ""
    is_sync: ClassVar[bool] = False

    def __init__(self, settings: ConnectorSettings | None = None, clients: ClientCache | None = None) -> None:
        self.settings: Any = settings if settings is not None else self.settings_model()
        self.clients = clients if clients is not None else ClientCache()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only this class's own bases: an inherited __orig_bases__ would reset a subclass's models to its parent's.
        for base in cls.__dict__.get("__orig_bases__", ()):
            for arg in typing.get_args(base):
                if isinstance(arg, type) and issubclass(arg, TaskConfig) and "config_model" not in vars(cls):
                    cls.config_model = arg
                if isinstance(arg, type) and issubclass(arg, JobMeta) and "meta_model" not in vars(cls):
                    cls.meta_model = arg  # type: ignore[attr-defined]

    def warm_up(self) -> None:
        """Pay one-time costs (importing a heavy SDK) before the first call. Runs in the package's thread pool
        right after the host starts, so the first CreateTask does not spend its deadline on imports."""

    def close(self) -> Awaitable[None] | None:
        """Release clients and connections. Called once when the host drains."""
        return self.clients.aclose()


class AsyncConnector(Connector[C], Generic[C, M]):
    """A long-running job: ``create`` starts it, ``get`` reports it, ``delete`` stops it.

    ``create`` is called *at least once* per attempt: derive the service's job identity from
    ``task.idempotency_key`` and adopt an existing job on conflict.
    """

    meta_model: ClassVar[type[JobMeta]]

    def create(self, task: TaskContext[C]) -> M | Awaitable[M]:
        raise NotImplementedError

    def get(self, job: M, ctx: CallContext) -> Resource | Awaitable[Resource]:
        raise NotImplementedError

    def delete(self, job: M, ctx: CallContext) -> Awaitable[None] | None:
        raise NotImplementedError

    #: Optional: stream the job's log lines (sync iterable or async iterator of strings).
    get_logs: Any = None
    #: Optional: metrics for the job.
    get_metrics: Any = None


class SyncConnector(Connector[C]):
    """A request that finishes inside the call's deadline: ``do`` returns a terminal Resource."""

    is_sync: ClassVar[bool] = True

    def do(self, task: TaskContext[C]) -> Resource | Awaitable[Resource]:
        raise NotImplementedError


LogLines = Iterable[str] | AsyncIterator[str]
