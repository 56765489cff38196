"""What the suite needs to know about each connector: its fake, settings, secrets, a task, and its job states.

A profile is used only when its connector package (and fake) is installed; the core's example connector is
always there. Every secret a profile configures contains the run's canary, so the secrets check can find it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flyteconnectors.core import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.fake import FakeService

EXAMPLE_MODULE = "example=flyteconnectors.core.testing.example"


@dataclass
class Case:
    """One task a profile can run: a template, its inputs, and (async) the fake's step vocabulary."""

    template: Any
    inputs: Mapping[str, Any] = field(default_factory=dict)
    sync: bool = False


@dataclass
class Profile:
    package: str
    #: ``fake(canary)`` builds (does not start) the fake.
    make_fake: Callable[[str], FakeService]
    #: Connector settings pointing at the started fake (become FLYTECONNECTORS_<PACKAGE>_<FIELD>).
    settings: Callable[[FakeService], dict[str, Any]]
    #: Secret files for the host; every value carries the canary.
    secrets: Callable[[str, FakeService], dict[str, str]]
    #: The async task used for load, faults, replicas and soak.
    job: Callable[[FakeService], Case]
    running: Any
    success: Any
    failure: Any
    #: One string per remote job the fake holds, containing the job's idempotency key or name.
    jobs: Callable[[FakeService], list[str]]
    #: Every other task type of the package (the fuzzer reaches them all through ListAgents anyway).
    extra_cases: Callable[[FakeService], list[Case]] = lambda fake: []
    env: Mapping[str, str] = field(default_factory=dict)
    #: Attribute names of the fake's default script(s), set to steer new jobs to an outcome.
    script_attrs: tuple[str, ...] = ("default_script",)
    #: The package's module spec when it is not an installed distribution (the example connector).
    module: str | None = None
    #: Python module whose presence means "installed".
    requires: str = ""

    def set_outcome(self, fake: FakeService, steps: tuple[Any, ...]) -> None:
        """New jobs the fake creates from now on walk through ``steps``."""
        with fake.lock:
            for attr in self.script_attrs:
                setattr(fake, attr, tuple(steps))

    def installed(self) -> bool:
        return not self.requires or importlib.util.find_spec(self.requires) is not None


# ============================================================================================== example
def _example() -> Profile:
    from flyteconnectors.core.testing.example import ExampleFake

    return Profile(
        package="example",
        module=EXAMPLE_MODULE,
        make_fake=lambda canary: ExampleFake(),
        settings=lambda fake: {"endpoint": fake.url},
        secrets=lambda canary, fake: {"example_token": canary},
        job=lambda fake: Case(builders.task_template("example-job", {"payload": "hello"}, outputs={"result": str})),
        extra_cases=lambda fake: [Case(builders.task_template("example-echo", {"prefix": "> "}, inputs={"text": str},
                                                              outputs={"out": str}), {"text": "hi"}, sync=True)],
        running="RUNNING",
        success="SUCCEEDED",
        failure="FAILED:disk full",
        jobs=lambda fake: [str(j["name"]) for j in fake.jobs.values()],  # type: ignore[attr-defined]
    )


# ============================================================================================== bigquery
@functools.lru_cache(maxsize=1)
def _rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _bigquery() -> Profile:
    from flyteconnectors.bigquery.fake import BigQueryFake

    outputs = {"results": builders.STRUCTURED_DATASET, "job_id": str, "bytes_processed": int}

    def secrets(canary: str, fake: FakeService) -> dict[str, str]:
        key = {"type": "service_account", "project_id": "sa-proj", "private_key_id": canary,
               "private_key": _rsa_pem(), "client_email": "runner@sa-proj.iam.gserviceaccount.com",
               "client_id": "1", "token_uri": f"{fake.url}/token"}
        return {"bigquery_service_account_json": json.dumps(key)}

    return Profile(
        package="bigquery",
        requires="flyteconnectors.bigquery",
        make_fake=lambda canary: BigQueryFake(),
        settings=lambda fake: {"endpoint": fake.url, "project": "proj", "retry_initial_delay": 0.01,
                               "retry_budget": 0.3, "request_timeout": 5},
        secrets=secrets,
        job=lambda fake: Case(builders.task_template("bigquery-query", {}, sql="SELECT @n AS n", inputs={"n": int},
                                                     outputs=outputs), {"n": 3}),
        running="RUNNING",
        success="DONE",
        failure={"state": "DONE", "errorResult": {"reason": "invalidQuery", "message": "Unrecognized name: x"}},
        jobs=lambda fake: [jid for (_project, jid) in fake.jobs],  # type: ignore[attr-defined]
    )


