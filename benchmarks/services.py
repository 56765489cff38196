"""Scenario 4: per service, the job each host runs against the same fake, and how each pairing is made.

A :class:`ServiceCase` says how to start the fake (its scripted states: every job finishes on the third status
read), which task template and environment our host gets, and which flytekit gets (or why flytekit's connector
for that service cannot be pointed at the fake). Templates are built with the core's test builders, the same
shapes ``pyflyte register`` produces for each task type.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flyteidl.core import literals_pb2, tasks_pb2

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
DATABRICKS_TOKEN = "dapi-bench-0123456789abcdef"
OPENAI_KEY = "sk-bench-dummy"
SNOWFLAKE_USER = "FLYTE_SVC"
SNOWFLAKE_ACCOUNT = "acme-bench"
#: Every benchmark query carries this marker, so the fake counts exactly the jobs the benchmark created.
SQL = "SELECT 1 AS bench_marker"
FLYTE_ARGS = ["pyflyte-execute", "--inputs", "s3://bench/n0/inputs.pb", "--output-prefix", "s3://bench/n0/0",
              "--resolver", "flytekit.core.python_auto_container.default_task_resolver", "--", "task-module",
              "bench", "task-name", "fn"]


@dataclass
class Side:
    """One host's job: the template, its inputs, and what the host process needs in its environment."""

    template: tasks_pb2.TaskTemplate
    inputs: literals_pb2.LiteralMap = field(default_factory=literals_pb2.LiteralMap)
    env: dict[str, str] = field(default_factory=dict)
    #: Extra modules for ``pyflyte serve connector --modules`` (flytekit only).
    modules: list[str] = field(default_factory=list)
    #: Per-execution inputs (execution name -> LiteralMap), when a job name must come from the inputs.
    inputs_for: Callable[[str], literals_pb2.LiteralMap] | None = None


@dataclass
class Started:
    """What the harness knows once the fake runs: its URL and whatever the fake's setup produced."""

    url: str
    port: int
    setup: dict[str, Any]
    workdir: Path
    cert: str | None = None


@dataclass
class ServiceCase:
    name: str
    #: ``flyteconnectors.fakes`` entry-point name and constructor keyword arguments.
    fake: str
    script: list[Any]
    ours: Callable[[Started], Side]
    theirs: Callable[[Started], Side] | None
    #: How the flytekit pairing is made, or why it could not be (shown in docs/benchmarks.md).
    pairing: str
    fake_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Passed to the fake runner's setup hook (users, files, ...).
    setup: dict[str, Any] = field(default_factory=dict)
    tls: bool = False
    #: flytekit's task type (for the table).
    their_task_type: str = ""


def _builders() -> Any:
    from flyteconnectors.core.testing import builders

    return builders


def _common_env(started: Started) -> dict[str, str]:
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": REGION,
           "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost"}
    if started.cert:
        # flytekit's aiohttp (ssl default context) and requests-based SDKs both trust the fake's certificate.
        env.update({"SSL_CERT_FILE": started.cert, "REQUESTS_CA_BUNDLE": started.cert})
    return env


# ============================================================================================ Databricks
def _databricks_ours(s: Started) -> Side:
    b = _builders()
    template = b.task_template("databricks-function", {"existing_cluster_id": "0101-bench"},
                               container_args=FLYTE_ARGS, image="ghcr.io/acme/bench:1")
    return Side(template, env={
        **_common_env(s),
        "FLYTECONNECTORS_DATABRICKS_HOST": "https://adb-1234567890.1.azuredatabricks.net",
        "FLYTECONNECTORS_DATABRICKS_HOST_OVERRIDE": s.url,
        "DATABRICKS_TOKEN": DATABRICKS_TOKEN,
        "DATABRICKS_CONFIG_FILE": "/dev/null",
    })


