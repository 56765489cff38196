"""Task types for workflow authors (imports flytekit; the host never imports this module).

* ``@task(task_config=DatabricksFunctionConfig(...))``: the function body runs on Databricks compute;
* ``DatabricksJobTask("name", job_id=..., inputs=..., outputs=...)``: runs a saved job now;
* ``DatabricksSQLTask("name", "SELECT ... :param", warehouse_id=..., inputs=..., outputs=...)``.

``pyflyte run`` runs them in-process through the same connector the host serves (point it at a workspace, or
at ``flyteconnectors fake databricks`` with ``FLYTECONNECTORS_DATABRICKS_HOST_OVERRIDE``).
"""

from __future__ import annotations

from typing import Any

from flytekit.extend import TaskPlugins

from flyteconnectors.core.local.tasks import ConnectorTask, FunctionConnectorTask, SQLConnectorTask
from flyteconnectors.databricks.connector import (
    DatabricksFunction,
    DatabricksFunctionConfig,
    DatabricksJobConfig,
    DatabricksRunJob,
    DatabricksSQL,
    DatabricksSQLConfig,
)

_WORKSPACE_FIELDS = ("host", "connection", "login")


class DatabricksFunctionTask(FunctionConnectorTask[DatabricksFunctionConfig]):
    """What ``@task(task_config=DatabricksFunctionConfig(...))`` builds: the body runs in a Databricks run."""

    connector = DatabricksFunction


TaskPlugins.register_pythontask_plugin(DatabricksFunctionConfig, DatabricksFunctionTask)


class DatabricksJobTask(ConnectorTask):
    """Run a saved job now. Inputs become job parameters; outputs may be ``run_id`` (int), ``run_page_url``
    (str) and ``output`` (str: the task's notebook exit value or logs)."""

    def __init__(self, name: str, job_id: int, *, inputs: dict[str, type] | None = None,
                 outputs: dict[str, type] | None = None, job_parameters: dict[str, str] | None = None,
                 output_task_key: str | None = None, host: str | None = None, connection: str = "",
                 login: str = "auto", **task_kwargs: Any) -> None:
        config = DatabricksJobConfig.parse({
            "job_id": job_id, "job_parameters": job_parameters or {}, "output_task_key": output_task_key,
            "host": host, "connection": connection, "login": login,
        })
        super().__init__(name, DatabricksRunJob, config, inputs=inputs, outputs=outputs, **task_kwargs)


class DatabricksSQLTask(SQLConnectorTask):
    """A SQL statement on a SQL warehouse. Inputs bind to ``:name`` (or ``{{ .inputs.name }}``) markers.

    Outputs may be ``rows`` (``list[dict]``, read inline), ``row_count`` (int), ``statement_id`` (str) and
    ``results`` (a ``StructuredDataset`` reference ``databricks://<workspace>/sql/statements/<id>``).
    """

    def __init__(self, name: str, query_template: str, *, warehouse_id: str, inputs: dict[str, Any] | None = None,
                 outputs: dict[str, type] | None = None, catalog: str | None = None, schema_name: str | None = None,
                 row_limit: int | None = None, byte_limit: int | None = None, host: str | None = None,
                 connection: str = "", login: str = "auto", **task_kwargs: Any) -> None:
        config = {"warehouse_id": warehouse_id, "catalog": catalog, "schema_name": schema_name,
                  "row_limit": row_limit, "byte_limit": byte_limit, "host": host, "connection": connection,
                  "login": login}
        super().__init__(name, DatabricksSQL, query_template, config={k: v for k, v in config.items() if v is not None},
                         inputs=inputs, outputs=outputs, **task_kwargs)


__all__ = ["DatabricksFunctionConfig", "DatabricksFunctionTask", "DatabricksJobTask", "DatabricksSQLConfig",
           "DatabricksSQLTask"]
