"""What a connector reports about a job: a phase that is always real, a message, outputs and links."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Phase(enum.IntEnum):
    """Task phases, numbered as flyteidl's ``core.TaskExecution.Phase``.

    There is deliberately no UNDEFINED member: Flyte 1 reads phase UNDEFINED with the zero ``state`` as
    RETRYABLE_FAILURE (wire reference §2.7), and Flyte 2 treats it as a system error.
    """

    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    ABORTED = 4
    FAILED = 5
    INITIALIZING = 6
    WAITING_FOR_RESOURCES = 7
    RETRYABLE_FAILED = 8

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_PHASES

    @property
    def is_success(self) -> bool:
        return self is Phase.SUCCEEDED


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ABORTED, Phase.FAILED, Phase.RETRYABLE_FAILED})


@dataclass(frozen=True)
class LogLink:
    """A link shown in the Flyte UI next to the task (the service's job page, its logs, its console)."""

    name: str
    uri: str


@dataclass
class Resource:
    """The state of one job as the connector sees it.

    ``outputs`` holds Python values keyed by the task interface's output names; the core converts them to
    literals with the interface's types. Leave it ``None`` when the job wrote ``<output_prefix>/outputs.pb``
    itself.
    """

    phase: Phase
    message: str = ""
    outputs: Mapping[str, Any] | None = None
    log_links: list[LogLink] = field(default_factory=list)
    custom_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.phase, Phase):
            self.phase = Phase(self.phase)

    @property
    def is_terminal(self) -> bool:
        return self.phase.is_terminal

    @classmethod
    def succeeded(cls, outputs: Mapping[str, Any] | None = None, message: str = "", **kw: Any) -> Resource:
        return cls(Phase.SUCCEEDED, message, outputs, **kw)

    @classmethod
    def failed(cls, message: str, **kw: Any) -> Resource:
        return cls(Phase.FAILED, message, **kw)

    @classmethod
    def running(cls, message: str = "", **kw: Any) -> Resource:
        return cls(Phase.RUNNING, message, **kw)
