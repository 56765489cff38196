"""Databricks: a Flyte function as a one-time Jobs run, an existing job run now, or SQL on a warehouse.

Three task types, all through databricks-sdk's ``WorkspaceClient`` (imported lazily: the host starts without it):

* ``databricks-function``: ``jobs/runs/submit`` of a ``spark_python_task`` whose parameters are the task's rendered
  container args, on an existing cluster, a new job cluster or serverless compute;
* ``databricks-run-job``: ``jobs/run-now`` of a saved job with job parameters from the task's inputs;
* ``databricks-sql``: the Statement Execution API, submitted without waiting (``wait_timeout=0s``), then polled.

The names differ from flytekit's ``spark`` / ``databricks`` task types on purpose: Propeller's static ``spark``
plugin wins over any connector for ``spark`` (wire reference §2.3), and ``databricks`` stays free for a drop-in
adapter.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from flyteconnectors.core import (
    AsyncConnector,
    CallContext,
    ConnectorError,
    ConnectorSettings,
    InvalidTaskConfig,
    JobMeta,
    JobNotFound,
    JobRejected,
    LogLink,
    Phase,
    Resource,
    StateMap,
    TaskConfig,
    TaskContext,
    TransientServiceError,
    fingerprint,
)
from flyteconnectors.core.sql import replace_input_placeholders

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

log = logging.getLogger("flyteconnectors.databricks")

#: flytetools' entrypoints, the defaults of flytekit's Databricks plugin, so existing clusters keep working.
FLYTETOOLS_GIT = {
    "git_url": "https://github.com/flyteorg/flytetools",
    "git_provider": "gitHub",
    "git_commit": "572298df1f971fb58c258398bd70a6372f811c96",
}
FLYTETOOLS_ENTRYPOINT = "flytekitplugins/databricks/entrypoint.py"
FLYTETOOLS_SERVERLESS_ENTRYPOINT = "flytekitplugins/databricks/entrypoint_serverless.py"
#: pyflyte-execute exits 0 after a failed task unless this is set, and the run would show SUCCESS.
FAIL_ON_ERROR_ENV = {"FLYTE_FAIL_ON_ERROR": "true"}
#: The tag that finds a statement again after a lost response (the Statement API has no idempotency token).
IDEMPOTENCY_TAG = "flyte_idempotency_key"
TASK_KEY = "flyte"


# ================================================================================================ settings
class DatabricksSettings(ConnectorSettings):
    """Chosen by whoever runs the host: ``FLYTECONNECTORS_DATABRICKS_<FIELD>``."""

    #: Workspace URL for tasks that name none.
    host: str = ""
    #: Send every call here instead of the task's workspace (a private endpoint, or the local fake).
    host_override: str = ""
    #: Retry budget of the SDK's workspace probe when a client is built. Calls themselves are retried by the core
    #: (inside the RPC deadline, honouring Retry-After), never by the SDK: see _NoSdkRetries.
    retry_timeout_seconds: int = 5
    http_timeout_seconds: float = 30.0
    #: How far back to look in the query history for a statement this attempt already submitted.
    sql_adopt_window_seconds: int = 6 * 3600


# ================================================================================================ config
class WorkspaceConfig(TaskConfig):
    """What every Databricks task names: the workspace and which secrets sign in to it."""

    #: Workspace URL (``https://adb-123.4.azuredatabricks.net``); default: the connector's ``host`` setting.
    host: str | None = None
    #: Picks the secrets: "" reads ``databricks_token`` (PAT) or ``databricks_client_id`` +
    #: ``databricks_client_secret`` (OAuth M2M); "prod" reads ``databricks_prod_token`` and so on.
    connection: str = ""
    #: "auto" signs in with a token when one is set, else with the service principal.
    login: Literal["auto", "pat", "oauth-m2m"] = "auto"

    @field_validator("connection")
    @classmethod
    def _connection_name(cls, value: str) -> str:
        if value and not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,40}", value):
            raise ValueError("use lower-case letters, digits and underscores (it becomes part of secret names)")
        return value

    @field_validator("host")
    @classmethod
    def _host_url(cls, value: str | None) -> str | None:
        return _normalize_host(value) if value else value


class DatabricksFunctionConfig(WorkspaceConfig):
    """A Python function task run on Databricks compute: exactly one of the three compute choices."""

    existing_cluster_id: str | None = None
    #: A Jobs API ``new_cluster`` spec (spark_version, node_type_id, num_workers, ...). ``docker_image`` defaults
    #: to the task's container image.
    new_cluster: dict[str, Any] | None = None
    serverless: bool = False
    #: Serverless environment spec (``client``, ``dependencies``, ...); default ``{"client": "2"}``.
    environment: dict[str, Any] | None = None
    spark_conf: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    libraries: list[dict[str, Any]] = Field(default_factory=list)
    #: The script the cluster runs with the container args; default: flytetools' entrypoint from GitHub.
    python_file: str | None = None
    #: Where ``python_file`` lives when it is in a Git repository; ``{}`` means a workspace or volume path.
    git_source: dict[str, Any] | None = None
    timeout_seconds: int | None = Field(default=None, ge=0)
    run_name: str | None = None

    @model_validator(mode="after")
    def _one_compute(self) -> DatabricksFunctionConfig:
        chosen = [n for n, v in (("existing_cluster_id", self.existing_cluster_id),
                                 ("new_cluster", self.new_cluster), ("serverless", self.serverless)) if v]
        if len(chosen) != 1:
            problem = "choose exactly one compute: existing_cluster_id, new_cluster or serverless=True"
            raise InvalidTaskConfig(chosen[1] if len(chosen) > 1 else "existing_cluster_id",
                                    f"{problem} (got {', '.join(chosen) or 'none'})")
        if self.spark_conf and not self.new_cluster:
            raise InvalidTaskConfig("spark_conf", "applies to a new_cluster only; an existing cluster keeps its own "
                                    "Spark conf and serverless compute takes none")
        if self.environment is not None and not self.serverless:
            raise InvalidTaskConfig("environment", "applies to serverless compute only")
        return self


class DatabricksJobConfig(WorkspaceConfig):
    """Trigger a saved job. Inputs become job parameters (``{{job.parameters.<name>}}``), after these."""

    job_id: int = Field(gt=0)
    job_parameters: dict[str, str] = Field(default_factory=dict)
    #: The task whose output becomes the ``output`` output; default: the job's only task.
    output_task_key: str | None = None


class DatabricksSQLConfig(WorkspaceConfig):
    """A SQL statement on a SQL warehouse. Inputs become named parameters (``:name`` in the statement)."""

    sql_field: ClassVar[str | None] = "statement"

    statement: str = Field(min_length=1)
    warehouse_id: str = Field(min_length=1)
    catalog: str | None = None
    schema_name: str | None = None
    #: Caps the rows returned inline (``rows`` output) and recorded by the statement.
    row_limit: int | None = Field(default=None, gt=0)
    byte_limit: int | None = Field(default=None, gt=0)


# ================================================================================================ job metadata
class RunMeta(JobMeta):
    """Finds a Jobs run again: workspace, which secrets, run id. No credentials."""

    host: str
    connection: str = ""
    login: str = "pat"
    run_id: int
    #: run-job only: fetch the task's output when the interface declares ``output``.
    fetch_output: bool = False
    output_task_key: str | None = None


class StatementMeta(JobMeta):
    host: str
    connection: str = ""
    login: str = "pat"
    statement_id: str
    warehouse_id: str
    #: the interface declares ``rows``: read the result inline.
    fetch_rows: bool = False


# ================================================================================================ state maps
#: Jobs API 2.2 v2 run ``status``: ``state``, and ``TERMINATED/<termination code>`` once it ends. Preferred
#: over the v1 ``state`` because the code says *why* a run ended (a cluster or cloud failure is worth a retry).
STATUS_STATES = StateMap({
    "QUEUED": Phase.QUEUED,
    "PENDING": Phase.INITIALIZING,          # cluster and execution context being prepared
    "BLOCKED": Phase.QUEUED,                # waiting on an upstream dependency
    "WAITING": Phase.RUNNING,               # waiting for a task retry
    "RUNNING": Phase.RUNNING,
    "TERMINATING": Phase.RUNNING,           # the task ended, the cluster is being cleaned up
    "TERMINATED": Phase.FAILED,             # ended without termination details
    "TERMINATED/SUCCESS": Phase.SUCCEEDED,
    "TERMINATED/SUCCESS_WITH_FAILURES": Phase.SUCCEEDED,
    "TERMINATED/USER_CANCELED": Phase.ABORTED,
    "TERMINATED/CANCELED": Phase.FAILED,    # cancelled by the platform, e.g. the run's timeout
    "TERMINATED/SKIPPED": Phase.FAILED,
    "TERMINATED/DISABLED": Phase.FAILED,
    "TERMINATED/RUN_EXECUTION_ERROR": Phase.FAILED,
    "TERMINATED/INVALID_RUN_CONFIGURATION": Phase.FAILED,
    "TERMINATED/INVALID_CLUSTER_REQUEST": Phase.FAILED,
    "TERMINATED/LIBRARY_INSTALLATION_ERROR": Phase.FAILED,
    "TERMINATED/RESOURCE_NOT_FOUND": Phase.FAILED,
    "TERMINATED/STORAGE_ACCESS_ERROR": Phase.FAILED,
    "TERMINATED/UNAUTHORIZED_ERROR": Phase.FAILED,
    "TERMINATED/FEATURE_DISABLED": Phase.FAILED,
    "TERMINATED/BUDGET_POLICY_LIMIT_EXCEEDED": Phase.FAILED,
    "TERMINATED/CLUSTER_TERMINATED_BY_USER": Phase.FAILED,
    "TERMINATED/INTERNAL_ERROR": Phase.RETRYABLE_FAILED,
    "TERMINATED/DRIVER_ERROR": Phase.RETRYABLE_FAILED,
    "TERMINATED/CLUSTER_ERROR": Phase.RETRYABLE_FAILED,
    "TERMINATED/CLOUD_FAILURE": Phase.RETRYABLE_FAILED,
    "TERMINATED/REPOSITORY_CHECKOUT_FAILED": Phase.RETRYABLE_FAILED,
    "TERMINATED/BREAKING_CHANGE": Phase.RETRYABLE_FAILED,
    "TERMINATED/CLUSTER_REQUEST_LIMIT_EXCEEDED": Phase.RETRYABLE_FAILED,
    "TERMINATED/WORKSPACE_RUN_LIMIT_EXCEEDED": Phase.RETRYABLE_FAILED,
    "TERMINATED/MAX_CONCURRENT_RUNS_EXCEEDED": Phase.RETRYABLE_FAILED,
    "TERMINATED/MAX_JOB_QUEUE_SIZE_EXCEEDED": Phase.RETRYABLE_FAILED,
    "TERMINATED/MAX_SPARK_CONTEXTS_EXCEEDED": Phase.RETRYABLE_FAILED,
}, service="databricks")

#: Jobs API v1 run ``state``, used when a response has no ``status``: ``life_cycle_state``, and
#: ``TERMINATED/<result_state>`` once it ends. flytekit left INTERNAL_ERROR and SKIPPED running forever.
LIFE_CYCLE_STATES = StateMap({
    "QUEUED": Phase.QUEUED,
    "PENDING": Phase.INITIALIZING,
    "BLOCKED": Phase.QUEUED,
    "WAITING_FOR_RETRY": Phase.RUNNING,
    "RUNNING": Phase.RUNNING,
    "TERMINATING": Phase.RUNNING,
    "SKIPPED": Phase.FAILED,                 # a previous run of the same job was still active
    "INTERNAL_ERROR": Phase.RETRYABLE_FAILED,  # a failure in the Jobs service, e.g. a long network outage
    "TERMINATED": Phase.FAILED,              # ended without a result state
    "TERMINATED/SUCCESS": Phase.SUCCEEDED,
    "TERMINATED/SUCCESS_WITH_FAILURES": Phase.SUCCEEDED,
    "TERMINATED/FAILED": Phase.FAILED,
    "TERMINATED/TIMEDOUT": Phase.FAILED,
    "TERMINATED/CANCELED": Phase.ABORTED,
    "TERMINATED/MAXIMUM_CONCURRENT_RUNS_REACHED": Phase.RETRYABLE_FAILED,
    "TERMINATED/EXCLUDED": Phase.FAILED,
    "TERMINATED/UPSTREAM_FAILED": Phase.FAILED,
    "TERMINATED/UPSTREAM_CANCELED": Phase.ABORTED,
    "TERMINATED/DISABLED": Phase.FAILED,
}, service="databricks")

#: Statement Execution API ``status.state``.
STATEMENT_STATES = StateMap({
    "PENDING": Phase.QUEUED,       # waiting for the warehouse
    "RUNNING": Phase.RUNNING,
    "SUCCEEDED": Phase.SUCCEEDED,
    "FAILED": Phase.FAILED,
    "CANCELED": Phase.ABORTED,
    "CLOSED": Phase.FAILED,        # the result was closed (expired or closed by another client) before it was read
}, service="databricks-sql")


# ================================================================================================ connectors
class _Databricks:
    """Clients and error mapping shared by the three connectors."""

    settings: Any
    clients: Any
    settings_model = DatabricksSettings
    secret_names = ("databricks_token", "databricks_client_id", "databricks_client_secret")

    def warm_up(self) -> None:
        # databricks-sdk imports every service module (~3 s): pay it at start-up, not in a call's deadline.
        import databricks.sdk.service.jobs
        import databricks.sdk.service.sql  # noqa: F401

    def _host(self, config: WorkspaceConfig) -> str:
        host = config.host or _normalize_host(self.settings.host)
        if not host:
            raise InvalidTaskConfig("host", "no Databricks workspace: set host on the task or "
                                    "FLYTECONNECTORS_DATABRICKS_HOST on the connector")
        return host

    def _login(self, ctx: CallContext, connection: str, login: str) -> str:
        """The sign-in method to use (and to record in the job metadata): "pat" or "oauth-m2m"."""
        if login != "auto":
            return login
        return "pat" if ctx.secrets.get(_secret(connection, "token")) else "oauth-m2m"

    def _client(self, ctx: CallContext, host: str, connection: str, login: str) -> WorkspaceClient:
        """One WorkspaceClient per (endpoint, login, credentials), reused across calls and closed on drain."""
        endpoint = _normalize_host(self.settings.host_override) or host
        if login == "pat":
            token = ctx.secrets.require(_secret(connection, "token"))
            creds: dict[str, str] = {"token": token}
        else:
            creds = {"client_id": ctx.secrets.require(_secret(connection, "client_id")),
                     "client_secret": ctx.secrets.require(_secret(connection, "client_secret"))}
        key = ("databricks", endpoint, login, fingerprint(*sorted(creds.items())))
        return self.clients.get(key, lambda: self._new_client(endpoint, login, creds))

    def _new_client(self, endpoint: str, login: str, creds: dict[str, str]) -> WorkspaceClient:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config
        from flyteconnectors.databricks import _transport

        options: dict[str, Any] = {
            "host": endpoint,
            "auth_type": login,
            "retry_timeout_seconds": self.settings.retry_timeout_seconds,
            "http_timeout_seconds": self.settings.http_timeout_seconds,
            "clock": _NoSdkRetries(),
            # One kept-alive connection per thread of the package's pool. The SDK's default keeps 20 and blocks the
            # 21st concurrent call until one is free (pool_block=True): under load the threads queued for a
            # connection, not for the service. (databricks-sdk 0.162 passes max_connection_pools as urllib3's
            # pool_maxsize and max_connections_per_pool as the number of pools: both are set, so either way works.)
            "max_connection_pools": self._pool_size(),
            "max_connections_per_pool": self._pool_size(),
            # Never read a ~/.databrickscfg profile on the host: everything comes from settings and secrets.
            "config_file": "/dev/null",
            **creds,
        }
        try:
            config = Config(**options)
        except ValueError as err:  # the SDK validates the auth settings eagerly
            raise InvalidTaskConfig("login", f"cannot sign in to {endpoint}: {err}") from None
        client = WorkspaceClient(config=config)
        if not _transport.install(client.api_client, self._pool_size()):
            _pool_plain_http(client)
        return cast("WorkspaceClient", _ClosingWorkspaceClient(client))

    def _pool_size(self) -> int:
        return max(1, int(getattr(self.settings, "executor_threads", 64)))


class _RunLogs(_Databricks):
    def get_logs(self, job: RunMeta, ctx: CallContext) -> Iterator[str]:
        """The run's task output: its logs, else its error trace (``runs/get-output``).

        A generator, so the core runs the blocking calls in the connector's thread pool, not on the loop.
        """
        client = self._client(ctx, job.host, job.connection, job.login)
        try:
            run = _get_json(client, "/api/2.2/jobs/runs/get", run_id=job.run_id)
        except Exception as err:
            raise _map_error(err, f"read run {job.run_id}", polling=True) from None
        out = _task_output(client, run, job.output_task_key)
        yield from str(out.get("logs") or out.get("error_trace") or "").splitlines()


def _get_json(client: WorkspaceClient, path: str, **query: Any) -> dict[str, Any]:
    """A raw GET through the SDK's client (auth, headers, error mapping), as a JSON object."""
    body = client.api_client.do("GET", path, query=query or None, headers={"Accept": "application/json"})
    return body if isinstance(body, dict) else {}


