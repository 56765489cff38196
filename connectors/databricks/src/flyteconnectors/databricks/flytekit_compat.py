"""flytekit's Databricks task types (flytekitplugins-spark), served by our ``databricks-function`` connector.

Workflows registered with ``@task(task_config=DatabricksV2(...))`` (task type ``databricks`` v0) or the deprecated
``Databricks(...)`` (task type ``spark`` v0) keep working when this package replaces flytekitplugins-spark's
connector on the host. flytekit's layout (``PysparkFunctionTask.get_custom``)::

    {"databricksConf": {<runs/submit body: existing_cluster_id | new_cluster | environment_key + environments,
                        run_name, timeout_seconds, libraries, git_source, python_file>},
     "databricksInstance": "<workspace host>", "sparkConf": {...},
     "databricksTokenSecret" | "databricksOauthSecret" | "databricksAuthType" | ...: sign-in choices,
     "databricksServiceCredentialProvider": ..., "notebookPath": ...,
     "executorPath" | "mainApplicationFile" | ...: for Propeller's k8s Spark plugin, not used by Databricks}

It becomes :class:`~flyteconnectors.databricks.connector.DatabricksFunctionConfig` and runs through the same code
as ``databricks-function`` tasks: a one-time run of flytetools' entrypoint (the same commit flytekit used) with
the task's rendered ``pyflyte-execute`` arguments, which writes the task's outputs itself.

Sign-in: flytekit read a token from a Kubernetes secret in the workflow's namespace. This host reads its own
secrets: ``databricks_token`` (or flytekit's ``FLYTE_DATABRICKS_ACCESS_TOKEN``), or a service principal's
``databricks_client_id`` / ``databricks_client_secret``. A task naming its own secret
(``databricks_token_secret="team-a"``) reads ``databricks_team_a_token`` (``databricks_team_a_client_id`` ...).

What changes on purpose: no token is ever written to resource_meta; a run in a state flytekit did not know
(QUEUED, BLOCKED, ...) or without a state is a phase, not a gRPC error or a retryable failure; an
``existing_cluster_id`` run also gets ``FLYTE_FAIL_ON_ERROR``, so a failed task fails the run; a retried
create adopts the run the first try started (idempotency token per attempt). Not supported: notebook tasks
(``notebook_path``) and OIDC federation sign-in; they fail at once with the reason.

No SDK is imported here.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from flyteconnectors.core import CallContext, InvalidTaskConfig, Resource, TaskContext
from flyteconnectors.core.config import TaskConfig
from flyteconnectors.databricks.connector import (
    FLYTETOOLS_ENTRYPOINT,
    FLYTETOOLS_GIT,
    FLYTETOOLS_SERVERLESS_ENTRYPOINT,
    DatabricksFunction,
    DatabricksFunctionConfig,
    RunMeta,
    WorkspaceConfig,
    _normalize_host,
)

#: Environment variables flytekit's connector read on the host, honoured the same way.
INSTANCE_ENV = "FLYTE_DATABRICKS_INSTANCE"
CREDENTIAL_PROVIDER_ENV = "FLYTE_DATABRICKS_SERVICE_CREDENTIAL_PROVIDER"
FLYTEKIT_TOKEN = "FLYTE_DATABRICKS_ACCESS_TOKEN"
#: flytekit's default Kubernetes secret names, which mean "the host's default credentials" here.
DEFAULT_SECRET_NAMES = {"databricks-token", "databricks-oauth"}

#: runs/submit fields of ``databricksConf`` and what each becomes.
_CONF_FIELDS = {"existing_cluster_id", "new_cluster", "run_name", "timeout_seconds", "libraries", "git_source",
                "python_file", "environment_key", "environments"}
#: Fields of the Spark task layout that only Propeller's k8s Spark plugin reads; Databricks never used them.
_K8S_SPARK_ONLY = {"executorPath", "mainApplicationFile", "applicationFile", "mainClass", "sparkType", "hadoopConf",
                   "driverPod", "executorPod", "databricksClientId", "databricksOidcTokenFile",
                   "databricksOidcAudience"}
_AUTH_TYPES = {"pat": "pat", "oauth_m2m": "oauth-m2m"}


def _integral(value: Any) -> Any:
    """Struct turns every number into a float (``num_workers: 2.0``): whole numbers back to ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _connection(secret_name: Any, field: str) -> str:
    if not secret_name or secret_name in DEFAULT_SECRET_NAMES:
        return ""
    name = re.sub(r"[^a-z0-9]+", "_", str(secret_name).lower()).strip("_")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,40}", name):
        raise InvalidTaskConfig(f"custom.{field}", f"{secret_name!r} cannot name a secret of this host")
    return name


