"""flyteconnectors-bigquery: BigQuery query jobs for Flyte.

Workflow authors use ``BigQueryQueryTask`` (flytekit side, in :mod:`flyteconnectors.bigquery.task`) with a
:class:`BigQueryQueryConfig`. Importing this package loads neither flytekit nor the BigQuery SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flyteconnectors.bigquery.connector import (
    BigQueryJobMeta,
    BigQueryQuery,
    BigQueryQueryConfig,
    BigQuerySettings,
    CreateDisposition,
    Priority,
    WriteDisposition,
)

if TYPE_CHECKING:
    from flyteconnectors.bigquery.task import BigQueryQueryTask

__all__ = [
    "BigQueryJobMeta",
    "BigQueryQuery",
    "BigQueryQueryConfig",
    "BigQueryQueryTask",
    "BigQuerySettings",
    "CreateDisposition",
    "Priority",
    "WriteDisposition",
]


def __getattr__(name: str) -> Any:
    if name == "BigQueryQueryTask":
        from flyteconnectors.bigquery.task import BigQueryQueryTask

        return BigQueryQueryTask
    raise AttributeError(name)