def _databricks_theirs(s: Started) -> Side:
    b = _builders()
    # flytekit's DatabricksConnectorV2 (task type "databricks"); serverless compute, because the fake (like the
    # Jobs 2.1 API) wants a ``tasks`` list, which flytekit only builds for serverless.
    custom = {"databricksConf": {"run_name": "bench", "environment_key": "default",
                                 "environments": [{"environment_key": "default", "spec": {"client": "2"}}]},
              "databricksInstance": f"127.0.0.1:{s.port}"}
    template = b.task_template("databricks", custom, container_args=FLYTE_ARGS, image="ghcr.io/acme/bench:1")
    return Side(template, env={**_common_env(s), "FLYTE_DATABRICKS_ACCESS_TOKEN": DATABRICKS_TOKEN,
                               "_FSEC_FLYTE_DATABRICKS_ACCESS_TOKEN": DATABRICKS_TOKEN,
                               "KUBECONFIG": "/dev/null"})


# ============================================================================================ BigQuery
def _bigquery_ours(s: Started) -> Side:
    b = _builders()
    template = b.task_template("bigquery-query", {"project": "bench-proj", "location": "US"}, sql=SQL)
    return Side(template, env={**_common_env(s), "GOOGLE_APPLICATION_CREDENTIALS": s.setup["credentials"],
                               "FLYTECONNECTORS_BIGQUERY_ENDPOINT": s.url,
                               "FLYTECONNECTORS_BIGQUERY_PROJECT": "bench-proj"})


def _bigquery_theirs(s: Started) -> Side:
    b = _builders()
    template = b.task_template("bigquery_query_job_task", {"ProjectID": "bench-proj", "Location": "US",
                                                           "Domain": "development"}, sql=SQL)
    return Side(template, env={**_common_env(s), "GOOGLE_APPLICATION_CREDENTIALS": s.setup["credentials"],
                               "BIGQUERY_EMULATOR_HOST": s.url})


# ============================================================================================ Snowflake
def _snowflake_ours(s: Started) -> Side:
    b = _builders()
    custom = {"account": SNOWFLAKE_ACCOUNT, "user": SNOWFLAKE_USER, "warehouse": "COMPUTE_WH",
              "database": "ANALYTICS", "schema": "PUBLIC"}
    template = b.task_template("snowflake-query", custom, sql=SQL)
    return Side(template, env={**_common_env(s), "SNOWFLAKE_PRIVATE_KEY": s.setup["private_key"],
                               "FLYTECONNECTORS_SNOWFLAKE_HOST": "127.0.0.1",
                               "FLYTECONNECTORS_SNOWFLAKE_PORT": str(s.port),
                               "FLYTECONNECTORS_SNOWFLAKE_PROTOCOL": "http"})


def _snowflake_theirs(s: Started) -> Side:
    b = _builders()
    config = {"user": SNOWFLAKE_USER, "account": SNOWFLAKE_ACCOUNT, "database": "ANALYTICS", "schema": "PUBLIC",
              "warehouse": "COMPUTE_WH"}
    template = b.task_template("snowflake", {}, sql=SQL, config=config)
    return Side(template, modules=["fk_snowflake_endpoint"], env={
        **_common_env(s), "SNOWFLAKE_PRIVATE_KEY": s.setup["private_key"],
        "_FSEC_SNOWFLAKE_PRIVATE_KEY": s.setup["private_key"],
        "BENCH_SNOWFLAKE_HOST": "127.0.0.1", "BENCH_SNOWFLAKE_PORT": str(s.port)})


# ============================================================================================ OpenAI
def _openai_ours(s: Started) -> Side:
    b = _builders()
    outputs = {"output_file": b.FILE, "error_file": b.FILE, "request_counts": dict[str, int]}
    template = b.task_template("openai-batch-job", {"model": "gpt-4o-mini"}, inputs={"prompts": list[str]},
                               outputs=outputs)
    inputs = b.literal_map({"prompts": ["one", "two"]}, {"prompts": list[str]})
    results = s.workdir / "openai-results"
    results.mkdir(exist_ok=True)
    return Side(template, inputs, env={**_common_env(s), "OPENAI_API_KEY": OPENAI_KEY,
                                       "FLYTECONNECTORS_OPENAI_BASE_URL": f"{s.url}/v1",
                                       "FLYTECONNECTORS_OPENAI_RESULTS_PREFIX": str(results)})


