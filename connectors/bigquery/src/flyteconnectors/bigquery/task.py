"""flytekit task type for workflow authors: a BigQuery query with typed inputs as query parameters.

Imports flytekit; the host never imports this module.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Mapping
from typing import Any

from flyteconnectors.bigquery.connector import BigQueryQuery, BigQueryQueryConfig
from flyteconnectors.core.local import SQLConnectorTask


def declared_parameter_types(inputs: Mapping[str, Any]) -> dict[str, str]:
    """BigQuery types that the Python annotation tells but the Flyte literal does not (a ``date`` travels as a
    Flyte datetime): ``date`` is DATE and ``list[date]`` is ARRAY<DATE>."""
    declared = {}
    for name, py in inputs.items():
        if py is dt.date:
            declared[name] = "DATE"
        elif typing.get_origin(py) is list and typing.get_args(py) == (dt.date,):
            declared[name] = "ARRAY<DATE>"
    return declared


class BigQueryQueryTask(SQLConnectorTask):
    """A BigQuery query job. Each input is the query parameter ``@<name>`` (``{{ .inputs.name }}`` works too and is
    bound as the same parameter, never pasted into the SQL)::

        daily = BigQueryQueryTask(
            name="reports.daily",
            query_template="SELECT * FROM `shop.orders` WHERE day = @day AND total > @min_total",
            config=BigQueryQueryConfig(project="my-project", location="US", maximum_bytes_billed=10**10),
            inputs=kwtypes(day=datetime.date, min_total=float),
            outputs={"results": StructuredDataset, "job_id": str, "bytes_processed": int},
        )

    Outputs a task may declare: ``results`` (the destination table as ``bq://project:dataset.table``),
    ``job_id`` and ``bytes_processed``.
    """

    line_comments = ("--", "#")

    def __init__(
        self,
        name: str,
        query_template: str,
        config: BigQueryQueryConfig | Mapping[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        outputs: dict[str, type] | None = None,
        **task_kwargs: Any,
    ) -> None:
        super().__init__(
            name=name,
            connector=BigQueryQuery,
            query_template=query_template,
            config=_with_declared_types(config, inputs or {}),
            inputs=inputs,
            outputs=outputs,
            **task_kwargs,
        )


def _with_declared_types(config: BigQueryQueryConfig | Mapping[str, Any] | None,
                         inputs: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, BigQueryQueryConfig):
        data = config.model_dump(exclude_unset=True, exclude={"query"})
    else:
        data = dict(config or {})
    inferred = declared_parameter_types(inputs)
    if inferred:
        data["parameter_types"] = {**inferred, **dict(data.get("parameter_types") or {})}
    return data