def _secret(connection: str, kind: str) -> str:
    return f"databricks_{connection}_{kind}" if connection else f"databricks_{kind}"


class DatabricksFunction(_RunLogs, AsyncConnector[DatabricksFunctionConfig, RunMeta]):
    """A Flyte Python task run on Databricks compute as a one-time run (``jobs/runs/submit``)."""

    name = "Databricks function"
    task_type = "databricks-function"

    def create(self, task: TaskContext[DatabricksFunctionConfig]) -> RunMeta:
        from databricks.sdk.service import compute, jobs

        config, host = task.config, self._host(task.config)
        if not task.container_args or task.container_args[0] not in ("pyflyte-execute", "pyflyte-fast-execute"):
            raise InvalidTaskConfig("container.args", "a databricks-function task needs the rendered "
                                    "pyflyte-execute arguments of a Python function task")
        login = self._login(task, config.connection, config.login)
        env = {**dict(task.container_env), **config.env, **FAIL_ON_ERROR_ENV}
        git_source = FLYTETOOLS_GIT if config.python_file is None else config.git_source
        entry: dict[str, Any] = {
            "python_file": config.python_file or (FLYTETOOLS_SERVERLESS_ENTRYPOINT if config.serverless
                                                  else FLYTETOOLS_ENTRYPOINT),
            "parameters": list(task.container_args),
        }
        if git_source:
            entry["source"] = "GIT"
        spec: dict[str, Any] = {"task_key": TASK_KEY, "spark_python_task": entry}
        if config.libraries:
            spec["libraries"] = config.libraries
        submit: dict[str, Any] = {}
        if config.new_cluster is not None:
            cluster = dict(config.new_cluster)
            if not cluster.get("docker_image") and task.container_image:
                cluster["docker_image"] = {"url": task.container_image}
            cluster["spark_conf"] = {**cluster.get("spark_conf", {}), **config.spark_conf}
            cluster["spark_env_vars"] = {**cluster.get("spark_env_vars", {}), **env}
            spec["new_cluster"] = cluster
        else:
            # An existing cluster or serverless compute has no per-run env of its own: a per-run entry carries it.
            spec["environment_variables_key"] = TASK_KEY
            submit["environment_variables"] = [jobs.JobEnvironmentVariables(
                environment_variables_key=TASK_KEY, spec=jobs.JobEnvironmentVariablesSpec(variables=env))]
            if config.existing_cluster_id:
                spec["existing_cluster_id"] = config.existing_cluster_id
            else:
                spec["environment_key"] = TASK_KEY
                submit["environments"] = [jobs.JobEnvironment(
                    environment_key=TASK_KEY,
                    spec=compute.Environment.from_dict(config.environment or {"client": "2"}))]
        if git_source:
            submit["git_source"] = jobs.GitSource.from_dict(git_source)
        client = self._client(task, host, config.connection, login)
        try:
            waiter = client.jobs.submit(
                run_name=config.run_name or _run_name(task),
                tasks=[jobs.SubmitTask.from_dict(spec)],
                timeout_seconds=config.timeout_seconds,
                idempotency_token=task.idempotency_key,
                **submit,
            )
        except Exception as err:
            raise _map_error(err, "submit the run") from None
        return RunMeta(host=host, connection=config.connection, login=login, run_id=int(waiter.run_id))

    def get(self, job: RunMeta, ctx: CallContext) -> Resource:
        return _run_resource(self._client(ctx, job.host, job.connection, job.login), job, job_outputs=False)

    def delete(self, job: RunMeta, ctx: CallContext) -> None:
        _cancel_run(self._client(ctx, job.host, job.connection, job.login), job.run_id)


