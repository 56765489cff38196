"""The flytekit task types: what `pyflyte register` serializes, and local runs of the example against the fake."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flytekit")

from conftest import DEPLOY, IMAGE, PROCESSING, ROLE, TRAINING, TRANSFORM, TUNING
from flyteidl.core import tasks_pb2
from flytekit import kwtypes

from flyteconnectors.core.dispatcher import Dispatcher
from flyteconnectors.core.host.wire_v1 import request_from_template
from flyteconnectors.core.local import LocalRunner, PollPolicy, serialize, set_local_runner
from flyteconnectors.core.registry import Registry
from flyteconnectors.sagemaker import (
    SageMakerEndpointTask,
    SageMakerInvokeTask,
    SageMakerModelTask,
    SageMakerProcessingTask,
    SageMakerTrainingTask,
    SageMakerTransformTask,
    SageMakerTuningTask,
    TrainingConfig,
)
from flyteconnectors.sagemaker.connector import CONNECTORS
from flyteconnectors.sagemaker.fake import SageMakerFake

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TASKS = [
    (SageMakerTrainingTask, TRAINING, kwtypes(train=str, epochs=int), {"model_artifact": str, "job_arn": str}),
    (SageMakerProcessingTask, PROCESSING, kwtypes(day=str), {"outputs": dict[str, str]}),
    (SageMakerTransformTask, TRANSFORM, kwtypes(data=str), {"output_path": str}),
    (SageMakerTuningTask, TUNING, kwtypes(train=str), {"best_training_job": str, "best_objective_value": float}),
    (SageMakerEndpointTask, DEPLOY, kwtypes(model=str), {"endpoint_name": str}),
    (SageMakerInvokeTask, {"endpoint_name": "churn", "payload_input": "x"}, kwtypes(x=list[float]),
     {"response": str}),
    (SageMakerModelTask, {"image": IMAGE, "role_arn": ROLE}, {}, {"model_name": str, "model_arn": str}),
]


def registered(task: Any) -> tasks_pb2.TaskTemplate:
    """The template as the host receives it after `pyflyte register`."""
    return tasks_pb2.TaskTemplate.FromString(serialize(task).SerializeToString())


@pytest.mark.parametrize(("kind", "config", "inputs", "outputs"), TASKS, ids=[t[0].__name__ for t in TASKS])
def test_each_task_type_serializes_to_what_its_connector_validates(kind: Any, config: dict[str, Any],
                                                                   inputs: dict[str, Any], outputs: dict[str, Any]):
    task = kind(name=f"tests.{kind.__name__}", config=config, inputs=inputs, outputs=outputs)
    template = registered(task)
    connector = kind.connector_class
    assert (template.type, template.task_type_version) == (connector.task_type, 0)
    req = request_from_template(template, None, "s3://bucket/prefix", None, None)
    assert connector.config_model.from_template_parts(req.custom, req.config, req.sql) == task.task_config
    assert set(template.interface.outputs.variables) == set(outputs)


def test_a_placeholder_naming_an_undeclared_input_fails_when_the_task_is_defined():
    with pytest.raises(ValueError, match=r"\{\{inputs.epochs\}\}"):
        SageMakerTrainingTask(name="t", config=TRAINING, inputs=kwtypes(train=str))


def test_an_output_the_connector_does_not_produce_fails_when_the_task_is_defined():
    with pytest.raises(ValueError, match="no output accuracy"):
        SageMakerTrainingTask(name="t", config=TrainingConfig(role_arn=ROLE, image=IMAGE, output_path="s3://b"),
                              outputs={"accuracy": float})


def test_invalid_config_fails_when_the_task_is_defined():
    with pytest.raises(Exception, match="instance_count"):
        SageMakerTrainingTask(name="t", config={**TRAINING, "instance_count": 0}, inputs=kwtypes(train=str, epochs=int))


@pytest.fixture
def local_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[SageMakerFake]:
    with SageMakerFake().serve() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", fake.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", fake.url)
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        yield fake  # type: ignore[misc]


def test_example_workflow_runs_in_process(local_fake: SageMakerFake):
    registry = Registry()
    registry.register(*CONNECTORS, package="sagemaker")
    runner = LocalRunner(Dispatcher(registry), PollPolicy(initial=0.005, cap=0.05))
    previous = set_local_runner(runner)
    try:
        sys.path.insert(0, str(EXAMPLES))
        from train_and_deploy import train_deploy_predict

        summary = train_deploy_predict(max_depth=9)
    finally:
        sys.path.remove(str(EXAMPLES))
        set_local_runner(previous)
        runner.close()
    assert len(local_fake.names("training")) == 1
    (endpoint,) = local_fake.names("endpoint")
    assert summary == f"endpoint {endpoint} (train:progress=100) answered: 42.0,3.0,1.0\n18.0,0.0,0.0"
    assert local_fake.names("model") == [endpoint]
    (create,) = [e for e in local_fake.requests("POST", "^/$")
                 if e.headers.get("x-amz-target") == "SageMaker.CreateTrainingJob"]
    assert create.json()["HyperParameters"]["max_depth"] == "9"


def test_example_runs_with_pyflyte_run_against_the_fake(local_fake: SageMakerFake, tmp_path: Path):
    pyflyte = Path(sys.executable).with_name("pyflyte")
    env = {**os.environ, "HOME": str(tmp_path)}
    result = subprocess.run(
        [str(pyflyte), "run", str(EXAMPLES / "train_and_deploy.py"), "train_deploy_predict", "--max_depth", "7"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (endpoint,) = local_fake.names("endpoint")
    assert f"endpoint {endpoint} (train:progress=100) answered: 42.0,3.0,1.0" in result.stdout