class FlytekitDatabricksConfig(DatabricksFunctionConfig):
    """:class:`DatabricksFunctionConfig` built from flytekit's Databricks (``spark`` / ``databricks``) layout."""

    #: Serverless only: appended to the entrypoint's arguments as flytekit did.
    service_credential_provider: str | None = None

    @classmethod
    def from_template_parts(
        cls, custom: dict[str, Any] | None, config: dict[str, str] | None = None, sql: str | None = None
    ) -> TaskConfig:
        return super().from_template_parts(translate_custom(custom or {}), None, sql)


def translate_custom(custom: dict[str, Any]) -> dict[str, Any]:
    """flytekit's Databricks custom layout as ``databricks-function`` config fields."""
    rest = {k: v for k, v in custom.items() if k not in _K8S_SPARK_ONLY}
    conf = _integral(rest.pop("databricksConf", None))
    if not isinstance(conf, dict) or not conf:
        raise InvalidTaskConfig("custom.databricksConf", "flytekit's Databricks task config needs databricks_conf "
                                "(the runs/submit body)")
    if rest.get("notebookPath"):
        raise InvalidTaskConfig("custom.notebookPath", "notebook tasks are not supported by this host; run the "
                                "notebook as a saved job with the databricks-run-job task type, or keep a flytekit "
                                "connector host for these tasks")
    rest.pop("notebookPath", None)
    rest.pop("notebookBaseParameters", None)
    data: dict[str, Any] = {}
    if rest.get("databricksInstance"):
        data["host"] = rest.pop("databricksInstance")
    rest.pop("databricksInstance", None)
    auth = rest.pop("databricksAuthType", None)
    if auth:
        if auth not in _AUTH_TYPES:
            raise InvalidTaskConfig("custom.databricksAuthType", f"{auth!r} sign-in is not supported by this host; "
                                    "use pat (secret databricks_token) or oauth_m2m (secrets databricks_client_id "
                                    "and databricks_client_secret)")
        data["login"] = _AUTH_TYPES[auth]
    token_secret = rest.pop("databricksTokenSecret", None)
    oauth_secret = rest.pop("databricksOauthSecret", None)
    if data.get("login") == "oauth-m2m":
        data["connection"] = _connection(oauth_secret, "databricksOauthSecret")
    else:  # flytekit signed in with a token unless told otherwise
        data["connection"] = _connection(token_secret, "databricksTokenSecret")
    provider = rest.pop("databricksServiceCredentialProvider", None)
    spark_conf = rest.pop("sparkConf", None) or {}
    if rest:
        raise InvalidTaskConfig(f"custom.{sorted(rest)[0]}", "not part of flytekit's Databricks task layout")

    unknown = sorted(set(conf) - _CONF_FIELDS)
    if unknown:
        raise InvalidTaskConfig(f"custom.databricksConf.{unknown[0]}", "runs/submit field not supported by this host "
                                "(supported: " + ", ".join(sorted(_CONF_FIELDS)) + ")")
    for key in ("existing_cluster_id", "new_cluster", "run_name", "timeout_seconds", "libraries"):
        if conf.get(key) is not None:
            data[key] = conf[key]
    serverless = bool(conf.get("environment_key") or conf.get("environments"))
    if serverless and not (data.get("existing_cluster_id") or data.get("new_cluster")):
        data["serverless"] = True
        environment, env_vars = _serverless_environment(conf)
        data["environment"] = environment
        if env_vars:
            data["env"] = env_vars
        if provider:
            data["service_credential_provider"] = provider
    new_cluster = data.get("new_cluster")
    if isinstance(new_cluster, dict) and not new_cluster.get("spark_conf") and spark_conf:
        data["spark_conf"] = spark_conf  # flytekit's rule: the task's Spark conf when the cluster names none
    # flytekit always ran a file from Git: flytetools' entrypoint unless the task named its own file and repo.
    data["git_source"] = conf.get("git_source") or FLYTETOOLS_GIT
    data["python_file"] = conf.get("python_file") or (
        FLYTETOOLS_SERVERLESS_ENTRYPOINT if data.get("serverless") else FLYTETOOLS_ENTRYPOINT)
    return data