class DatabricksRunJob(_RunLogs, AsyncConnector[DatabricksJobConfig, RunMeta]):
    """Run a saved Databricks job now, with job parameters from the task's inputs."""

    name = "Databricks job"
    task_type = "databricks-run-job"

    def create(self, task: TaskContext[DatabricksJobConfig]) -> RunMeta:
        config, host = task.config, self._host(task.config)
        login = self._login(task, config.connection, config.login)
        params = {**config.job_parameters, **{n: _parameter_text(n, v) for n, v in task.inputs.items()}}
        client = self._client(task, host, config.connection, login)
        try:
            waiter = client.jobs.run_now(job_id=config.job_id, job_parameters=params or None,
                                         idempotency_token=task.idempotency_key)
        except Exception as err:
            raise _map_error(err, f"run job {config.job_id}", missing_is_rejection=True) from None
        return RunMeta(host=host, connection=config.connection, login=login, run_id=int(waiter.run_id),
                       fetch_output="output" in task.output_names, output_task_key=config.output_task_key)

    def get(self, job: RunMeta, ctx: CallContext) -> Resource:
        return _run_resource(self._client(ctx, job.host, job.connection, job.login), job, job_outputs=True)

    def delete(self, job: RunMeta, ctx: CallContext) -> None:
        _cancel_run(self._client(ctx, job.host, job.connection, job.login), job.run_id)


