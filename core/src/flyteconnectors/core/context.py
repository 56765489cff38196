"""What a connector call is handed: config, inputs, identity, deadline and secrets, as plain Python."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from flyteconnectors.core.config import TaskConfig
from flyteconnectors.core.identity import ExecutionIdentity
from flyteconnectors.core.secrets import Secrets

C = TypeVar("C", bound=TaskConfig)


@dataclass
class CallContext:
    """Context of every call (create, get, delete, do)."""

    task_type: str
    secrets: Secrets
    output_prefix: str = ""
    #: Absolute ``time.monotonic()`` by which the call must be done, already less the host's margin.
    deadline: float | None = None

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None``: no deadline, e.g. a local run)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def timeout(self, cap: float | None = None) -> float | None:
        """A timeout for one SDK call: the remaining deadline, capped."""
        left = self.remaining()
        if left is None:
            return cap
        return min(left, cap) if cap is not None else left


@dataclass
class TaskContext(CallContext, Generic[C]):
    """Context of create and do: everything about the task execution."""

    config: C = None  # type: ignore[assignment]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    identity: ExecutionIdentity = field(default_factory=ExecutionIdentity)
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    #: Output names the task interface declares, in order.
    output_names: tuple[str, ...] = ()
    #: Rendered container of the template (function tasks run it remotely), if any.
    container_image: str = ""
    container_args: tuple[str, ...] = ()
    container_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        """Stable for every retry of the same attempt, different across attempts; ≤ 64 chars of [a-z0-9-]."""
        return self.identity.idempotency_key

    def job_name(self, max_len: int = 64, *, prefix: str = "fc") -> str:
        return self.identity.job_name(max_len, prefix=prefix)
