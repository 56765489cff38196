from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from flyteconnectors.core.dispatcher import DispatcherOptions, RetryPolicy
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient
from flyteconnectors.sagemaker.connector import CONNECTORS
from flyteconnectors.sagemaker.fake import SageMakerFake

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1.7"
CREDENTIALS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "not-a-real-secret-key"}

TRAINING = {
    "role_arn": ROLE,
    "image": IMAGE,
    "output_path": "s3://bucket/models",
    "channels": [{"name": "train", "s3_uri": "{{inputs.train}}"}],
    "hyperparameters": {"epochs": "{{inputs.epochs}}", "eta": 0.1},
    "instance_type": "ml.m5.xlarge",
}
TRAINING_OUTPUTS = {"model_artifact": builders.FILE, "metrics": dict[str, float], "job_arn": str}
PROCESSING = {
    "role_arn": ROLE,
    "image": IMAGE,
    "arguments": ["--day", "{{inputs.day}}"],
    "inputs": [{"name": "raw", "s3_uri": "s3://bucket/raw/{{inputs.day}}"}],
    "outputs": [{"name": "features", "s3_uri": "s3://bucket/features/{{inputs.day}}"}],
}
TRANSFORM = {
    "model_name": "churn-model",
    "input_path": "{{inputs.data}}",
    "output_path": "s3://bucket/predictions/{{execution}}",
    "content_type": "text/csv",
    "split_type": "Line",
}
TUNING = {
    "training": {k: v for k, v in TRAINING.items() if k != "hyperparameters"},
    "objective_metric": "validation:auc",
    "max_training_jobs": 4,
    "max_parallel_training_jobs": 2,
    "integer_ranges": [{"name": "max_depth", "min": 3, "max": 9}],
    "continuous_ranges": [{"name": "eta", "min": 0.01, "max": 0.3}],
}
DEPLOY = {
    "model": {"image": IMAGE, "role_arn": ROLE, "model_data_url": "{{inputs.model}}"},
    "instance_type": "ml.m5.large",
}


def settings(fake: SageMakerFake, **extra: Any) -> dict[str, Any]:
    # Short socket timeouts: a test that makes the fake hang must not leave a thread waiting long after it.
    return {"endpoint_url": fake.url, "runtime_endpoint_url": fake.url, "region": REGION, "max_attempts": 1,
            "read_timeout": 2.0, "invoke_timeout": 2.0, "connect_timeout": 2.0, **extra}


def fast_retries() -> DispatcherOptions:
    return DispatcherOptions(retry=RetryPolicy(attempts=4, base=0.01, cap=0.1))


@pytest.fixture(scope="session", autouse=True)
def frozen_heap() -> Iterator[None]:
    """Keep the objects of start-up (flytekit, moto, botocore's service models) out of the garbage collector.

    A full collection walks ~250k of them, ~0.5 s, and when it fires on the host's loop thread the contract suite
    rightly reports a stalled loop. A long-running host would do the same after its warm-up (``gc.freeze``).
    """
    from flyteconnectors.sagemaker import _aws

    SageMakerFake()._warm_up()
    _aws.warm_up()
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real AWS: no profile, no instance metadata, no endpoint or region from the developer's shell."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER",
                 "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def fake() -> Iterator[SageMakerFake]:
    with SageMakerFake().serve() as service:
        yield service  # type: ignore[misc]


@pytest.fixture
def host(fake: SageMakerFake) -> Iterator[HostThread]:
    with HostThread(CONNECTORS, settings={"sagemaker": settings(fake)}, secrets=CREDENTIALS,
                    options=fast_retries(), package="sagemaker") as h:
        yield h


@pytest.fixture
def propeller(host: HostThread) -> PropellerClient:
    return PropellerClient(host.channel)


@pytest.fixture
def sm(fake: SageMakerFake) -> Any:
    """A plain boto3 client on the fake, for arranging what exists before a task runs."""
    return boto3.client("sagemaker", endpoint_url=fake.url, region_name=REGION, aws_access_key_id="x",
                        aws_secret_access_key="y", config=Config(retries={"max_attempts": 1}))


def calls(fake: SageMakerFake, operation: str) -> list[Any]:
    """Journal entries of one SageMaker operation (every control-plane call is ``POST /``)."""
    return [e for e in fake.requests("POST", "^/$") if e.headers.get("x-amz-target") == f"SageMaker.{operation}"]


def template(task_type: str, custom: dict[str, Any], *, inputs: dict[str, Any] | None = None,
             outputs: dict[str, Any] | None = None) -> Any:
    return builders.task_template(task_type, custom, inputs=inputs or {}, outputs=outputs or {})


def training_task(**overrides: Any) -> Any:
    return template("sagemaker-training", {**TRAINING, **overrides}, inputs={"train": str, "epochs": int},
                    outputs=TRAINING_OUTPUTS)


TRAINING_INPUTS = {"train": "s3://bucket/data/train", "epochs": 12}