class DatabricksSQL(_Databricks, AsyncConnector[DatabricksSQLConfig, StatementMeta]):
    """A SQL statement on a SQL warehouse, through the Statement Execution API."""

    name = "Databricks SQL"
    task_type = "databricks-sql"

    def create(self, task: TaskContext[DatabricksSQLConfig]) -> StatementMeta:
        from databricks.sdk.service import sql

        config, host = task.config, self._host(task.config)
        login = self._login(task, config.connection, config.login)
        client = self._client(task, host, config.connection, login)
        meta = {"host": host, "connection": config.connection, "login": login, "warehouse_id": config.warehouse_id,
                "fetch_rows": "rows" in task.output_names}
        parameters = [_statement_parameter(n, v) for n, v in task.inputs.items()]
        try:
            adopted = self._find_submitted(client, config.warehouse_id, task.idempotency_key)
            if adopted:
                return StatementMeta(statement_id=adopted, **meta)
            # The Statement Execution API has no idempotency token: the tag lets a retry of this create find the
            # statement above when the response to this call is lost.
            response = client.statement_execution.execute_statement(
                statement=_named_markers(config.statement),
                warehouse_id=config.warehouse_id,
                wait_timeout="0s",
                on_wait_timeout=sql.ExecuteStatementRequestOnWaitTimeout.CONTINUE,
                disposition=sql.Disposition.INLINE,
                format=sql.Format.JSON_ARRAY,
                parameters=[sql.StatementParameterListItem.from_dict(p) for p in parameters] or None,
                query_tags=[sql.QueryTag(key=IDEMPOTENCY_TAG, value=task.idempotency_key)],
                catalog=config.catalog,
                schema=config.schema_name,
                row_limit=config.row_limit,
                byte_limit=config.byte_limit,
            )
        except Exception as err:
            raise _map_error(err, "submit the statement") from None
        return StatementMeta(statement_id=str(response.statement_id), **meta)

    def _find_submitted(self, client: WorkspaceClient, warehouse_id: str, key: str) -> str | None:
        """The statement an earlier try of this create submitted, found by its tag in the query history."""
        from databricks.sdk.service import sql

        since = int((time.time() - self.settings.sql_adopt_window_seconds) * 1000)
        try:
            history = client.query_history.list(
                filter_by=sql.QueryFilter(warehouse_ids=[warehouse_id],
                                          query_start_time_range=sql.TimeRange(start_time_ms=since)),
                max_results=100,
            )
        except Exception as err:
            mapped = _map_error(err, "read the query history")
            if isinstance(mapped, TransientServiceError):
                raise mapped from None
            # A principal that may run statements but not read the history still runs them, without adoption.
            log.warning("cannot look for an earlier submit of %s in the query history: %s", key, err)
            return None
        for query in history.res or []:
            if any(t.key == IDEMPOTENCY_TAG and t.value == key for t in query.query_tags or []):
                return query.query_id
        return None

    def get(self, job: StatementMeta, ctx: CallContext) -> Resource:
        client = self._client(ctx, job.host, job.connection, job.login)
        try:
            raw = _get_json(client, f"/api/2.0/sql/statements/{job.statement_id}")
        except Exception as err:
            raise _map_error(err, f"read statement {job.statement_id}", polling=True) from None
        status = raw.get("status") or {}
        state = status.get("state") or "UNKNOWN"
        error = status.get("error") or {}
        message = " ".join(p for p in (error.get("error_code"), error.get("message")) if p)
        uri = f"databricks://{urlsplit(job.host).netloc}/sql/statements/{job.statement_id}"
        info = {"statement_id": job.statement_id, "warehouse_id": job.warehouse_id}
        outputs: dict[str, Any] = {"statement_id": job.statement_id, "results": uri}
        if state in STATEMENT_STATES and STATEMENT_STATES.phase(state) is Phase.SUCCEEDED:
            manifest = raw.get("manifest") or {}
            outputs["row_count"] = int(manifest.get("total_row_count") or 0)
            if job.fetch_rows:
                outputs["rows"] = self._rows(client, job.statement_id, manifest, raw.get("result") or {})
            if manifest.get("truncated"):
                message = "the result was truncated by row_limit or byte_limit"
        return STATEMENT_STATES.resource(state, message, outputs=outputs, custom_info=info)

    def _rows(self, client: WorkspaceClient, statement_id: str, manifest: dict[str, Any],
              first: dict[str, Any]) -> list[dict[str, Any]]:
        columns = (manifest.get("schema") or {}).get("columns") or []
        rows: list[dict[str, Any]] = []
        chunk = first
        while True:
            for values in chunk.get("data_array") or []:
                rows.append({c["name"]: _sql_value(c.get("type_name", ""), v)
                             for c, v in zip(columns, values, strict=False)})
            index = chunk.get("next_chunk_index")
            if index is None:
                return rows
            try:
                chunk = _get_json(client, f"/api/2.0/sql/statements/{statement_id}/result/chunks/{int(index)}")
            except Exception as err:
                raise _map_error(err, f"read result chunk {index} of statement {statement_id}", polling=True) from None

    def delete(self, job: StatementMeta, ctx: CallContext) -> None:
        client = self._client(ctx, job.host, job.connection, job.login)
        try:
            client.statement_execution.cancel_execution(job.statement_id)
        except Exception as err:
            raise _map_error(err, f"cancel statement {job.statement_id}", polling=True) from None


