"""What ``flyteconnectors sandbox`` runs for SageMaker: host cases against the fake, and the example workflow."""

from __future__ import annotations

from typing import Any

from flyteconnectors.core import Phase
from flyteconnectors.core.sandbox import SandboxCase, SandboxExample, SandboxSpec, examples_dir
from flyteconnectors.core.testing import builders
from flyteconnectors.sagemaker.fake import SageMakerFake

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
ENDPOINT = "sandbox-live"

TRAINING = {"role_arn": ROLE, "image": IMAGE, "output_path": "s3://sandbox/models",
            "channels": [{"name": "train", "s3_uri": "{{inputs.train}}"}],
            "hyperparameters": {"max_depth": "{{inputs.depth}}"}}


def _live_endpoint(fake: SageMakerFake) -> None:
    """An endpoint already InService, for the invocation case."""
    import boto3

    sm = boto3.client("sagemaker", endpoint_url=fake.url, region_name=REGION, aws_access_key_id="sandbox",
                      aws_secret_access_key="sandbox")
    if ENDPOINT in fake.names("endpoint"):
        return
    sm.create_model(ModelName=ENDPOINT, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(EndpointConfigName=ENDPOINT, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": ENDPOINT, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    fake.script_next_job("InService")
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT)
    fake.respond(ENDPOINT, {"predictions": [0.12]})


def _cases(fake: Any) -> list[SandboxCase]:
    _live_endpoint(fake)
    training = builders.task_template("sagemaker-training", TRAINING, inputs={"train": str, "depth": int},
                                      outputs={"model_artifact": str, "metrics": dict[str, float]})
    processing = builders.task_template("sagemaker-processing", {
        "role_arn": ROLE, "image": IMAGE, "arguments": ["--day", "{{inputs.day}}"],
        "outputs": [{"name": "features", "s3_uri": "s3://sandbox/features/{{inputs.day}}"}],
    }, inputs={"day": str}, outputs={"outputs": dict[str, str]})
    transform = builders.task_template("sagemaker-transform", {
        "model_name": ENDPOINT, "input_path": "s3://sandbox/batch", "output_path": "s3://sandbox/scores",
    }, outputs={"output_path": str})
    tuning = builders.task_template("sagemaker-tuning", {
        "training": {k: v for k, v in TRAINING.items() if k != "hyperparameters"},
        "objective_metric": "validation:auc", "max_training_jobs": 4,
        "integer_ranges": [{"name": "max_depth", "min": 3, "max": 9}],
    }, inputs={"train": str}, outputs={"job_name": str})
    deploy = builders.task_template("sagemaker-deploy-endpoint", {
        "model": {"image": IMAGE, "role_arn": ROLE, "model_data_url": "s3://sandbox/models/model.tar.gz"},
    }, outputs={"endpoint_name": str, "endpoint_arn": str})
    invoke = builders.task_template("sagemaker-invoke-endpoint", {"endpoint_name": ENDPOINT},
                                    inputs={"features": list[float]}, outputs={"response_json": dict})
    model = builders.task_template("sagemaker-create-model", {"image": IMAGE, "role_arn": ROLE},
                                   outputs={"model_name": str, "model_arn": str})
    train_inputs = {"train": "s3://sandbox/train", "depth": 6}
    return [
        SandboxCase("a training job", training, train_inputs),
        SandboxCase("a training job that fails", training, train_inputs, expect=Phase.FAILED,
                    script=("InProgress", {"status": "Failed", "failure_reason": "AlgorithmError: exit code 1"})),
        SandboxCase("a running training job, cancelled", training, train_inputs, script=("InProgress",),
                    cancel=True),
        SandboxCase("a processing job", processing, {"day": "2024-05-01"}),
        SandboxCase("a batch transform job", transform),
        SandboxCase("a tuning job", tuning, {"train": "s3://sandbox/train"}),
        SandboxCase("an endpoint deployment", deploy, script=("Creating", "InService")),
        SandboxCase("an endpoint invocation", invoke, {"features": [1.0, 2.0]}, sync=True),
        SandboxCase("a model", model, sync=True),
    ]


def spec() -> SandboxSpec:
    folder = examples_dir(__file__)
    examples = [SandboxExample(folder / "train_and_deploy.py", "train_deploy_predict", ("--max_depth", "7"))] \
        if folder else []
    return SandboxSpec(
        package="sagemaker",
        fake=SageMakerFake,
        settings=lambda fake: {"endpoint_url": fake.url, "runtime_endpoint_url": fake.url, "region": REGION},
        # boto3 needs some credentials to sign with; the fake accepts any.
        env={"AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox-secret", "AWS_REGION": REGION,
             "AWS_EC2_METADATA_DISABLED": "true"},
        cases=_cases,
        examples=examples,
        cancelled=lambda fake: len(fake.stopped),
    )