def _openai_theirs(s: Started) -> Side:
    b = _builders()
    template = b.task_template("openai-batch", {"openai_organization": "org-bench",
                                                "config": {"endpoint": "/v1/chat/completions"}},
                               inputs={"input_file_id": str}, outputs={"result": dict})
    inputs = b.literal_map({"input_file_id": s.setup["file_id"]}, {"input_file_id": str})
    return Side(template, inputs, env={**_common_env(s), "FLYTE_OPENAI_API_KEY": OPENAI_KEY,
                                       "_FSEC_FLYTE_OPENAI_API_KEY": OPENAI_KEY,
                                       "OPENAI_BASE_URL": f"{s.url}/v1"})


# ============================================================================================ SageMaker
def _sagemaker_ours(s: Started) -> Side:
    b = _builders()
    config = {"role_arn": ROLE, "image": IMAGE, "output_path": "s3://bench/models",
              "channels": [{"name": "train", "s3_uri": "s3://bench/train"}]}
    template = b.task_template("sagemaker-training", config, outputs={"model_artifact": str})
    return Side(template, env={**_common_env(s), "FLYTECONNECTORS_SAGEMAKER_ENDPOINT_URL": s.url,
                               "FLYTECONNECTORS_SAGEMAKER_RUNTIME_ENDPOINT_URL": s.url,
                               "FLYTECONNECTORS_SAGEMAKER_REGION": REGION})