def __getattr__(name: str) -> Any:
    # CONNECTORS also serves flytekit's task types (flytekit_compat.py subclasses DatabricksFunction). Built on first
    # use, so that either module may be imported first.
    if name == "CONNECTORS":
        from flyteconnectors.databricks import flytekit_compat

        globals()[name] = (DatabricksFunction, DatabricksRunJob, DatabricksSQL, *flytekit_compat.CONNECTORS)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ================================================================================================ runs
def _run_resource(client: WorkspaceClient, job: RunMeta, *, job_outputs: bool) -> Resource:
    """The run's phase; with ``job_outputs`` (run-job) its id, page and task output as the task's outputs."""
    try:
        # The raw response, not jobs.get_run(): the SDK turns a state it does not know into None, and an unknown
        # state must reach the state map by name.
        run = _get_json(client, "/api/2.2/jobs/runs/get", run_id=job.run_id)
    except Exception as err:
        raise _map_error(err, f"read run {job.run_id}", polling=True) from None
    key, states, message = _run_state(run)
    phase = states.phase(key) if key in states else states.unknown  # states.resource() reports an unknown one
    page = str(run.get("run_page_url") or "")
    links = [LogLink("Databricks run", page)] if page else []
    info = {"run_id": job.run_id, "job_id": run.get("job_id")}
    if phase in (Phase.FAILED, Phase.RETRYABLE_FAILED):
        detail = _task_output(client, run, job.output_task_key).get("error")
        if detail and str(detail) not in message:
            message = f"{message}: {detail}" if message else str(detail)
    outputs: dict[str, Any] | None = None  # a function task wrote <output_prefix>/outputs.pb itself
    if job_outputs and phase is Phase.SUCCEEDED:
        outputs = {"run_id": job.run_id, "run_page_url": page}
        if job.fetch_output:
            outputs["output"] = _output_text(_task_output(client, run, job.output_task_key))
    return states.resource(key, message, outputs=outputs, log_links=links, custom_info=info)


