"""flyteconnectors-snowflake: Snowflake queries as Flyte tasks.

Workflow authors use ``SnowflakeQueryTask`` (flytekit side, in :mod:`flyteconnectors.snowflake.task`) with a
:class:`SnowflakeQueryConfig`. Importing this package loads neither flytekit nor the Snowflake driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flyteconnectors.snowflake.connector import (
    SnowflakeQuery,
    SnowflakeQueryConfig,
    SnowflakeQueryMeta,
    SnowflakeSettings,
)

if TYPE_CHECKING:
    from flyteconnectors.snowflake.task import SnowflakeQueryTask

__all__ = [
    "SnowflakeQuery",
    "SnowflakeQueryConfig",
    "SnowflakeQueryMeta",
    "SnowflakeQueryTask",
    "SnowflakeSettings",
]


def __getattr__(name: str) -> Any:
    if name == "SnowflakeQueryTask":
        from flyteconnectors.snowflake.task import SnowflakeQueryTask

        return SnowflakeQueryTask
    raise AttributeError(name)
