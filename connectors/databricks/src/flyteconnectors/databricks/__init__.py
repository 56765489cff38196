"""Run Flyte tasks on Databricks: Python functions, saved jobs and SQL statements.

Names resolve lazily, so the connector host (which imports ``flyteconnectors.databricks.connector``) never
loads flytekit or databricks-sdk through this module. Asking for a config or a task type registers the
flytekit task types when flytekit is installed, so ``@task(task_config=DatabricksFunctionConfig(...))`` always
gets the Databricks task, never a plain local function.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

__version__ = "0.1.0"

_CONFIGS = ("DatabricksFunctionConfig", "DatabricksJobConfig", "DatabricksSQLConfig")
_TASKS = ("DatabricksFunctionTask", "DatabricksJobTask", "DatabricksSQLTask")

__all__ = [*_CONFIGS, *_TASKS]


def __getattr__(name: str) -> Any:
    if name in _TASKS:
        return getattr(importlib.import_module("flyteconnectors.databricks.task"), name)
    if name in _CONFIGS:
        with contextlib.suppress(ImportError):  # no flytekit: the configs still validate (e.g. in tooling)
            importlib.import_module("flyteconnectors.databricks.task")
        return getattr(importlib.import_module("flyteconnectors.databricks.connector"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
