"""SageMaker behaviour through the real host, against the fake: each task type, states, errors, idempotency."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import (
    CREDENTIALS,
    DEPLOY,
    IMAGE,
    PROCESSING,
    REGION,
    ROLE,
    TRAINING_INPUTS,
    TRANSFORM,
    TUNING,
    calls,
    fast_retries,
    settings,
    template,
    training_task,
)

from flyteconnectors.core import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient
from flyteconnectors.sagemaker.connector import (
    CONNECTORS,
    KEY_TAG,
    TRAINING_PROGRESS,
    TrainingJob,
)
from flyteconnectors.sagemaker.fake import SageMakerFake

TERMINAL = {Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED, Phase.RETRYABLE_FAILED}


def outputs(resource: Any) -> dict[str, Any]:
    return builders.outputs_to_python(resource)


def body(entry: Any) -> dict[str, Any]:
    return json.loads(entry.body)


# ============================================================================================ training
def test_training_job_runs_to_success_with_artifact_metrics_and_arn(propeller: PropellerClient, fake: SageMakerFake):
    fake.script_next_job(
        {"status": "InProgress", "secondary_status": "LaunchingMLInstances", "message": "Launching 1 ml.m5.xlarge"},
        {"status": "InProgress", "secondary_status": "Training"},
        {"status": "Completed", "FinalMetricDataList": [{"MetricName": "validation:auc", "Value": 0.91}]},
    )
    task = training_task()
    final, seen = propeller.poll(task, propeller.create(task, TRAINING_INPUTS))

    assert [r.phase for r in seen] == [Phase.INITIALIZING, Phase.RUNNING, Phase.SUCCEEDED]
    assert seen[0].message == "LaunchingMLInstances: Launching 1 ml.m5.xlarge"
    (job,) = fake.names("training")
    assert outputs(final) == {
        "model_artifact": f"s3://bucket/models/{job}/output/model.tar.gz",
        "metrics": {"validation:auc": 0.91},
        "job_arn": f"arn:aws:sagemaker:{REGION}:{fake.account_id}:training-job/{job}",
    }
    assert [link.name for link in final.log_links] == ["SageMaker console", "CloudWatch logs"]


def test_training_request_carries_rendered_inputs_and_identity_tags(propeller: PropellerClient,
                                                                    fake: SageMakerFake):
    propeller.create(training_task(), TRAINING_INPUTS)
    (create,) = calls(fake, "CreateTrainingJob")
    sent = body(create)
    assert sent["HyperParameters"] == {"epochs": "12", "eta": "0.1"}
    assert sent["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://bucket/data/train"
    assert sent["ResourceConfig"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
    tags = {t["Key"]: t["Value"] for t in sent["Tags"]}
    assert tags[KEY_TAG] == builders.identity().idempotency_key
    assert tags["flyte-execution"] == builders.identity().execution
    name = sent["TrainingJobName"]
    assert len(name) <= 63 and name == builders.identity().job_name(63)


def test_failed_training_job_surfaces_secondary_status_and_failure_reason(propeller: PropellerClient,
                                                                          fake: SageMakerFake):
    fake.script_next_job("InProgress", {"status": "Failed", "secondary_status": "Failed",
                                        "failure_reason": "AlgorithmError: CUDA out of memory"})
    task = training_task()
    final, _ = propeller.poll(task, propeller.create(task, TRAINING_INPUTS))
    assert final.phase == Phase.FAILED
    assert "AlgorithmError: CUDA out of memory" in final.message


def test_every_secondary_status_of_a_running_training_job_maps_to_its_phase(propeller: PropellerClient,
                                                                              fake: SageMakerFake):
    states = sorted(TRAINING_PROGRESS.states)
    fake.script_next_job(*({"status": "InProgress", "secondary_status": s} for s in states))
    task = training_task()
    meta = propeller.create(task, TRAINING_INPUTS)
    phases = [propeller.get(task, meta).phase for _ in states]
    assert phases == [TRAINING_PROGRESS.table[s] for s in states]
    assert Phase.INITIALIZING in phases and Phase.RUNNING in phases


def test_unknown_status_keeps_the_task_running_with_a_message(propeller: PropellerClient, fake: SageMakerFake):
    fake.script_next_job("Hibernating", "Completed")
    task = training_task()
    meta = propeller.create(task, TRAINING_INPUTS)
    first = propeller.get(task, meta)
    assert first.phase == Phase.RUNNING
    assert "Hibernating" in first.message
    assert propeller.get(task, meta).phase == Phase.SUCCEEDED


# ============================================================================================ idempotency
def test_lost_create_response_creates_one_job(propeller: PropellerClient, fake: SageMakerFake):
    fake.inject_fault(500, path="^/$", after=True, count=1)  # the job is created, the answer is lost
    task = training_task()
    meta = propeller.create(task, TRAINING_INPUTS)
    again = propeller.create(task, TRAINING_INPUTS)  # Propeller calls CreateTask at least once
    assert json.loads(again)["m"] == json.loads(meta)["m"]
    assert len(fake.names("training")) == 1
    assert len(calls(fake, "CreateTrainingJob")) == 3  # lost, adopted after a describe, adopted again
    assert len(calls(fake, "ListTags")) == 2  # adoption checks the job is this attempt's own
    final, _ = propeller.poll(task, meta)
    assert final.phase == Phase.SUCCEEDED


def test_a_job_with_our_name_but_not_our_tag_is_refused_not_adopted(propeller: PropellerClient, fake: SageMakerFake,
                                                                    sm: Any):
    name = builders.identity().job_name(63)
    sm.create_training_job(TrainingJobName=name, RoleArn=ROLE, OutputDataConfig={"S3OutputPath": "s3://other/"},
                           AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
                           ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
                           StoppingCondition={"MaxRuntimeInSeconds": 60})
    task = training_task()
    first = propeller.get(task, propeller.create(task, TRAINING_INPUTS))
    assert first.phase == Phase.FAILED
    assert f"training job named {name} already exists" in first.message
    assert "not created by this task execution" in first.message


def test_each_retry_attempt_is_its_own_job(propeller: PropellerClient, fake: SageMakerFake):
    task = training_task()
    propeller.create(task, TRAINING_INPUTS, ident=builders.identity(retry_attempt=0))
    propeller.create(task, TRAINING_INPUTS, ident=builders.identity(retry_attempt=1))
    assert len(fake.names("training")) == 2


# ============================================================================================ delete
def test_delete_stops_a_running_training_job(propeller: PropellerClient, fake: SageMakerFake):
    fake.script_next_job("InProgress")
    task = training_task()
    meta = propeller.create(task, TRAINING_INPUTS)
    assert propeller.get(task, meta).phase == Phase.RUNNING
    propeller.delete(task, meta)
    (job,) = fake.names("training")
    assert fake.stopped == {f"training/{job}"}
    assert propeller.get(task, meta).phase == Phase.RUNNING  # Stopping
    last = propeller.get(task, meta)
    assert last.phase == Phase.FAILED and last.custom_info["state"] == "Stopped"


def test_delete_is_idempotent_for_finished_and_vanished_jobs(propeller: PropellerClient, fake: SageMakerFake):
    task = training_task()
    meta = propeller.create(task, TRAINING_INPUTS)
    propeller.poll(task, meta)
    propeller.delete(task, meta)  # Completed: SageMaker refuses the stop, which is fine
    propeller.delete(task, meta)
    assert len(calls(fake, "StopTrainingJob")) == 2 and fake.stopped == set()
    fake.reset()  # the job is gone
    propeller.delete(task, meta)


def test_a_job_that_vanished_fails_with_a_clear_message(propeller: PropellerClient, fake: SageMakerFake):
    task = training_task()
    meta = propeller.create(task, TRAINING_INPUTS)
    fake.reset()
    gone = propeller.get(task, meta)
    assert gone.phase == Phase.FAILED
    assert "no longer exists" in gone.message and "Could not find training job" in gone.message


# ============================================================================================ errors
def test_service_rejection_surfaces_the_service_message(propeller: PropellerClient, fake: SageMakerFake):
    message = "1 validation error detected: Value 'ml.m5.huge' at 'resourceConfig.instanceType' failed"
    fake.inject_fault(400, path="^/$", body={"__type": "ValidationException", "message": message},
                      headers={"x-amzn-ErrorType": "ValidationException"})
    task = training_task(instance_type="ml.m5.huge")
    first = propeller.get(task, propeller.create(task, TRAINING_INPUTS))
    assert first.phase == Phase.FAILED
    assert message in first.message and "CreateTrainingJob" in first.message
    assert fake.names("training") == []


def test_throttling_on_create_is_retried(propeller: PropellerClient, fake: SageMakerFake):
    fake.inject_fault(400, path="^/$", count=2, body={"__type": "ThrottlingException", "message": "Rate exceeded"},
                      headers={"x-amzn-ErrorType": "ThrottlingException"})
    task = training_task()
    final, _ = propeller.poll(task, propeller.create(task, TRAINING_INPUTS))
    assert final.phase == Phase.SUCCEEDED
    assert len(calls(fake, "CreateTrainingJob")) == 3


@pytest.mark.parametrize(("custom", "field"), [
    ({"role_arn": ROLE, "image": IMAGE}, "output_path"),
    ({**{k: v for k, v in training_task().custom.items()}, "instance_count": 0}, "instance_count"),
    ({"role_arn": ROLE, "image": IMAGE, "output_path": "s3://b/{{inputs.nope}}"}, "output_path"),
    ({"role_arn": ROLE, "image": IMAGE, "output_path": "s3://b/{{ __import__('os') }}"}, "output_path"),
    ({"role_arn": ROLE, "image": IMAGE, "output_path": "s3://b", "request_overrides": {"TrainingJobName": "x"}},
     "request_overrides.TrainingJobName"),
    ({"role_arn": ROLE, "image": IMAGE, "output_path": "s3://b", "request_overrides": {"NoSuchField": 1}},
     "request_overrides"),
    ({"role_arn": ROLE, "image": IMAGE, "output_path": "s3://b", "service": "iam", "method": "create_user"},
     "service"),
])
def test_bad_config_fails_once_naming_the_field(propeller: PropellerClient, fake: SageMakerFake,
                                                custom: dict[str, Any], field: str):
    task = template("sagemaker-training", dict(custom), inputs={"train": str, "epochs": int})
    first = propeller.get(task, propeller.create(task, TRAINING_INPUTS))
    assert first.phase == Phase.FAILED
    assert field in first.message
    assert fake.names("training") == []


def test_missing_region_fails_naming_the_field(fake: SageMakerFake):
    with HostThread(CONNECTORS, settings={"sagemaker": settings(fake, region=None)}, secrets=CREDENTIALS,
                    package="sagemaker") as host:
        propeller = PropellerClient(host.channel)
        task = training_task()
        first = propeller.get(task, propeller.create(task, TRAINING_INPUTS))
    assert first.phase == Phase.FAILED and "region" in first.message


# ============================================================================================ other jobs
def test_processing_job_outputs_its_s3_outputs_by_name(propeller: PropellerClient, fake: SageMakerFake):
    task = template("sagemaker-processing", PROCESSING, inputs={"day": str},
                    outputs={"outputs": dict[str, str], "job_name": str})
    final, _ = propeller.poll(task, propeller.create(task, {"day": "2024-05-01"}))
    assert outputs(final)["outputs"] == {"features": "s3://bucket/features/2024-05-01"}
    (create,) = calls(fake, "CreateProcessingJob")
    sent = body(create)
    assert sent["AppSpecification"]["ContainerArguments"] == ["--day", "2024-05-01"]
    assert sent["ProcessingInputs"][0]["S3Input"]["LocalPath"] == "/opt/ml/processing/input/raw"


def test_failed_processing_job_shows_exit_message(propeller: PropellerClient, fake: SageMakerFake):
    fake.script_next_job({"status": "Failed", "failure_reason": "AlgorithmError", "message": "ValueError: bad row"})
    task = template("sagemaker-processing", PROCESSING, inputs={"day": str})
    first = propeller.get(task, propeller.create(task, {"day": "d"}))
    assert first.phase == Phase.FAILED and "ValueError: bad row" in first.message


def test_transform_job_outputs_its_output_prefix_and_can_be_stopped(propeller: PropellerClient,
                                                                    fake: SageMakerFake):
    task = template("sagemaker-transform", TRANSFORM, inputs={"data": str}, outputs={"output_path": builders.DIRECTORY})
    final, _ = propeller.poll(task, propeller.create(task, {"data": "s3://bucket/in"}))
    assert outputs(final) == {"output_path": f"s3://bucket/predictions/{builders.identity().execution}"}

    fake.script_next_job("InProgress")  # stop_transform_job: moto lacks it, the fake adds it
    running = propeller.create(task, {"data": "s3://bucket/in"}, ident=builders.identity("other"))
    propeller.delete(task, running)
    assert len(fake.stopped) == 1
    assert len(calls(fake, "StopTransformJob")) == 1


def test_tuning_job_outputs_the_best_training_job_and_objective(propeller: PropellerClient, fake: SageMakerFake):
    best = {"TrainingJobName": "fc-tune-003-abc", "TunedHyperParameters": {"max_depth": "7"},
            "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation:auc", "Value": 0.93},
            "TrainingJobArn": "arn:x", "CreationTime": 0, "TrainingJobStatus": "Completed"}
    fake.script_next_job({"status": "InProgress", "TrainingJobStatusCounters": {"Completed": 2, "InProgress": 2}},
                         {"status": "Completed", "BestTrainingJob": best})
    task = template("sagemaker-tuning", TUNING, inputs={"train": str, "epochs": int},
                    outputs={"best_training_job": str, "best_objective_value": float,
                             "best_hyperparameters": dict[str, str]})
    final, seen = propeller.poll(task, propeller.create(task, TRAINING_INPUTS))
    assert outputs(final) == {"best_training_job": "fc-tune-003-abc", "best_objective_value": 0.93,
                              "best_hyperparameters": {"max_depth": "7"}}
    assert "2 Completed, 2 InProgress" in seen[0].message
    (create,) = calls(fake, "CreateHyperParameterTuningJob")
    sent = body(create)
    assert len(sent["HyperParameterTuningJobName"]) <= 32
    assert sent["HyperParameterTuningJobConfig"]["ParameterRanges"]["IntegerParameterRanges"] == [
        {"Name": "max_depth", "MinValue": "3", "MaxValue": "9", "ScalingType": "Auto"}]


# ============================================================================================ endpoints
def deploy_task(**custom: Any) -> Any:
    return template("sagemaker-deploy-endpoint", {**DEPLOY, **custom}, inputs={"model": str},
                    outputs={"endpoint_name": str, "endpoint_arn": str})


MODEL_INPUTS = {"model": "s3://bucket/models/model.tar.gz"}


def test_endpoint_deployment_creates_model_config_and_endpoint_then_waits(propeller: PropellerClient,
                                                                         fake: SageMakerFake):
    fake.script_next_job("Creating", "Updating", "InService")
    task = deploy_task()
    final, seen = propeller.poll(task, propeller.create(task, MODEL_INPUTS))
    assert [r.phase for r in seen] == [Phase.RUNNING, Phase.RUNNING, Phase.SUCCEEDED]
    name = builders.identity().job_name(63)
    assert outputs(final) == {"endpoint_name": name,
                              "endpoint_arn": f"arn:aws:sagemaker:{REGION}:{fake.account_id}:endpoint/{name}"}
    assert (fake.names("model"), fake.names("endpoint-config"), fake.names("endpoint")) == ([name], [name], [name])
    (model,) = calls(fake, "CreateModel")
    assert body(model)["PrimaryContainer"]["ModelDataUrl"] == MODEL_INPUTS["model"]


def test_abort_tears_down_only_what_the_deployment_created(propeller: PropellerClient, fake: SageMakerFake, sm: Any):
    sm.create_model(ModelName="shared-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(EndpointConfigName="unrelated", ProductionVariants=[
        {"VariantName": "v", "ModelName": "shared-model", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    fake.script_next_job("Creating")
    task = template("sagemaker-deploy-endpoint", {"model_name": "shared-model", "endpoint_name": "churn-{{project}}"})
    meta = propeller.create(task)
    assert json.loads(meta)["m"] == {"region": REGION, "endpoint_name": "churn-flytesnacks",
                                     "endpoint_config_name": builders.identity().job_name(63),
                                     "model_name": "shared-model", "created": ["endpoint-config", "endpoint"]}
    propeller.delete(task, meta)
    propeller.delete(task, meta)  # at least once: a second delete finds nothing and is fine
    assert fake.names("endpoint") == []
    assert fake.names("endpoint-config") == ["unrelated"]
    assert fake.names("model") == ["shared-model"]


def test_an_endpoint_name_held_by_someone_else_is_refused_and_the_partial_setup_removed(
        propeller: PropellerClient, fake: SageMakerFake, sm: Any):
    sm.create_model(ModelName="theirs", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(EndpointConfigName="theirs", ProductionVariants=[
        {"VariantName": "v", "ModelName": "theirs", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="prod", EndpointConfigName="theirs")
    task = deploy_task(endpoint_name="prod")
    first = propeller.get(task, propeller.create(task, MODEL_INPUTS))
    assert first.phase == Phase.FAILED
    assert "endpoint named prod already exists" in first.message
    assert fake.names("model") == ["theirs"] and fake.names("endpoint-config") == ["theirs"]
    assert fake.names("endpoint") == ["prod"]


def test_resource_limit_on_endpoint_creation_fails_instead_of_succeeding(propeller: PropellerClient,
                                                                         fake: SageMakerFake):
    # flytekit's endpoint connector took ResourceLimitExceeded for success, then failed on "Could not find".
    task = deploy_task()
    limit = "The account-level service limit 'ml.m5.large for endpoint usage' is 0 Instances"
    fake.inject_fault(400, path="^/$", nth=3, body={"__type": "ResourceLimitExceeded", "message": limit},
                      headers={"x-amzn-ErrorType": "ResourceLimitExceeded"})
    first = propeller.get(task, propeller.create(task, MODEL_INPUTS))
    assert first.phase == Phase.FAILED and limit in first.message
    assert fake.names("endpoint") == fake.names("endpoint-config") == fake.names("model") == []


def test_missing_existing_model_is_a_config_error(propeller: PropellerClient, fake: SageMakerFake):
    task = template("sagemaker-deploy-endpoint", {"model_name": "no-such-model"})
    first = propeller.get(task, propeller.create(task))
    assert first.phase == Phase.FAILED and "model_name" in first.message and "no-such-model" in first.message
    assert fake.names("endpoint-config") == []


# ============================================================================================ sync
def invoke_task(**custom: Any) -> Any:
    return template("sagemaker-invoke-endpoint", {"endpoint_name": "churn", **custom},
                    inputs={"features": list[float]}, outputs={"response": str, "response_json": dict})


def _live_endpoint(fake: SageMakerFake, sm: Any, name: str = "churn") -> None:
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    fake.script_next_job("InService")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)


def test_invoke_sends_the_inputs_as_json_and_returns_the_answer(propeller: PropellerClient, fake: SageMakerFake,
                                                                sm: Any):
    _live_endpoint(fake, sm)
    fake.respond("churn", {"churn_probability": 0.12})
    result = propeller.execute_sync(invoke_task(), {"features": [1.0, 2.5]})
    assert result.phase == Phase.SUCCEEDED
    assert outputs(result) == {"response": '{"churn_probability": 0.12}',
                               "response_json": {"churn_probability": 0.12}}
    (call,) = fake.requests("POST", "/endpoints/churn/invocations")
    assert json.loads(call.body) == {"features": [1.0, 2.5]}
    assert call.headers["content-type"] == "application/json"


def test_invoke_with_csv_rows_from_an_input(propeller: PropellerClient, fake: SageMakerFake, sm: Any):
    _live_endpoint(fake, sm)
    task = template("sagemaker-invoke-endpoint", {"endpoint_name": "churn", "content_type": "text/csv",
                                                  "payload_input": "rows"},
                    inputs={"rows": list[list[float]]}, outputs={"response": str})
    result = propeller.execute_sync(task, {"rows": [[1.0, 2.0], [3.5, 4.0]]})
    assert outputs(result) == {"response": "1.0,2.0\n3.5,4.0\n"}  # the fake echoes the body it received


def test_invoke_on_a_missing_endpoint_fails_with_the_service_message(propeller: PropellerClient,
                                                                     fake: SageMakerFake):
    result = propeller.execute_sync(invoke_task(endpoint_name="nope"), {"features": [1.0]})
    assert result.phase == Phase.FAILED
    assert f"Endpoint nope of account {fake.account_id} not found" in result.message


def test_invoke_surfaces_a_model_error(propeller: PropellerClient, fake: SageMakerFake, sm: Any):
    _live_endpoint(fake, sm)
    fake.respond("churn", "Received client error (400) from primary: bad feature count", status=424)
    result = propeller.execute_sync(invoke_task(), {"features": [1.0]})
    assert result.phase == Phase.FAILED
    assert "ModelError" in result.message and "bad feature count" in result.message


def test_create_model_is_idempotent_like_the_async_creates(propeller: PropellerClient, fake: SageMakerFake):
    task = template("sagemaker-create-model", {"image": IMAGE, "role_arn": ROLE, "model_data_url": "{{inputs.m}}"},
                    inputs={"m": str}, outputs={"model_name": str, "model_arn": str})
    fake.inject_fault(500, path="^/$", after=True, count=1)
    first = propeller.execute_sync(task, {"m": "s3://b/model.tar.gz"})
    again = propeller.execute_sync(task, {"m": "s3://b/model.tar.gz"})
    assert first.phase == again.phase == Phase.SUCCEEDED
    assert outputs(first) == outputs(again)
    assert fake.names("model") == [outputs(first)["model_name"]]
    assert len(calls(fake, "DescribeModel")) == 2  # "already exists" is adopted only after describing it


# ============================================================================================ host-level properties
def test_resource_meta_holds_names_and_region_only(propeller: PropellerClient):
    # flytekit cloudpickled the whole config plus the inputs into resource_meta.
    meta = propeller.create(training_task(), TRAINING_INPUTS)
    envelope = json.loads(meta)
    assert envelope["m"] == {"name": builders.identity().job_name(63), "region": REGION}
    assert "s3://bucket/data/train" not in meta.decode()


def test_only_dedicated_task_types_are_served(propeller: PropellerClient):
    # flytekit's `boto` task type lets any task author call any boto3 method with the connector's identity.
    served = {a.name: [c.name for c in a.supported_task_categories] for a in propeller.list_agents()}
    types = {t for cats in served.values() for t in cats}
    ours = {"sagemaker-training", "sagemaker-processing", "sagemaker-transform", "sagemaker-tuning",
            "sagemaker-deploy-endpoint", "sagemaker-invoke-endpoint", "sagemaker-create-model"}
    compat = {c.task_type for c in CONNECTORS if c.__module__.endswith(".flytekit_compat")}
    assert types == ours | compat
    # flytekit's generic `boto` type is served only to refuse it, with the reason.
    answer = propeller.execute_sync(builders.task_template("boto", {"service": "iam", "method": "create_user",
                                                                    "config": {}}))
    assert answer.phase == Phase.FAILED and "IAM identity" in answer.message


def test_clients_are_reused_across_calls_and_kept_per_region(host: HostThread, propeller: PropellerClient):
    task = training_task()
    for i in range(3):
        propeller.poll(task, propeller.create(task, TRAINING_INPUTS, ident=builders.identity(f"e{i}")))
    (cache,) = host.registry.client_caches()
    assert len(cache) == 1
    other = training_task(region="eu-west-1")
    propeller.poll(other, propeller.create(other, TRAINING_INPUTS, ident=builders.identity("eu")))
    assert len(cache) == 2


def test_slow_sagemaker_does_not_hold_up_other_calls(host: HostThread, propeller: PropellerClient,
                                                     fake: SageMakerFake):
    import threading
    import time

    fake.set_latency(1.0)
    task = training_task()
    slow = threading.Thread(target=propeller.create, args=(task, TRAINING_INPUTS))
    slow.start()
    time.sleep(0.1)
    started = time.monotonic()
    propeller.list_agents()
    assert time.monotonic() - started < 0.3
    slow.join()


def test_boto3_native_endpoint_variable_reaches_the_fake(fake: SageMakerFake, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", fake.url)
    monkeypatch.setenv("AWS_REGION", REGION)
    with HostThread([TrainingJob], secrets=CREDENTIALS, options=fast_retries(), package="sagemaker") as host:
        propeller = PropellerClient(host.channel)
        task = training_task()
        final, _ = propeller.poll(task, propeller.create(task, TRAINING_INPUTS))
    assert final.phase == Phase.SUCCEEDED
    assert len(fake.names("training")) == 1


def test_loading_the_connectors_does_not_load_boto3():
    import subprocess
    import sys

    code = ("import sys; import flyteconnectors.sagemaker, flyteconnectors.sagemaker.connector; "
            "print(sorted(m for m in ('boto3', 'botocore', 'flytekit', 'moto') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_sandbox_spec_sets_up_its_cases(fake: SageMakerFake):
    from flyteconnectors.sagemaker.sandbox import spec

    sandbox = spec()
    cases = sandbox.cases(fake)
    ours = {c.task_type for c in CONNECTORS if not c.__module__.endswith(".flytekit_compat")}
    assert {c.template.type for c in cases} == ours
    assert fake.names("endpoint") == ["sandbox-live"]  # the invocation case needs a live endpoint
    assert sandbox.settings(fake)["endpoint_url"] == fake.url