def _serverless_environment(conf: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec of the environment the task names (flytekit's default: key "default", client "1")."""
    key = conf.get("environment_key") or "default"
    environments = conf.get("environments") or []
    if not isinstance(environments, list):
        raise InvalidTaskConfig("custom.databricksConf.environments", "must be a list")
    spec: dict[str, Any] = {"client": "1"}
    for environment in environments:
        if isinstance(environment, dict) and environment.get("environment_key") == key:
            spec = dict(environment.get("spec") or {})
    env_vars = spec.pop("environment_vars", None) or {}
    return spec, {str(k): str(v) for k, v in env_vars.items()}


class _FlytekitDatabricks(DatabricksFunction):
    secret_names = (*DatabricksFunction.secret_names, FLYTEKIT_TOKEN)

    def _host(self, config: WorkspaceConfig) -> str:
        if not config.host and not self.settings.host and os.environ.get(INSTANCE_ENV):
            return _normalize_host(os.environ[INSTANCE_ENV])
        return super()._host(config)

    def create(self, task: TaskContext[DatabricksFunctionConfig]) -> RunMeta:
        task = _with_flytekit_token(task, task.config.connection)
        config = task.config
        provider = getattr(config, "service_credential_provider", None) or os.environ.get(CREDENTIAL_PROVIDER_ENV)
        if config.serverless and provider:
            task = dataclasses.replace(
                task, container_args=(*task.container_args, f"--flyte-credential-provider={provider}"))
        return super().create(task)

    def get(self, job: RunMeta, ctx: CallContext) -> Resource:
        return super().get(job, _with_flytekit_token(ctx, job.connection))

    def delete(self, job: RunMeta, ctx: CallContext) -> None:
        super().delete(job, _with_flytekit_token(ctx, job.connection))


def _with_flytekit_token(ctx: Any, connection: str) -> Any:
    """flytekit's host-level token (FLYTE_DATABRICKS_ACCESS_TOKEN) stands in for ``databricks_token`` if unset."""
    if connection or ctx.secrets.get("databricks_token") is not None:
        return ctx
    token = ctx.secrets.get(FLYTEKIT_TOKEN)
    if token is None:
        return ctx
    return dataclasses.replace(ctx, secrets=ctx.secrets.with_overrides({"databricks_token": token}))


class FlytekitDatabricks(_FlytekitDatabricks):
    """Serves flytekit's ``databricks`` v0 (``DatabricksV2`` task config)."""

    name = "Databricks (flytekit task types)"
    task_type = "databricks"
    task_version = 0
    # Repeated on each class: the core's Connector.__init_subclass__ resets them from an inherited generic base.
    config_model = FlytekitDatabricksConfig
    meta_model = RunMeta


class FlytekitSparkOnDatabricks(_FlytekitDatabricks):
    """Serves flytekit's ``spark`` v0 (the deprecated ``Databricks`` task config).

    Propeller's own k8s Spark plugin claims ``spark`` before any connector unless it is disabled there, as it
    did for flytekit's connector.
    """

    name = "Databricks (flytekit task types)"
    task_type = "spark"
    task_version = 0
    config_model = FlytekitDatabricksConfig
    meta_model = RunMeta


CONNECTORS = (FlytekitDatabricks, FlytekitSparkOnDatabricks)