def _sagemaker_theirs(s: Started) -> Side:
    b = _builders()
    config = {
        # flytekit fills {inputs.x} and {idempotence_token} (an xxhash of the config): a name per execution,
        # and the same name for a retried attempt (flytekit then adopts the job on ResourceInUse).
        "TrainingJobName": "{inputs.job}-{idempotence_token}",
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": "s3://bench/train", "S3DataDistributionType": "FullyReplicated"}}}],
        "OutputDataConfig": {"S3OutputPath": "s3://bench/models"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
    }
    template = b.task_template("sagemaker-training-job", {"config": config, "region": REGION, "images": {}},
                               inputs={"job": str}, outputs={"result": dict})

    def inputs_for(execution: str) -> literals_pb2.LiteralMap:
        return b.literal_map({"job": f"b-{execution}"[:40]}, {"job": str})

    return Side(template, inputs_for("x"), inputs_for=inputs_for,
                env={**_common_env(s), "AWS_ENDPOINT_URL_SAGEMAKER": s.url})


# ============================================================================================ the cases
CASES: list[ServiceCase] = [
    ServiceCase(
        "databricks", "databricks", ["RUNNING", "RUNNING", "TERMINATED:SUCCESS"],
        _databricks_ours, _databricks_theirs, tls=True, their_task_type="databricks",
        fake_kwargs={"execute_python": False, "example_job": False},
        pairing="flytekit's `databricks` connector hard-codes `https://<databricksInstance>`, so the fake serves "
                "HTTPS with a throw-away self-signed certificate (`SSL_CERT_FILE` for flytekit's aiohttp, "
                "`REQUESTS_CA_BUNDLE` for ours; both hosts use the same HTTPS fake). PAT from "
                "`FLYTE_DATABRICKS_ACCESS_TOKEN` after flytekit's per-call Kubernetes secret lookup fails (no "
                "cluster). Ours: `databricks-function` on an existing cluster; flytekit's: serverless "
                "`databricks` (the fake, like the Jobs 2.1 API, needs a `tasks` list, which flytekit only builds "
                "for serverless).",
    ),
    ServiceCase(
        "bigquery", "bigquery", ["RUNNING", "RUNNING", "DONE"],
        _bigquery_ours, _bigquery_theirs, their_task_type="bigquery_query_job_task", setup={"credentials": True},
        pairing="`BIGQUERY_EMULATOR_HOST` (honoured by google-cloud-bigquery) points flytekit's per-call "
                "`bigquery.Client()` at the fake; ours uses `FLYTECONNECTORS_BIGQUERY_ENDPOINT`. Both authenticate "
                "with the same service-account key (`GOOGLE_APPLICATION_CREDENTIALS`) whose `token_uri` is the "
                "fake's `/token`, so an OAuth exchange costs what it costs in production (plus 50 ms).",
    ),
    ServiceCase(
        "snowflake", "snowflake", ["RUNNING", "RUNNING", "SUCCESS"],
        _snowflake_ours, _snowflake_theirs, their_task_type="snowflake", setup={"snowflake_user": SNOWFLAKE_USER},
        pairing="flytekit's connector calls `snowflake.connector.connect(account=...)` with no host, port or "
                "protocol, so a 10-line shim module loaded with `pyflyte serve connector --modules "
                "fk_snowflake_endpoint` adds `host`/`port`/`protocol=http` to every `connect()` call; nothing else "
                "of flytekit's connector changes. Key-pair login with the same RSA key on both sides. flytekit's "
                "venv resolves snowflake-connector-python 4.x, ours 5.x; both speak the same REST protocol.",
    ),
    ServiceCase(
        "openai", "openai", ["in_progress", "in_progress", "completed"],
        _openai_ours, _openai_theirs, their_task_type="openai-batch", setup={"batch_file": True},
        pairing="`OPENAI_BASE_URL` (honoured by the openai SDK) points flytekit's per-call `AsyncOpenAI` at the "
                "fake. The work differs: flytekit's `openai-batch` takes an uploaded `input_file_id` (one "
                "`batches.create` per job), ours takes the prompts and uploads the JSONL file first (two calls) "
                "and downloads the results when the batch completes.",
    ),
    ServiceCase(
        "sagemaker", "sagemaker", ["InProgress", "InProgress", "Completed"],
        _sagemaker_ours, _sagemaker_theirs, their_task_type="sagemaker-training-job",
        pairing="`AWS_ENDPOINT_URL_SAGEMAKER` (honoured by botocore, hence aioboto3) points flytekit's per-call "
                "`aioboto3.Session()` at the fake; ours uses `FLYTECONNECTORS_SAGEMAKER_ENDPOINT_URL`. The "
                "training job name comes from an input per execution plus flytekit's `{idempotence_token}`.",
    ),
]
CASES_BY_NAME = {case.name: case for case in CASES}


# ============================================================================================ fake set-up
@functools.lru_cache(maxsize=1)
def rsa_key() -> tuple[str, str]:
    """(private PKCS8 PEM, public PEM), one per harness run."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def self_signed_cert(folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 / localhost, valid for a day. Returns (cert path, key path)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "fake-cert.pem", folder / "fake-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def setup_json(case: ServiceCase, workdir: Path) -> str:
    """The fake runner's ``--setup`` argument for ``case``."""
    spec: dict[str, Any] = dict(case.setup)
    if "snowflake_user" in spec:
        spec["public_key"] = rsa_key()[1]
    return json.dumps(spec)


def harness_setup(case: ServiceCase, fake_setup: dict[str, Any], url: str, workdir: Path) -> dict[str, Any]:
    """What the templates need besides the fake's own answer (credentials files, keys)."""
    out = dict(fake_setup)
    if case.setup.get("credentials"):
        key = {"type": "service_account", "project_id": "bench-proj", "private_key_id": "k1",
               "private_key": rsa_key()[0], "client_email": "runner@bench-proj.iam.gserviceaccount.com",
               "client_id": "1", "token_uri": f"{url}/token"}
        path = workdir / f"{case.name}-sa.json"
        path.write_text(json.dumps(key))
        out["credentials"] = str(path)
    if "snowflake_user" in case.setup:
        out["private_key"] = rsa_key()[0]
    return out
