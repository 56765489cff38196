"""flytekitplugins-awssagemaker's task templates, served (or refused with the reason) by flyteconnectors-sagemaker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("flytekitplugins.awssagemaker_inference",
                    reason="needs flytekitplugins-awssagemaker: nox -s compat-flytekit")

import boto3
from botocore.config import Config
from flytekit import kwtypes
from flytekit_compat_helpers import FAILED, SUCCEEDED, our_host, serialize
from flytekitplugins.awssagemaker_batch_transform.task import SageMakerTransformJobTask
from flytekitplugins.awssagemaker_inference import BotoConfig, BotoTask, SageMakerEndpointTask
from flytekitplugins.awssagemaker_processing.task import SageMakerProcessingJobTask
from flytekitplugins.awssagemaker_training.task import SageMakerTrainingJobTask

from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import PropellerClient
from flyteconnectors.sagemaker.fake import SageMakerFake

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1.7"
NAME = builders.identity().job_name(63)


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def fake() -> Iterator[SageMakerFake]:
    with SageMakerFake().serve() as service:
        yield service  # type: ignore[misc]


@pytest.fixture
def propeller(fake: SageMakerFake) -> Iterator[PropellerClient]:
    settings = {"endpoint_url": fake.url, "runtime_endpoint_url": fake.url, "max_attempts": 1, "read_timeout": 2.0}
    credentials = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "not-a-real-secret-key"}
    with our_host("sagemaker", settings, credentials) as host:
        yield PropellerClient(host.channel)


def calls(fake: SageMakerFake, operation: str) -> list[dict[str, Any]]:
    return [json.loads(e.body) for e in fake.requests("POST", "^/$")
            if e.headers.get("x-amz-target") == f"SageMaker.{operation}"]


def training_task() -> SageMakerTrainingJobTask:
    return SageMakerTrainingJobTask(
        name="compat.sagemaker.train",
        config={
            "TrainingJobName": "xgb-{idempotence_token}",
            "AlgorithmSpecification": {"TrainingImage": "{images.primary}", "TrainingInputMode": "File"},
            "RoleArn": ROLE,
            "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "{inputs.train}", "S3DataDistributionType": "FullyReplicated"}}}],
            "OutputDataConfig": {"S3OutputPath": "s3://bucket/models"},
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 10},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "HyperParameters": {"num_round": "{inputs.rounds}", "objective": "binary:logistic"},
            "Tags": [{"Key": "team", "Value": "ml"}],
        },
        region=REGION,
        images={"primary": IMAGE},
        inputs=kwtypes(train=str, rounds=int),
    )


def test_training_job_task_runs_and_returns_flytekits_result(propeller, fake):
    fake.script_next_job("InProgress", {"status": "Completed",
                                        "FinalMetricDataList": [{"MetricName": "validation:auc", "Value": 0.91}]})
    task = serialize(training_task())
    assert (task.type, task.task_type_version) == ("sagemaker-training-job", 0)

    final = propeller.run(task, {"train": "s3://bucket/data/train", "rounds": 50})

    assert final.phase == SUCCEEDED, final.message
    result = builders.outputs_to_python(final)["result"]
    assert result["TrainingJobName"] == NAME
    assert result["TrainingJobArn"].endswith(f":training-job/{NAME}")
    assert result["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://bucket/models/{NAME}/output/model.tar.gz"
    assert [(m["MetricName"], m["Value"]) for m in result["FinalMetricDataList"]] == [("validation:auc", 0.91)]
    [sent] = calls(fake, "CreateTrainingJob")
    # Every field flytekit would have sent, with its placeholders filled; the name is the attempt's.
    assert sent["TrainingJobName"] == NAME
    assert sent["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert sent["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://bucket/data/train"
    assert sent["HyperParameters"] == {"num_round": "50", "objective": "binary:logistic"}
    assert sent["ResourceConfig"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 10}
    assert sent["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert {t["Key"]: t["Value"] for t in sent["Tags"]}["team"] == "ml"


def test_a_retried_create_adopts_the_training_job(propeller, fake):
    task = serialize(training_task())
    inputs = {"train": "s3://bucket/data/train", "rounds": 5}

    first, second = propeller.create(task, inputs), propeller.create(task, inputs)

    assert fake.names("training") == [NAME] and json.loads(first)["m"] == json.loads(second)["m"]


def test_processing_job_task_runs_and_returns_flytekits_result(propeller, fake):
    task = serialize(SageMakerProcessingJobTask(
        name="compat.sagemaker.process",
        config={
            "ProcessingJobName": "prep-{idempotence_token}",
            "RoleArn": ROLE,
            "AppSpecification": {"ImageUri": "{images.primary}", "ContainerArguments": ["--day", "{inputs.day}"]},
            "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                                      "VolumeSizeInGB": 20}},
            "ProcessingOutputConfig": {"Outputs": [{"OutputName": "features", "S3Output": {
                "S3Uri": "s3://bucket/features/{inputs.day}", "LocalPath": "/opt/ml/processing/output",
                "S3UploadMode": "EndOfJob"}}]},
        },
        region=REGION, images={"primary": IMAGE}, inputs=kwtypes(day=str),
    ))

    final = propeller.run(task, {"day": "2024-05-01"})

    assert final.phase == SUCCEEDED, final.message
    result = builders.outputs_to_python(final)["result"]
    assert result["Outputs"] == [{"OutputName": "features", "S3Uri": "s3://bucket/features/2024-05-01"}]
    [sent] = calls(fake, "CreateProcessingJob")
    assert sent["AppSpecification"]["ContainerArguments"] == ["--day", "2024-05-01"]
    assert sent["ProcessingResources"]["ClusterConfig"]["VolumeSizeInGB"] == 20


def test_transform_job_task_runs_and_returns_flytekits_result(propeller, fake):
    sm = boto3.client("sagemaker", endpoint_url=fake.url, region_name=REGION, aws_access_key_id="x",
                      aws_secret_access_key="y", config=Config(retries={"max_attempts": 1}))
    sm.create_model(ModelName="churn-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    task = serialize(SageMakerTransformJobTask(
        name="compat.sagemaker.transform",
        config={
            "TransformJobName": "score-{idempotence_token}",
            "ModelName": "churn-model",
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "{inputs.data}"}},
                               "ContentType": "text/csv", "SplitType": "Line"},
            "TransformOutput": {"S3OutputPath": "s3://bucket/predictions/{idempotence_token}"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        },
        region=REGION, inputs=kwtypes(data=str),
    ))

    final = propeller.run(task, {"data": "s3://bucket/in"})

    assert final.phase == SUCCEEDED, final.message
    result = builders.outputs_to_python(final)["result"]
    assert result["ModelName"] == "churn-model" and result["TransformJobName"] == NAME
    assert result["TransformOutput"] == {"S3OutputPath": f"s3://bucket/predictions/{NAME}"}


def test_boto_task_is_refused_with_what_to_use_instead(propeller, fake):
    task = serialize(BotoTask(name="compat.boto", task_config=BotoConfig(
        service="iam", method="create_access_key", config={"UserName": "admin"}, region=REGION)))
    assert (task.type, task.task_type_version) == ("boto", 0)

    resource = propeller.execute_sync(task, {})

    assert resource.phase == FAILED
    assert "IAM identity" in resource.message and "sagemaker-training" in resource.message
    assert fake.requests() == []


def test_endpoint_task_is_refused_pointing_at_deploy_endpoint(propeller, fake):
    task = serialize(SageMakerEndpointTask(name="compat.endpoint", config={
        "EndpointName": "churn", "EndpointConfigName": "churn-config"}, region=REGION))

    final = propeller.run(task)

    assert final.phase == FAILED and "sagemaker-deploy-endpoint" in final.message
    assert calls(fake, "CreateEndpoint") == []


def test_job_started_by_flytekits_host_is_refused_without_unpickling(propeller, fake):
    from flytekitplugins.awssagemaker_training.connector import SageMakerTrainingJobMetadata

    task = serialize(training_task())
    meta = SageMakerTrainingJobMetadata(config={"TrainingJobName": "xgb-1"}, region=REGION).encode()  # cloudpickle

    resource = propeller.get(task, meta)

    assert resource.phase == FAILED and "pickle" in resource.message and "cannot be adopted" in resource.message
    assert fake.requests() == []
