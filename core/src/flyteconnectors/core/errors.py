"""The errors a connector raises. The dispatcher turns each into the right wire outcome.

=========================  ==================================================================
raise                      what Flyte sees
=========================  ==================================================================
``InvalidTaskConfig``      the task fails once, permanently, with the field named; no retries
``JobRejected``            the service refused the job (bad SQL, quota): permanent failure
``TransientServiceError``  retried with backoff inside the deadline; on GetTask never an error
``JobNotFound``            on get: FAILED with a clear message; on delete: success
anything else              a one-line gRPC error (the traceback stays in the server log)
=========================  ==================================================================
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class of the errors connectors raise on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidTaskConfig(ConnectorError):
    """The task's configuration or inputs are wrong. ``field`` names what to fix (dotted path)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid task config: {field}: {problem}" if field else f"invalid task config: {problem}")
        self.field = field
        self.problem = problem


class JobRejected(ConnectorError):
    """The service refused to run the job for a reason retrying will not fix."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class TransientServiceError(ConnectorError):
    """Throttling, 5xx, a timeout: the same call may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobNotFound(ConnectorError):
    """The service has no job by this identity (deleted, expired, or never created)."""


class InvalidResourceMeta(ConnectorError):
    """resource_meta bytes that are not ours, are malformed, or fail their signature check."""


class ConnectorNotFound(ConnectorError):
    """No installed connector serves this task type and version."""


class DeadlineTooShort(ConnectorError):
    """The call's deadline expired before the connector could finish."""