def _run_state(run: Mapping[str, Any]) -> tuple[str, StateMap, str]:
    """The state-map key of a run: its v2 ``status`` when present, else its v1 ``state``."""
    status, state = run.get("status") or {}, run.get("state") or {}
    if status.get("state"):
        details = status.get("termination_details") or {}
        key = str(status["state"])
        if key == "TERMINATED" and details.get("code"):
            key = f"TERMINATED/{details['code']}"
        message = state.get("state_message") or details.get("message") or ""
        return key, STATUS_STATES, message
    life = state.get("life_cycle_state") or "UNKNOWN"
    key = f"TERMINATED/{state['result_state']}" if life == "TERMINATED" and state.get("result_state") else life
    return str(key), LIFE_CYCLE_STATES, state.get("state_message") or ""


def _task_output(client: WorkspaceClient, run: Mapping[str, Any], task_key: str | None) -> dict[str, Any]:
    """``runs/get-output`` of one task run (the API refuses the parent of a multi-task run). Best effort."""
    tasks = run.get("tasks") or []
    chosen = [t for t in tasks if task_key is None or t.get("task_key") == task_key]
    if len(chosen) != 1 or not chosen[0].get("run_id"):
        return {}
    try:
        return _get_json(client, "/api/2.2/jobs/runs/get-output", run_id=chosen[0]["run_id"])
    except Exception:
        return {}


