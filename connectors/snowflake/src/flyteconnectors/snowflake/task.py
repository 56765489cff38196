"""flytekit task type for workflow authors: a Snowflake query whose inputs are bound server-side.

Imports flytekit; the host never imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flyteconnectors.core.local import SQLConnectorTask
from flyteconnectors.snowflake.connector import SnowflakeQuery, SnowflakeQueryConfig


class SnowflakeQueryTask(SQLConnectorTask):
    """A Snowflake query, submitted asynchronously. Inputs are ``:name`` placeholders (``{{ .inputs.name }}``
    works too), sent as bind parameters, never pasted into the SQL::

        signups = SnowflakeQueryTask(
            name="growth.signups_by_plan",
            query_template="SELECT plan, COUNT(*) AS n FROM signups WHERE day = :day GROUP BY plan",
            config=SnowflakeQueryConfig(account="myorg-analytics", user="FLYTE_SVC", warehouse="COMPUTE_WH",
                                        database="ANALYTICS", schema="PUBLIC", query_tag="team=growth"),
            inputs=kwtypes(day=datetime.date),
            outputs={"results": StructuredDataset, "query_id": str},
        )

    Outputs a task may declare: ``query_id`` (str) and one structured dataset (any name) that refers to the
    query's result as ``snowflake://user:account/warehouse/database/schema/<query id>``, which flytekit's
    Snowflake structured-dataset decoder reads. No outputs: the query just runs (DDL, INSERT, MERGE).
    """

    line_comments = ("--", "//")

    def __init__(
        self,
        name: str,
        query_template: str,
        config: SnowflakeQueryConfig | Mapping[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        outputs: dict[str, type] | None = None,
        **task_kwargs: Any,
    ) -> None:
        super().__init__(
            name=name,
            connector=SnowflakeQuery,
            query_template=query_template,
            config=config,
            inputs=inputs,
            outputs=outputs,
            **task_kwargs,
        )

