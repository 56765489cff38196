"""flytekit's BigQuery task type (``bigquery_query_job_task`` v0, flytekitplugins-bigquery), served by our connector.

Workflows registered with flytekit's ``BigQueryTask`` keep working when this package replaces
flytekitplugins-bigquery on the connector host: their ``custom`` layout is translated into
:class:`~flyteconnectors.bigquery.connector.BigQueryQueryConfig` and the job runs through the same code as
``bigquery-query`` tasks.

flytekit's layout (``BigQueryTask.get_custom``)::

    {"ProjectID": ..., "Location": ... | null, "Domain": <registration domain>,
     **QueryJobConfig.to_api_repr()["query"]}     # destinationTable, writeDisposition, maximumBytesBilled, ...

What changes for the task author, on purpose (flytekit's connector ignored the QueryJobConfig entirely):
the job options in ``custom`` are honoured; options this connector cannot honour are refused with the
field named instead of silently dropped. Inputs are bound as typed query parameters exactly as flytekit
named them (``@name``); a ``datetime`` input stays a ``DATETIME`` parameter as in flytekit, lists become typed
``ARRAY`` parameters (flytekit sent an invalid scalar ``ARRAY``).

No SDK is imported here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from flyteconnectors.bigquery.connector import BigQueryJobMeta, BigQueryQuery, BigQueryQueryConfig
from flyteconnectors.core import InvalidTaskConfig, TaskContext
from flyteconnectors.core.config import TaskConfig

TASK_TYPE = "bigquery_query_job_task"

#: QueryJobConfig (REST ``JobConfigurationQuery``) fields and the config field each becomes.
_HONOURED = {
    "writeDisposition": "write_disposition",
    "createDisposition": "create_disposition",
    "priority": "priority",
    "useQueryCache": "use_query_cache",
}
#: Fields with no effect on a standard-SQL query job when they hold these values (the SDK writes some of them).
_HARMLESS = {"useLegacySql": (False, None), "parameterMode": ("NAMED", None), "queryParameters": ([], None)}
#: What to say about QueryJobConfig fields this connector does not run, so the author knows what to change.
_WHY = {
    "useLegacySql": "legacy SQL is not supported; write standard SQL (flytekit's connector ignored this setting "
                    "and ran the query as standard SQL too)",
    "queryParameters": "query parameters come from the task's inputs (@name); declare them as inputs",
    "parameterMode": "parameters are always named (@name), from the task's inputs",
}


def _table_name(ref: Any, field: str) -> str:
    table_missing = field == "destinationTable" and not (isinstance(ref, dict) and ref.get("tableId"))
    if not isinstance(ref, dict) or not ref.get("datasetId") or table_missing:
        raise InvalidTaskConfig(f"custom.{field}", f"{ref!r} is not a BigQuery table reference")
    parts = [ref.get("projectId"), ref["datasetId"], ref.get("tableId")]
    return ".".join(str(p) for p in parts if p)


class FlytekitBigQueryConfig(BigQueryQueryConfig):
    """:class:`BigQueryQueryConfig` built from flytekit's ``BigQueryTask`` custom layout."""

    @classmethod
    def from_template_parts(
        cls, custom: dict[str, Any] | None, config: dict[str, str] | None = None, sql: str | None = None
    ) -> TaskConfig:
        return super().from_template_parts(translate_custom(custom or {}), config, sql)


def translate_custom(custom: dict[str, Any]) -> dict[str, Any]:
    """flytekit's ``BigQueryTask`` custom as ``bigquery-query`` config fields; unknown options are refused by name."""
    data: dict[str, Any] = {}
    rest = dict(custom)
    project = rest.pop("ProjectID", None)
    if not project:
        raise InvalidTaskConfig("custom.ProjectID", "flytekit's BigQueryConfig(ProjectID=...) is required")
    data["project"] = project
    location = rest.pop("Location", None)
    if location:
        data["location"] = location
    rest.pop("Domain", None)  # flytekit put it in its user agent only
    for key, field in _HONOURED.items():
        if rest.get(key) is not None:
            data[field] = rest.pop(key)
        rest.pop(key, None)
    if rest.get("destinationTable") is not None:
        data["destination_table"] = _table_name(rest.pop("destinationTable"), "destinationTable")
    if rest.get("defaultDataset") is not None:
        data["default_dataset"] = _table_name(rest.pop("defaultDataset"), "defaultDataset")
    if rest.get("maximumBytesBilled") is not None:
        value = rest.pop("maximumBytesBilled")
        try:
            data["maximum_bytes_billed"] = int(value)
        except (TypeError, ValueError):
            raise InvalidTaskConfig("custom.maximumBytesBilled", f"{value!r} is not a number of bytes") from None
    for key, fine in _HARMLESS.items():
        if key in rest and rest[key] in fine:
            rest.pop(key)
    for key in sorted(rest):
        if rest[key] is None:
            continue
        why = _WHY.get(key, "this connector does not run it (flytekit's connector silently ignored every "
                            "QueryJobConfig option); remove it, or use the bigquery-query task type")
        raise InvalidTaskConfig(f"custom.{key}", f"QueryJobConfig option not supported: {why}")
    return data


class FlytekitBigQueryQuery(BigQueryQuery):
    """Serves flytekit's ``bigquery_query_job_task`` v0 through :class:`BigQueryQuery`."""

    name = "BigQuery query (flytekit task type)"
    task_type = TASK_TYPE
    task_version = 0
    config_model = FlytekitBigQueryConfig
    meta_model = BigQueryJobMeta

    def create(self, task: TaskContext[BigQueryQueryConfig]) -> BigQueryJobMeta:
        # flytekit typed a datetime input as DATETIME (pythonTypeToBigQueryType); keep that, so the queries written
        # for it keep comparing against DATETIME columns. Everything else is inferred as for bigquery-query.
        declared = dict(task.config.parameter_types)
        for name, value in task.inputs.items():
            if name not in declared and isinstance(value, dt.datetime):
                declared[name] = "DATETIME"
        if declared != task.config.parameter_types:
            task = dataclasses.replace(task, config=task.config.model_copy(update={"parameter_types": declared}))
        return super().create(task)


CONNECTORS = (FlytekitBigQueryQuery,)