def _output_text(out: Mapping[str, Any]) -> str:
    for field, key in (("notebook_output", "result"), ("sql_output", None), ("dbt_output", None)):
        value = out.get(field)
        if value:
            return str(value.get(key) if key else json.dumps(value))
    return str(out.get("logs") or "")


def _cancel_run(client: WorkspaceClient, run_id: int) -> None:
    try:
        # cancel_run returns a waiter; never .result() it: delete only asks.
        client.jobs.cancel_run(run_id=run_id)
    except Exception as err:
        raise _map_error(err, f"cancel run {run_id}", polling=True) from None


def _run_name(task: TaskContext[Any]) -> str:
    name = task.identity.task_name or "flyte-task"
    return f"{name} ({task.identity.execution or 'local'}/{task.identity.node_id or 'n0'})"[:200]


# ================================================================================================ helpers
def _normalize_host(value: str | None) -> str:
    value = (value or "").strip().rstrip("/")
    if value and "://" not in value:
        value = f"https://{value}"
    return value


def _named_markers(statement: str) -> str:
    """flytekit's ``{{ .inputs.name }}`` query placeholders as the Statement API's named markers ``:name``."""
    return replace_input_placeholders(statement, lambda name: f":{name}")


def _parameter_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    raise InvalidTaskConfig(f"inputs.{name}", f"a {type(value).__name__} cannot be a job parameter")


_SQL_TYPES: list[tuple[type, str]] = [
    (bool, "BOOLEAN"), (int, "BIGINT"), (float, "DOUBLE"), (str, "STRING"),
    (dt.datetime, "TIMESTAMP"), (dt.date, "DATE"),
]


