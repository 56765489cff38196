"""Who is running: the task execution identity and the idempotency key derived from it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_NOT_NAME = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class ExecutionIdentity:
    """The task execution identity Propeller sends (``TaskExecutionMetadata.task_execution_id``).

    Create is called *at least once* per attempt with identical contents (wire reference §2.11), so a cloud
    job identity derived from this is the same on every retry of the same attempt and differs per attempt.
    """

    project: str = ""
    domain: str = ""
    execution: str = ""
    node_id: str = ""
    retry_attempt: int = 0
    task_name: str = ""
    task_version: str = ""
    org: str = ""

    @property
    def idempotency_key(self) -> str:
        """A stable key for this attempt: ``fc-<readable part>-<hash>``, at most 64 chars, ``[a-z0-9-]``.

        The readable part helps a human find the job in the service's console; the hash makes it unique.
        """
        return self.job_name(64)

    def job_name(self, max_len: int = 64, *, prefix: str = "fc", sep: str = "-") -> str:
        """A deterministic job name for services with other limits (SageMaker: 63 chars of [a-zA-Z0-9-])."""
        digest = hashlib.sha256(
            "\x1f".join(
                [self.org, self.project, self.domain, self.execution, self.node_id, str(self.retry_attempt)]
            ).encode()
        ).hexdigest()[:16]
        readable = _NOT_NAME.sub(sep, f"{self.execution}{sep}{self.node_id}".lower()).strip(sep)
        tail = f"{sep}a{self.retry_attempt}{sep}{digest}"
        room = max_len - len(prefix) - len(sep) - len(tail)
        readable = readable[: max(room, 0)].strip(sep)
        name = f"{prefix}{sep}{readable}{tail}" if readable else f"{prefix}{tail}"
        return name[:max_len]

    def labels(self) -> dict[str, str]:
        """Identity as short lowercase labels, for services that tag jobs (BigQuery, SageMaker)."""

        def clean(value: str) -> str:
            return re.sub(r"[^a-z0-9_-]+", "-", value.lower())[:63]

        return {
            "flyte-project": clean(self.project),
            "flyte-domain": clean(self.domain),
            "flyte-execution": clean(self.execution),
            "flyte-node": clean(self.node_id),
            "flyte-attempt": str(self.retry_attempt),
        }
