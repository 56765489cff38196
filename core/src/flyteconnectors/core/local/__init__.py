"""Connector-backed flytekit task types and their local execution (``pyflyte run`` without ``--remote``).

Workflow authors use the task types a connector package builds on these; ``pyflyte run`` runs them in-process
through the same dispatcher as the host, with adaptive polling, the task's timeout, Ctrl-C cancelling the
remote job, and a progress display. Importing this package imports flytekit; the host never does.
"""

from flyteconnectors.core.local.runner import (
    MODULES_ENV,
    LocalCallFailed,
    LocalRunner,
    LocalTimeout,
    PollPolicy,
    local_runner,
    set_local_runner,
)
from flyteconnectors.core.local.tasks import (
    ConnectorTask,
    ConnectorTaskFailed,
    ConnectorTaskTimedOut,
    FunctionConnectorTask,
    SQLConnectorTask,
    execute_locally,
    serialize,
)

__all__ = [
    "MODULES_ENV",
    "ConnectorTask",
    "ConnectorTaskFailed",
    "ConnectorTaskTimedOut",
    "FunctionConnectorTask",
    "LocalCallFailed",
    "LocalRunner",
    "LocalTimeout",
    "PollPolicy",
    "SQLConnectorTask",
    "execute_locally",
    "local_runner",
    "serialize",
    "set_local_runner",
]