def _statement_parameter(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {"name": name, "type": "STRING"}  # no value: NULL
    for py, sql_type in _SQL_TYPES:
        if isinstance(value, py):
            text = _parameter_text(name, value)
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                text = value.isoformat()
            return {"name": name, "value": text, "type": sql_type}
    raise InvalidTaskConfig(f"inputs.{name}", f"a {type(value).__name__} cannot be a SQL parameter; use int, float, "
                            "str, bool, datetime or date")


def _sql_value(type_name: str, text: str | None) -> Any:
    if text is None:
        return None
    kind = type_name.upper()
    try:
        if kind in ("BYTE", "SHORT", "INT", "LONG", "BIGINT", "SMALLINT", "TINYINT", "INTEGER"):
            return int(text)
        if kind in ("FLOAT", "DOUBLE", "DECIMAL"):
            return float(text)
        if kind == "BOOLEAN":
            return text.lower() == "true"
    except ValueError:
        return text
    return text


class _NoSdkRetries:
    """A databricks-sdk ``Clock`` that turns the SDK's own retry loop off.

    The SDK retries 429, 503 and connection errors itself, sleeping at least a second per try for up to
    ``retry_timeout_seconds`` (``_base_client.do`` / ``retries.retried``): past Propeller's 10 s deadline, and a
    second, deadline-blind retry layer. Here its first sleep spends the whole budget instead, so the error reaches
    the core, which retries inside the RPC deadline and honours the service's Retry-After. The offset is
    per thread, so concurrent calls keep their own clocks.
    """

    def __init__(self) -> None:
        self._skipped = threading.local()

    def time(self) -> float:
        return time.time() + getattr(self._skipped, "seconds", 0.0)

    def sleep(self, seconds: float) -> None:
        self._skipped.seconds = getattr(self._skipped, "seconds", 0.0) + 10.0**9


class _ClosingWorkspaceClient:
    """A WorkspaceClient that the core's ClientCache can close on drain (it has no close() of its own)."""

    def __init__(self, client: WorkspaceClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def close(self) -> None:
        session = getattr(getattr(self._client.api_client, "_api_client", None), "_session", None)
        if session is not None:
            session.close()


def _pool_plain_http(client: WorkspaceClient) -> None:
    """Plain ``http://`` endpoints (the local fake, a proxy sidecar) get the SDK's sized pool too.

    The SDK mounts its pool on ``https://`` only; ``http://`` falls back to requests' default of 10 connections,
    which under load discards a connection after almost every call ("Connection pool is full").
    """
    session = getattr(getattr(client.api_client, "_api_client", None), "_session", None)
    if session is not None and client.config.host.startswith("http://"):
        session.mount("http://", session.get_adapter("https://"))


def _map_error(err: Exception, doing: str, *, missing_is_rejection: bool = False, polling: bool = False) -> Exception:
    """An SDK error as one of the core's errors, carrying the service's own message.

    ``polling``: a status read or cancel, where refused credentials may be a rotation in progress, so they are
    transient (the core fails the task after its unavailable grace) instead of failing a running job at once.
    Anything unrecognised is returned unchanged for the core to report as an internal error.
    """
    import requests

    from databricks.sdk import errors

    if isinstance(err, ConnectorError):
        return err
    if isinstance(err, TimeoutError) and isinstance(err.__cause__, Exception):
        err = err.__cause__  # the SDK's retry loop gave up at once (_NoSdkRetries): report what it saw
    text = str(err) or type(err).__name__
    if isinstance(err, (errors.TooManyRequests, errors.TemporarilyUnavailable, errors.DeadlineExceeded,
                        errors.InternalError, errors.Aborted)):
        return TransientServiceError(f"could not {doing}: {text}", getattr(err, "retry_after_secs", None))
    if isinstance(err, (TimeoutError, requests.ConnectionError, requests.Timeout)):
        # TimeoutError: the SDK's own retry budget (retry_timeout_seconds) ran out.
        return TransientServiceError(f"could not {doing}: {type(err).__name__}: {text}")
    if isinstance(err, errors.NotFound) or (isinstance(err, errors.InvalidParameterValue)
                                            and "does not exist" in text):
        return JobRejected(f"Databricks could not {doing}: {text}", "NOT_FOUND") if missing_is_rejection \
            else JobNotFound(text)
    if isinstance(err, (errors.Unauthenticated, errors.PermissionDenied)):
        message = f"Databricks refused the credentials to {doing}: {text}"
        return TransientServiceError(message) if polling else JobRejected(message, "PERMISSION_DENIED")
    if isinstance(err, errors.DatabricksError):
        return JobRejected(f"Databricks refused to {doing}: {text}", getattr(err, "error_code", "") or "")
    return err
