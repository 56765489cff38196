"""flytekit's SageMaker task types (flytekitplugins-awssagemaker 1.16), served by our connectors or refused.

flytekit's job tasks carry a raw boto3 request with its own placeholders::

    custom = {"config": {<CreateTrainingJob / CreateProcessingJob / CreateTransformJob request>},
              "region": ..., "images": {"primary": "<image URI>"}}
    placeholders: {inputs.NAME}, {images.NAME}, {idempotence_token}; the output is ``result`` (a dict)

``sagemaker-training-job``, ``sagemaker-processing-job`` and ``sagemaker-transform-job`` (v0) are translated into
our :class:`TrainingConfig` / :class:`ProcessingConfig` / :class:`TransformConfig`: the request's required fields
become the typed fields, and the whole request rides along as ``request_overrides``, so every field flytekit sent
is sent. ``{inputs.NAME}`` becomes ``{{inputs.NAME}}``, ``{images.NAME}`` the image, ``{idempotence_token}`` the
attempt's deterministic name. The job is named by the attempt (the request's name is replaced), which makes a
retried create adopt the job instead of colliding. ``result`` has the shape flytekit's connectors returned.

Refused, each with the reason and what to use instead (a permanent failure, recorded at create):

* ``boto``: any boto3 method of any AWS service, called with the host's IAM identity by whoever writes a task;
* ``sagemaker-endpoint``: needs an endpoint config made by ``boto`` tasks; ``sagemaker-deploy-endpoint`` creates
  the model, endpoint config and endpoint in one task;
* ``sagemaker-training-task`` / ``sagemaker-processing-task`` (a Python function run inside a SageMaker job),
  ``sagemaker-hyperparameter-tuning-job`` and ``sagemaker-inference-recommender-job``: not translated.

No SDK is imported here.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar

from flyteconnectors.core import AsyncConnector, InvalidTaskConfig, JobRejected, Resource, SyncConnector, TaskContext
from flyteconnectors.core.config import TaskConfig
from flyteconnectors.sagemaker.connector import (
    JobRef,
    ProcessingConfig,
    ProcessingJob,
    TrainingConfig,
    TrainingJob,
    TransformConfig,
    TransformJob,
)

_INPUT = re.compile(r"\{inputs\.(\w+)\}")
_IMAGE = re.compile(r"\{images\.(\w+)\}")
_TOKEN = re.compile(r"\{(?:inputs\.)?idempotence_token\}")


# ============================================================================================ translation
def _translate(value: Any, images: dict[str, str], where: str) -> Any:
    """flytekit's placeholders as ours; whole-number floats (protobuf Struct) back to ints, as flytekit did."""
    if isinstance(value, dict):
        return {k: _translate(v, images, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_translate(v, images, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        return value

    def image(match: re.Match[str]) -> str:
        if match.group(1) not in images:
            raise InvalidTaskConfig(where, f"{{images.{match.group(1)}}} names no image of the task "
                                           f"(images: {', '.join(sorted(images)) or 'none'})")
        return images[match.group(1)]

    text = _TOKEN.sub("{{job_name}}", value)
    text = _IMAGE.sub(image, text)
    return _INPUT.sub(lambda m: "{{inputs." + m.group(1) + "}}", text)


def _dig(request: dict[str, Any], *path: str) -> Any:
    value: Any = request
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if value in (None, ""):
        raise InvalidTaskConfig("custom.config." + ".".join(path), "required in the request")
    return value


def _flytekit_request(custom: dict[str, Any] | None, name_field: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The translated request (without its name and tags) and the config fields every job shares."""
    custom = dict(custom or {})
    raw = custom.pop("config", None)
    region = custom.pop("region", None)
    images = custom.pop("images", None) or {}
    if custom:
        raise InvalidTaskConfig(f"custom.{sorted(custom)[0]}", "not part of flytekit's SageMaker job layout")
    if not isinstance(raw, dict) or not raw:
        raise InvalidTaskConfig("custom.config", "flytekit's SageMaker job task needs config (the boto3 request)")
    if not isinstance(images, dict) or not all(isinstance(v, str) for v in images.values()):
        raise InvalidTaskConfig("custom.images", "must map names to image URIs")
    request = _translate(raw, images, "custom.config")
    request.pop(name_field, None)  # named by the attempt, so a retried create adopts the job
    tags = request.pop("Tags", None) or []
    common: dict[str, Any] = {"tags": {str(t.get("Key")): str(t.get("Value", "")) for t in tags
                                       if isinstance(t, dict)}}
    if region:
        common["region"] = region
    return request, common


def _isoformat(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else value


class FlytekitTrainingJobConfig(TrainingConfig):
    @classmethod
    def from_template_parts(
        cls, custom: dict[str, Any] | None, config: dict[str, str] | None = None, sql: str | None = None
    ) -> TaskConfig:
        request, data = _flytekit_request(custom, "TrainingJobName")
        data.update(role_arn=_dig(request, "RoleArn"), image=_dig(request, "AlgorithmSpecification", "TrainingImage"),
                    output_path=_dig(request, "OutputDataConfig", "S3OutputPath"), request_overrides=request)
        return cls.parse(data)


class FlytekitProcessingJobConfig(ProcessingConfig):
    @classmethod
    def from_template_parts(
        cls, custom: dict[str, Any] | None, config: dict[str, str] | None = None, sql: str | None = None
    ) -> TaskConfig:
        request, data = _flytekit_request(custom, "ProcessingJobName")
        data.update(role_arn=_dig(request, "RoleArn"), image=_dig(request, "AppSpecification", "ImageUri"),
                    request_overrides=request)
        return cls.parse(data)


class FlytekitTransformJobConfig(TransformConfig):
    @classmethod
    def from_template_parts(
        cls, custom: dict[str, Any] | None, config: dict[str, str] | None = None, sql: str | None = None
    ) -> TaskConfig:
        request, data = _flytekit_request(custom, "TransformJobName")
        data.update(model_name=_dig(request, "ModelName"),
                    input_path=_dig(request, "TransformInput", "DataSource", "S3DataSource", "S3Uri"),
                    output_path=_dig(request, "TransformOutput", "S3OutputPath"), request_overrides=request)
        return cls.parse(data)


# ============================================================================================ job connectors
class FlytekitTrainingJob(TrainingJob):
    """flytekit's ``sagemaker-training-job`` v0 through :class:`TrainingJob`; ``result`` as flytekit returned it."""

    name = "SageMaker training job (flytekit task type)"
    task_type = "sagemaker-training-job"
    config_model = FlytekitTrainingJobConfig
    meta_model = JobRef
    produces = ("result",)

    def outputs(self, job: dict[str, Any]) -> dict[str, Any]:
        return {"result": {
            "TrainingJobArn": job.get("TrainingJobArn"),
            "TrainingJobName": job.get("TrainingJobName"),
            "ModelArtifacts": {"S3ModelArtifacts": (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")},
            "OutputDataConfig": {"S3OutputPath": (job.get("OutputDataConfig") or {}).get("S3OutputPath")},
            "FinalMetricDataList": [{"MetricName": m.get("MetricName"), "Value": m.get("Value"),
                                     "Timestamp": _isoformat(m.get("Timestamp"))}
                                    for m in job.get("FinalMetricDataList") or []],
            "BillableTimeInSeconds": job.get("BillableTimeInSeconds"),
            "TrainingTimeInSeconds": job.get("TrainingTimeInSeconds"),
        }}


class FlytekitProcessingJob(ProcessingJob):
    """flytekit's ``sagemaker-processing-job`` v0 through :class:`ProcessingJob`."""

    name = "SageMaker processing job (flytekit task type)"
    task_type = "sagemaker-processing-job"
    config_model = FlytekitProcessingJobConfig
    meta_model = JobRef
    produces = ("result",)

    def outputs(self, job: dict[str, Any]) -> dict[str, Any]:
        outputs = []
        for out in (job.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            item = {"OutputName": out.get("OutputName")}
            if out.get("S3Output"):
                item["S3Uri"] = out["S3Output"].get("S3Uri")
            if out.get("FeatureStoreOutput"):
                item["FeatureGroupName"] = out["FeatureStoreOutput"].get("FeatureGroupName")
            outputs.append(item)
        return {"result": {
            "ProcessingJobArn": job.get("ProcessingJobArn"), "ProcessingJobName": job.get("ProcessingJobName"),
            "Outputs": outputs, "ExitMessage": job.get("ExitMessage"),
            "ProcessingStartTime": _isoformat(job.get("ProcessingStartTime")),
            "ProcessingEndTime": _isoformat(job.get("ProcessingEndTime")),
        }}


class FlytekitTransformJob(TransformJob):
    """flytekit's ``sagemaker-transform-job`` v0 through :class:`TransformJob`."""

    name = "SageMaker batch transform job (flytekit task type)"
    task_type = "sagemaker-transform-job"
    config_model = FlytekitTransformJobConfig
    meta_model = JobRef
    produces = ("result",)

    def outputs(self, job: dict[str, Any]) -> dict[str, Any]:
        return {"result": {
            "TransformJobArn": job.get("TransformJobArn"), "TransformJobName": job.get("TransformJobName"),
            "ModelName": job.get("ModelName"),
            "TransformOutput": {"S3OutputPath": (job.get("TransformOutput") or {}).get("S3OutputPath")},
            "TransformStartTime": _isoformat(job.get("TransformStartTime")),
            "TransformEndTime": _isoformat(job.get("TransformEndTime")),
        }}


# ============================================================================================ refused
class RefusedLayout(TaskConfig):
    """Any custom layout: the task is refused at create, so its fields are never read."""

    @classmethod
    def from_template_parts(
        cls, custom: dict[str, Any] | None, config: dict[str, str] | None = None, sql: str | None = None
    ) -> TaskConfig:
        return cls()


class _Refused:
    reason: ClassVar[str]

    def _refuse(self) -> JobRejected:
        return JobRejected(self.reason, code="UNSUPPORTED_TASK_TYPE")


class RefusedBoto(_Refused, SyncConnector[RefusedLayout]):
    name = "AWS boto3 call (flytekit task type, refused)"
    task_type = "boto"
    config_model = RefusedLayout
    reason = ("flytekit's generic 'boto' task type is not served: it lets any task author call any AWS API with the "
              "connector host's IAM identity. Use the sagemaker-training, sagemaker-processing, sagemaker-transform, "
              "sagemaker-tuning, sagemaker-deploy-endpoint, sagemaker-invoke-endpoint or sagemaker-create-model task "
              "types (flyteconnectors-sagemaker), or a container task running with its own IAM role")

    def do(self, task: TaskContext[RefusedLayout]) -> Resource:
        raise self._refuse()


class _RefusedJob(_Refused, AsyncConnector[RefusedLayout, JobRef]):
    config_model = RefusedLayout
    meta_model = JobRef

    def create(self, task: TaskContext[RefusedLayout]) -> JobRef:
        raise self._refuse()

    def get(self, job: JobRef, ctx: Any) -> Resource:  # nothing is ever created
        raise self._refuse()

    def delete(self, job: JobRef, ctx: Any) -> None:
        return None


class RefusedEndpoint(_RefusedJob):
    name = "SageMaker endpoint (flytekit task type, refused)"
    task_type = "sagemaker-endpoint"
    config_model = RefusedLayout
    meta_model = JobRef
    reason = ("flytekit's 'sagemaker-endpoint' task type is not served: it needs an endpoint config made by 'boto' "
              "tasks, which this host refuses. Use the sagemaker-deploy-endpoint task type, which creates the model, "
              "endpoint config and endpoint in one task and waits until it is InService")


def _not_translated(flytekit_type: str, ours: str) -> str:
    return (f"flytekit's '{flytekit_type}' task type is not served by this host (its layout is not translated). "
            f"Use the {ours} task type (flyteconnectors-sagemaker), or keep a flytekit connector host for it")


class RefusedTrainingTask(_RefusedJob):
    name = "SageMaker pythonic training (flytekit task type, refused)"
    task_type = "sagemaker-training-task"
    config_model = RefusedLayout
    meta_model = JobRef
    reason = _not_translated("sagemaker-training-task", "sagemaker-training (a container image that trains)")


class RefusedProcessingTask(_RefusedJob):
    name = "SageMaker pythonic processing (flytekit task type, refused)"
    task_type = "sagemaker-processing-task"
    config_model = RefusedLayout
    meta_model = JobRef
    reason = _not_translated("sagemaker-processing-task", "sagemaker-processing")


class RefusedTuningJob(_RefusedJob):
    name = "SageMaker tuning (flytekit task type, refused)"
    task_type = "sagemaker-hyperparameter-tuning-job"
    config_model = RefusedLayout
    meta_model = JobRef
    reason = _not_translated("sagemaker-hyperparameter-tuning-job", "sagemaker-tuning")


class RefusedRecommender(_RefusedJob):
    name = "SageMaker inference recommender (flytekit task type, refused)"
    task_type = "sagemaker-inference-recommender-job"
    config_model = RefusedLayout
    meta_model = JobRef
    reason = _not_translated("sagemaker-inference-recommender-job", "sagemaker-deploy-endpoint")


CONNECTORS = (
    FlytekitTrainingJob, FlytekitProcessingJob, FlytekitTransformJob,
    RefusedBoto, RefusedEndpoint, RefusedTrainingTask, RefusedProcessingTask, RefusedTuningJob, RefusedRecommender,
)
