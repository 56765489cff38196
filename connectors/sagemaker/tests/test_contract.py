"""The core's contract suite, adopted for every SageMaker task type (async ones over both Flyte wires)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from conftest import (
    DEPLOY,
    PROCESSING,
    TRAINING_INPUTS,
    TRANSFORM,
    TUNING,
    settings,
    template,
    training_task,
)

from flyteconnectors.core import Phase
from flyteconnectors.core.testing.contract import AsyncContract, SyncContract
from flyteconnectors.core.testing.fake import FakeService
from flyteconnectors.sagemaker.connector import (
    ENDPOINT_STATES,
    PROCESSING_STATES,
    TRAINING_STATES,
    TRANSFORM_STATES,
    TUNING_STATES,
    CreateModel,
    EndpointDeployment,
    InvokeEndpoint,
    ProcessingJob,
    TrainingJob,
    TransformJob,
    TuningJob,
)
from flyteconnectors.sagemaker.fake import SageMakerFake


def failed(message: str) -> dict[str, Any]:
    return {"status": "Failed", "failure_reason": message}


class _SageMakerAsync(AsyncContract):
    kind: str
    create_path = r"^/$"  # every SageMaker call is POST / (X-Amz-Target names the operation)
    status_path = r"^/$"
    success_steps = ("InProgress", "Completed")
    running_steps = ("InProgress",)
    unknown_steps = ("Hibernating", "Completed")
    state_cases = [
        (("InProgress",), Phase.RUNNING),
        (("Completed",), Phase.SUCCEEDED),
        ((failed("AlgorithmError: exit code 1"),), Phase.FAILED),
        (("Stopping",), Phase.RUNNING),
        (("Stopped",), Phase.FAILED),
    ]

    def failure_steps(self, message: str) -> tuple[Any, ...]:
        return ("InProgress", failed(message))

    def early_failure_steps(self, message: str) -> tuple[Any, ...]:
        return (failed(message),)

    def remote_jobs(self, fake: FakeService) -> int:
        return len(fake.names(self.kind))  # type: ignore[attr-defined]

    def cancelled_jobs(self, fake: FakeService) -> int:
        return len(fake.stopped)  # type: ignore[attr-defined]

    @pytest.fixture
    def fake(self) -> Iterator[SageMakerFake]:
        with SageMakerFake().serve() as service:
            yield service  # type: ignore[misc]

    @pytest.fixture
    def connector_settings(self, fake: SageMakerFake) -> Mapping[str, Any]:
        return settings(fake)

    @pytest.fixture
    def secrets(self, canary: str) -> Mapping[str, str]:
        return {"aws_access_key_id": canary, "aws_secret_access_key": canary, "aws_session_token": canary}


class TestTrainingJob(_SageMakerAsync):
    connector = TrainingJob
    kind = "training"
    task_inputs = TRAINING_INPUTS
    state_cases = [
        *_SageMakerAsync.state_cases,
        (("Deleting",), Phase.FAILED),
        (({"status": "InProgress", "secondary_status": "LaunchingMLInstances"},), Phase.INITIALIZING),
    ]

    @pytest.fixture
    def task_template(self) -> Any:
        return training_task()

    @pytest.fixture
    def invalid_config(self) -> tuple[dict[str, Any], str]:
        return {"role_arn": "r", "image": "i", "output_path": "s3://b", "instance_count": 0}, "instance_count"


class TestProcessingJob(_SageMakerAsync):
    connector = ProcessingJob
    kind = "processing"
    task_inputs = {"day": "2024-05-01"}

    @pytest.fixture
    def task_template(self) -> Any:
        return template("sagemaker-processing", PROCESSING, inputs={"day": str},
                        outputs={"outputs": dict[str, str], "job_name": str})


class TestTransformJob(_SageMakerAsync):
    connector = TransformJob
    kind = "transform"
    task_inputs = {"data": "s3://bucket/batch/in"}

    @pytest.fixture
    def task_template(self) -> Any:
        return template("sagemaker-transform", TRANSFORM, inputs={"data": str}, outputs={"output_path": str})


class TestTuningJob(_SageMakerAsync):
    connector = TuningJob
    kind = "tuning"
    task_inputs = TRAINING_INPUTS
    state_cases = [*_SageMakerAsync.state_cases, (("Deleting",), Phase.FAILED), (("DeleteFailed",), Phase.FAILED)]

    @pytest.fixture
    def task_template(self) -> Any:
        return template("sagemaker-tuning", TUNING, inputs={"train": str, "epochs": int},
                        outputs={"best_training_job": str, "best_objective_value": float})


class TestEndpointDeployment(_SageMakerAsync):
    connector = EndpointDeployment
    kind = "endpoint"
    task_inputs = {"model": "s3://bucket/models/model.tar.gz"}
    success_steps = ("Creating", "InService")
    running_steps = ("Creating",)
    unknown_steps = ("Hibernating", "InService")
    state_cases = [
        (("Creating",), Phase.RUNNING),
        (("Updating",), Phase.RUNNING),
        (("SystemUpdating",), Phase.RUNNING),
        (("RollingBack",), Phase.RUNNING),
        (("InService",), Phase.SUCCEEDED),
        (("OutOfService",), Phase.FAILED),
        (("Deleting",), Phase.FAILED),
        (({"status": "Failed", "failure_reason": "image not found"},), Phase.FAILED),
        (("UpdateRollbackFailed",), Phase.FAILED),
    ]

    def cancelled_jobs(self, fake: FakeService) -> int:
        # An endpoint is not stopped but deleted: count the DeleteEndpoint calls that found one.
        return sum(1 for e in fake.requests("POST", "^/$")
                   if e.headers.get("x-amz-target") == "SageMaker.DeleteEndpoint" and e.status == 200)

    def failure_steps(self, message: str) -> tuple[Any, ...]:
        return ("Creating", failed(message))

    @pytest.fixture
    def task_template(self) -> Any:
        return template("sagemaker-deploy-endpoint", DEPLOY, inputs={"model": str},
                        outputs={"endpoint_name": str, "endpoint_arn": str})

    @pytest.fixture
    def invalid_config(self) -> tuple[dict[str, Any], str]:
        return {"model_name": "existing", "model": DEPLOY["model"]}, "model_name"


class _SageMakerSync(SyncContract):
    @pytest.fixture
    def fake(self) -> Iterator[SageMakerFake]:
        with SageMakerFake().serve() as service:
            yield service  # type: ignore[misc]

    @pytest.fixture
    def connector_settings(self, fake: SageMakerFake) -> Mapping[str, Any]:
        return settings(fake)

    @pytest.fixture
    def secrets(self, canary: str) -> Mapping[str, str]:
        return {"aws_access_key_id": canary, "aws_secret_access_key": canary, "aws_session_token": canary}


class TestInvokeEndpoint(_SageMakerSync):
    connector = InvokeEndpoint
    request_path = r"^/endpoints/[^/]+/invocations$"
    task_inputs = {"features": [1.5, 2.0, 3.25]}

    @pytest.fixture
    def fake(self) -> Iterator[SageMakerFake]:
        with SageMakerFake().serve() as service:
            _deploy(service, "churn-live")
            yield service  # type: ignore[misc]

    @pytest.fixture
    def task_template(self) -> Any:
        return template("sagemaker-invoke-endpoint", {"endpoint_name": "churn-live"},
                        inputs={"features": list[float]},
                        outputs={"response": str, "response_json": dict, "content_type": str})


class TestCreateModel(_SageMakerSync):
    connector = CreateModel
    request_path = r"^/$"

    @pytest.fixture
    def task_template(self) -> Any:
        return template("sagemaker-create-model", {"image": DEPLOY["model"]["image"],
                                                   "role_arn": DEPLOY["model"]["role_arn"]},
                        outputs={"model_name": str, "model_arn": str})

    @pytest.fixture
    def invalid_config(self) -> tuple[dict[str, Any], str]:
        return {"image": "i"}, "role_arn"


def _deploy(fake: SageMakerFake, name: str) -> None:
    """An InService endpoint, set up straight through boto3."""
    import boto3

    sm = boto3.client("sagemaker", endpoint_url=fake.url, region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="y")
    sm.create_model(ModelName=name, ExecutionRoleArn=DEPLOY["model"]["role_arn"],
                    PrimaryContainer={"Image": DEPLOY["model"]["image"]})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    fake.script_next_job("InService")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    with fake.lock:
        fake.journal.clear()


@pytest.mark.parametrize(("suite", "states"), [
    (TestTrainingJob, TRAINING_STATES), (TestProcessingJob, PROCESSING_STATES), (TestTransformJob, TRANSFORM_STATES),
    (TestTuningJob, TUNING_STATES), (TestEndpointDeployment, ENDPOINT_STATES),
])
def test_state_cases_walk_every_status_of_the_state_map(suite: Any, states: Any):
    scripted = {steps[0]["status"] if isinstance(steps[0], dict) else steps[0] for steps, _ in suite.state_cases}
    assert scripted == set(states.states)
    for steps, phase in suite.state_cases:
        status = steps[0]["status"] if isinstance(steps[0], dict) else steps[0]
        refined = isinstance(steps[0], dict) and "secondary_status" in steps[0]
        assert refined or phase == states.table[status], f"{status}: the case expects {phase.name}"