# ============================================================================================== snowflake
def _snowflake() -> Profile:
    from flyteconnectors.snowflake.fake import SnowflakeFake

    user = "FLYTE_SVC"
    custom = {"account": "acme-analytics", "user": user, "warehouse": "COMPUTE_WH", "database": "ANALYTICS",
              "schema": "PUBLIC"}

    def make(canary: str) -> FakeService:
        fake = SnowflakeFake()
        fake.add_user(user, password=canary)  # the canary is the only password that logs in
        return fake

    return Profile(
        package="snowflake",
        requires="flyteconnectors.snowflake",
        make_fake=make,
        settings=lambda fake: {"host": "127.0.0.1", "port": fake.port, "protocol": "http",
                               "retry_max_attempts": 2, "retry_backoff_base_ms": 10, "login_timeout": 5,
                               "request_timeout": 5},
        secrets=lambda canary, fake: {"snowflake_password": canary},
        job=lambda fake: Case(builders.task_template("snowflake-query", custom, sql="SELECT 42 AS answer",
                                                     outputs={"results": builders.STRUCTURED_DATASET,
                                                              "query_id": str})),
        running="RUNNING",
        success="SUCCESS",
        failure={"status": "FAILED_WITH_ERROR", "errorCode": "100038", "errorMessage": "Numeric value is not "
                 "recognized"},
        jobs=lambda fake: [q.query_tag for q in fake.submissions()],  # type: ignore[attr-defined]
    )


# ============================================================================================== databricks
DATABRICKS_ARGS = ["pyflyte-execute", "--inputs", "s3://bucket/n0/inputs.pb", "--output-prefix", "s3://bucket/n0/0",
                   "--raw-output-data-prefix", "s3://bucket/raw", "--resolver",
                   "flytekit.core.python_auto_container.default_task_resolver", "--", "task-module", "wf",
                   "task-name", "fn"]


def _databricks() -> Profile:
    from flyteconnectors.databricks.fake import DatabricksFake

    def jobs(fake: Any) -> list[str]:
        with fake.lock:
            by_run = {run_id: token for token, run_id in fake.idempotency.items()}
            found = [by_run.get(run_id, f"run-{run_id}") for run_id in fake.runs]
            found += [json.dumps(s.query_tags) for s in fake.statements.values()]
        return found

    def extra(fake: Any) -> list[Case]:
        return [Case(builders.task_template("databricks-sql", {"warehouse_id": "abc123"},
                                            sql="SELECT :n + 1 AS answer", inputs={"n": int},
                                            outputs={"rows": list[dict], "row_count": int}), {"n": 41})]

    return Profile(
        package="databricks",
        requires="flyteconnectors.databricks",
        make_fake=lambda canary: DatabricksFake(execute_python=False, tokens={canary}),
        settings=lambda fake: {"host": "https://adb-1.azuredatabricks.net", "host_override": fake.url,
                               "retry_timeout_seconds": 1, "http_timeout_seconds": 5},
        secrets=lambda canary, fake: {"databricks_token": canary},
        job=lambda fake: Case(builders.task_template("databricks-function", {"existing_cluster_id": "0101-abc"},
                                                     container_args=DATABRICKS_ARGS, outputs={"o0": int})),
        extra_cases=extra,
        running="RUNNING",
        success="TERMINATED:SUCCESS",
        failure={"state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED",
                           "state_message": "Task failed with an exception"}, "status": None},
        jobs=jobs,
        env={"DATABRICKS_CONFIG_FILE": "/dev/null"},
    )


