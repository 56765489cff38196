"""flyteconnectors.core: the public API for connector authors.

A connector declares a config model, a job-metadata model and a state map, then implements create / get /
delete (async jobs) or do (sync requests). Everything cross-cutting lives in the dispatcher.
"""

from flyteconnectors.core.clients import ClientCache, fingerprint
from flyteconnectors.core.config import TaskConfig
from flyteconnectors.core.connector import AsyncConnector, Connector, ConnectorSettings, SyncConnector
from flyteconnectors.core.context import CallContext, TaskContext
from flyteconnectors.core.errors import (
    ConnectorError,
    InvalidResourceMeta,
    InvalidTaskConfig,
    JobNotFound,
    JobRejected,
    TransientServiceError,
)
from flyteconnectors.core.identity import ExecutionIdentity
from flyteconnectors.core.meta import JobMeta
from flyteconnectors.core.resource import LogLink, Phase, Resource
from flyteconnectors.core.secrets import Secrets
from flyteconnectors.core.states import StateMap

__all__ = [
    "AsyncConnector",
    "CallContext",
    "ClientCache",
    "Connector",
    "ConnectorError",
    "ConnectorSettings",
    "ExecutionIdentity",
    "InvalidResourceMeta",
    "InvalidTaskConfig",
    "JobMeta",
    "JobNotFound",
    "JobRejected",
    "LogLink",
    "Phase",
    "Resource",
    "Secrets",
    "StateMap",
    "SyncConnector",
    "TaskConfig",
    "TaskContext",
    "TransientServiceError",
    "fingerprint",
]
