"""The fake itself, through boto3: what it adds to moto, and running it standalone."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import IMAGE, REGION, ROLE

from flyteconnectors.sagemaker.fake import SageMakerFake

JOB = {"AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"}, "RoleArn": ROLE,
       "OutputDataConfig": {"S3OutputPath": "s3://b/out"}, "StoppingCondition": {"MaxRuntimeInSeconds": 60},
       "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5}}
TRANSFORM = {"ModelName": "m", "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                                                   "S3Uri": "s3://b/in"}}},
             "TransformOutput": {"S3OutputPath": "s3://b/out"},
             "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1}}


def error_of(call: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]


def test_duplicate_names_are_rejected_as_sagemaker_does(sm: Any):
    sm.create_training_job(TrainingJobName="tj", **JOB)
    assert error_of(sm.create_training_job, TrainingJobName="tj", **JOB)["Code"] == "ResourceInUse"
    sm.create_transform_job(TransformJobName="tf", **TRANSFORM)
    assert error_of(sm.create_transform_job, TransformJobName="tf", **TRANSFORM)["Code"] == "ResourceInUse"
    model = {"ModelName": "m", "ExecutionRoleArn": ROLE, "PrimaryContainer": {"Image": IMAGE}}
    sm.create_model(**model)
    refused = error_of(sm.create_model, **model)
    assert refused["Code"] == "ValidationException"
    assert refused["Message"].startswith('Cannot create already existing model "arn:aws:sagemaker:')


def test_scripted_statuses_walk_one_step_per_describe(sm: Any, fake: SageMakerFake):
    fake.script_next_job("InProgress", {"status": "Failed", "failure_reason": "OOM"})
    sm.create_training_job(TrainingJobName="tj", **JOB)
    first = sm.describe_training_job(TrainingJobName="tj")
    second = sm.describe_training_job(TrainingJobName="tj")
    third = sm.describe_training_job(TrainingJobName="tj")
    assert [d["TrainingJobStatus"] for d in (first, second, third)] == ["InProgress", "Failed", "Failed"]
    assert "FailureReason" not in first and second["FailureReason"] == "OOM"


@pytest.mark.parametrize(("create", "describe", "stop", "name_field", "status_field", "request_body"), [
    ("create_training_job", "describe_training_job", "stop_training_job", "TrainingJobName", "TrainingJobStatus",
     JOB),
    ("create_transform_job", "describe_transform_job", "stop_transform_job", "TransformJobName",
     "TransformJobStatus", TRANSFORM),
])
def test_stop_goes_through_stopping_to_stopped(sm: Any, fake: SageMakerFake, create: str, describe: str, stop: str,
                                               name_field: str, status_field: str, request_body: dict[str, Any]):
    fake.script_next_job("InProgress")
    getattr(sm, create)(**{name_field: "j"}, **request_body)
    getattr(sm, stop)(**{name_field: "j"})
    statuses = [getattr(sm, describe)(**{name_field: "j"})[status_field] for _ in range(3)]
    assert statuses == ["Stopping", "Stopped", "Stopped"]
    refused = error_of(getattr(sm, stop), **{name_field: "j"})
    assert refused["Code"] == "ValidationException" and "is in status Stopped" in refused["Message"]
    assert error_of(getattr(sm, stop), **{name_field: "nope"})["Code"] == "ResourceNotFound"


def test_invoke_answers_only_for_an_endpoint_in_service(sm: Any, fake: SageMakerFake):
    runtime = boto3.client("sagemaker-runtime", endpoint_url=fake.url, region_name=REGION, aws_access_key_id="x",
                           aws_secret_access_key="y", config=Config(retries={"total_max_attempts": 1}))
    assert error_of(runtime.invoke_endpoint, EndpointName="e", Body=b"1")["Code"] == "ValidationError"
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="e", EndpointConfigName="c")
    assert sm.describe_endpoint(EndpointName="e")["EndpointStatus"] == "Creating"
    assert "not in service" in error_of(runtime.invoke_endpoint, EndpointName="e", Body=b"1")["Message"]
    assert sm.describe_endpoint(EndpointName="e")["EndpointStatus"] == "InService"
    answer = runtime.invoke_endpoint(EndpointName="e", Body=b"1,2", ContentType="text/csv")
    assert (answer["Body"].read(), answer["ContentType"]) == (b"1,2", "text/csv")


def test_fakes_in_one_process_do_not_share_jobs(sm: Any):
    sm.create_training_job(TrainingJobName="tj", **JOB)
    with SageMakerFake().serve() as other:
        assert other.names("training") == []


def test_the_fake_runs_standalone_with_its_control_api(tmp_path: Path):
    port_file = tmp_path / "port"
    cli = Path(sys.executable).with_name("flyteconnectors")
    process = subprocess.Popen([str(cli), "fake", "sagemaker", "--port-file", str(port_file)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        script = json.dumps({"steps": ["InProgress", "Completed"]}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{url}/_fake/script", data=script, method="POST"), timeout=5)
        sm = boto3.client("sagemaker", endpoint_url=url, region_name=REGION, aws_access_key_id="x",
                          aws_secret_access_key="y")
        sm.create_training_job(TrainingJobName="tj", **JOB)
        statuses = [sm.describe_training_job(TrainingJobName="tj")["TrainingJobStatus"] for _ in range(2)]
        assert statuses == ["InProgress", "Completed"]
        with urllib.request.urlopen(f"{url}/_fake/requests", timeout=5) as answer:
            assert len(json.load(answer)) == 3
        sm.create_training_job(TrainingJobName="tj2", **JOB)
        sm.stop_training_job(TrainingJobName="tj2")
        with urllib.request.urlopen(f"{url}/_fake/sagemaker/stopped", timeout=5) as answer:
            assert json.load(answer) == ["training/tj2"]
        respond = json.dumps({"endpoint": "e", "body": {"p": 1}}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{url}/_fake/sagemaker/respond", data=respond,
                                                           method="POST"), timeout=5) as answer:
            assert json.load(answer) == {"ok": True}
    finally:
        process.terminate()
        process.wait(10)