# ============================================================================================== openai
def _openai() -> Profile:
    from flyteconnectors.openai.fake import OpenAIFake

    outputs = {"output_file": builders.FILE, "error_file": builders.FILE, "request_counts": dict[str, int]}
    results = tempfile.mkdtemp(prefix="reliability-openai-")

    def jobs(fake: Any) -> list[str]:
        with fake.lock:
            return [json.dumps(b.get("metadata") or {"id": b["id"]}) for b in fake.batches.values()]

    def extra(fake: Any) -> list[Case]:
        chat = builders.task_template(
            "openai-chat", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "{{ .inputs.text }}"}]},
            inputs={"text": str}, outputs={"answer": str})
        return [Case(chat, {"text": "hello"}, sync=True)]

    return Profile(
        package="openai",
        requires="flyteconnectors.openai",
        make_fake=lambda canary: OpenAIFake(api_key=canary),
        # The default request timeout (bounded by each call's deadline). A shorter one lets a create the service
        # finishes only after the client gave up be followed by a second one in the same attempt: the batches
        # API has no idempotency key, so nothing can tell the two apart (a documented limit, not asserted here).
        settings=lambda fake: {"base_url": f"{fake.url}/v1", "results_prefix": results},
        secrets=lambda canary, fake: {"openai_api_key": canary},
        job=lambda fake: Case(builders.task_template("openai-batch-job", {"model": "gpt-4o-mini"},
                                                     inputs={"prompts": list[str]}, outputs=outputs),
                              {"prompts": ["one", "two"]}),
        extra_cases=extra,
        running="in_progress",
        success="completed",
        failure={"status": "failed", "errors": [{"code": "invalid_request", "message": "bad line", "line": 1}]},
        jobs=jobs,
        env={"OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""},
    )


# ============================================================================================== sagemaker
SAGEMAKER_ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
SAGEMAKER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1.7"


def _sagemaker() -> Profile:
    from flyteconnectors.sagemaker.fake import SageMakerFake

    training = {"role_arn": SAGEMAKER_ROLE, "image": SAGEMAKER_IMAGE, "output_path": "s3://bucket/models",
                "channels": [{"name": "train", "s3_uri": "{{inputs.train}}"}],
                "hyperparameters": {"epochs": "{{inputs.epochs}}"}, "instance_type": "ml.m5.xlarge"}

    def extra(fake: Any) -> list[Case]:
        model = builders.task_template("sagemaker-create-model", {"image": SAGEMAKER_IMAGE,
                                                                  "role_arn": SAGEMAKER_ROLE},
                                       outputs={"model_name": str, "model_arn": str})
        return [Case(model, sync=True)]

    return Profile(
        package="sagemaker",
        requires="flyteconnectors.sagemaker",
        make_fake=lambda canary: SageMakerFake(),
        settings=lambda fake: {"endpoint_url": fake.url, "runtime_endpoint_url": fake.url, "region": "us-east-1",
                               "max_attempts": 1, "read_timeout": 2.0, "invoke_timeout": 2.0,
                               "connect_timeout": 2.0},
        secrets=lambda canary, fake: {"aws_access_key_id": canary, "aws_secret_access_key": canary,
                                      "aws_session_token": canary},
        job=lambda fake: Case(builders.task_template(
            "sagemaker-training", training, inputs={"train": str, "epochs": int},
            outputs={"model_artifact": builders.FILE, "metrics": dict[str, float], "job_arn": str}),
            {"train": "s3://bucket/data/train", "epochs": 3}),
        extra_cases=extra,
        running="InProgress",
        success="Completed",
        failure={"status": "Failed", "failure_reason": "AlgorithmError: exit code 1"},
        jobs=lambda fake: list(fake.names("training")),  # type: ignore[attr-defined]
        env={"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null",
             "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_REGION": "us-east-1"},
    )


BUILDERS: dict[str, Callable[[], Profile]] = {
    "example": _example,
    "bigquery": _bigquery,
    "snowflake": _snowflake,
    "databricks": _databricks,
    "openai": _openai,
    "sagemaker": _sagemaker,
}


def available(only: list[str] | None = None) -> tuple[list[Profile], dict[str, str]]:
    """The profiles whose connector and fake are installed, and why the others were skipped."""
    found, skipped = [], {}
    for name, build in BUILDERS.items():
        if only and name not in only:
            continue
        try:
            profile = build()
        except ImportError as err:
            skipped[name] = f"not installed ({err.name or err})"
            continue
        if not profile.installed():
            skipped[name] = "not installed"
            continue
        found.append(profile)
    return found, skipped


PHASE_NAMES = {int(p): p.name for p in Phase}
