"""SageMaker connectors: training, processing, batch transform and tuning jobs, endpoint deployment (async);
endpoint invocation and model creation (sync).

Every call goes through boto3 in the package's thread pool (plain ``def``). Resource names derive from the
attempt's idempotency key, so a retried create finds its own resource and adopts it, after describing it and
checking the ``flyteconnectors:idempotency-key`` tag; a name that belongs to someone else is refused, never adopted.
There is deliberately no generic "call any boto3 method" task type (flytekit's ``boto`` lets any task author use
the connector's IAM identity for anything).

String fields of every config may hold placeholders: ``{{inputs.NAME}}`` and ``{{job_name}}``, ``{{project}}``,
``{{domain}}``, ``{{execution}}``, ``{{node_id}}``, ``{{attempt}}`` (see ``_render``). Nothing is evaluated.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flyteconnectors.core import (
    AsyncConnector,
    CallContext,
    ConnectorSettings,
    InvalidTaskConfig,
    JobMeta,
    JobNotFound,
    JobRejected,
    LogLink,
    Phase,
    Resource,
    StateMap,
    SyncConnector,
    TaskConfig,
    TaskContext,
    TransientServiceError,
    fingerprint,
)
from flyteconnectors.sagemaker._render import as_text, render_config

if TYPE_CHECKING:
    from types import ModuleType

C = TypeVar("C", bound="SageMakerConfig")

#: SageMaker resource names: up to 63 of [a-zA-Z0-9-], starting and ending alphanumeric (tuning jobs: 32).
NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
#: The tag that says which task execution created a resource; a retried create adopts only its own.
KEY_TAG = "flyteconnectors:idempotency-key"


# ============================================================================================ settings
class SageMakerSettings(ConnectorSettings):
    """Connector-level settings: ``FLYTECONNECTORS_SAGEMAKER_<FIELD>`` or the host config file."""

    #: Region for tasks that name none (else AWS_REGION / AWS_DEFAULT_REGION / the shared config).
    region: str | None = None
    #: SageMaker API endpoint override (else boto3's own AWS_ENDPOINT_URL_SAGEMAKER, else AWS).
    endpoint_url: str | None = None
    #: SageMaker Runtime endpoint override (else AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, else AWS).
    runtime_endpoint_url: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    #: Total attempts boto3 makes per control-plane call (standard retry mode), inside the RPC deadline.
    max_attempts: int = 3
    #: Read timeout of InvokeEndpoint; below Propeller's 10 s ExecuteTaskSync deadline.
    invoke_timeout: float = 8.0


# ============================================================================================ configs
class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SageMakerConfig(TaskConfig):
    """Fields every SageMaker task has."""

    #: AWS region; default from the connector settings or the AWS environment.
    region: str | None = None
    #: Tags for every resource the task creates (Flyte identity tags are added).
    tags: dict[str, str] = {}


class _JobConfig(SageMakerConfig):
    #: Extra fields of the Create* request, merged in as they are (dicts deeply). The name cannot be set.
    request_overrides: dict[str, Any] = {}


class Channel(_Part):
    """A training input channel."""

    name: str
    s3_uri: str
    content_type: str | None = None
    s3_data_type: Literal["S3Prefix", "ManifestFile", "AugmentedManifestFile"] = "S3Prefix"
    distribution: Literal["FullyReplicated", "ShardedByS3Key"] = "FullyReplicated"
    input_mode: Literal["File", "Pipe", "FastFile"] | None = None


class MetricDefinition(_Part):
    name: str
    regex: str


class TrainingSpec(_Part):
    """What a training job runs; shared by training and tuning tasks."""

    role_arn: str
    image: str
    #: S3 prefix for the model artifacts.
    output_path: str
    channels: list[Channel] = []
    #: SageMaker takes strings; numbers and booleans are written as text.
    hyperparameters: dict[str, str | int | float | bool] = {}
    environment: dict[str, str] = {}
    instance_type: str = "ml.m5.large"
    instance_count: int = Field(1, ge=1)
    volume_size_gb: int = Field(30, ge=1)
    max_runtime_seconds: int = Field(86400, ge=1)
    input_mode: Literal["File", "Pipe", "FastFile"] = "File"
    metric_definitions: list[MetricDefinition] = []


class TrainingConfig(_JobConfig, TrainingSpec):
    """``sagemaker-training``: one training job (the fields of :class:`TrainingSpec`).

    Outputs: model_artifact, metrics, job_arn, job_name.
    """


class ProcessingInput(_Part):
    name: str
    s3_uri: str
    local_path: str | None = None  # default /opt/ml/processing/input/<name>
    s3_data_type: Literal["S3Prefix", "ManifestFile"] = "S3Prefix"
    input_mode: Literal["File", "Pipe"] = "File"


class ProcessingOutput(_Part):
    name: str
    s3_uri: str
    local_path: str | None = None  # default /opt/ml/processing/output/<name>
    upload_mode: Literal["EndOfJob", "Continuous"] = "EndOfJob"


class ProcessingConfig(_JobConfig):
    """``sagemaker-processing``: one processing job. Outputs: outputs (name -> S3 URI), job_arn, job_name."""

    role_arn: str
    image: str
    entrypoint: list[str] = []
    arguments: list[str] = []
    inputs: list[ProcessingInput] = []
    outputs: list[ProcessingOutput] = []
    environment: dict[str, str] = {}
    instance_type: str = "ml.m5.large"
    instance_count: int = Field(1, ge=1)
    volume_size_gb: int = Field(30, ge=1)
    max_runtime_seconds: int = Field(86400, ge=1)


class TransformConfig(_JobConfig):
    """``sagemaker-transform``: one batch transform job. Outputs: output_path, job_arn, job_name."""

    model_name: str
    input_path: str
    output_path: str
    content_type: str | None = None
    split_type: Literal["None", "Line", "RecordIO", "TFRecord"] | None = None
    compression_type: Literal["None", "Gzip"] | None = None
    s3_data_type: Literal["S3Prefix", "ManifestFile", "AugmentedManifestFile"] = "S3Prefix"
    accept: str | None = None
    assemble_with: Literal["None", "Line"] | None = None
    instance_type: str = "ml.m5.large"
    instance_count: int = Field(1, ge=1)
    max_payload_mb: int | None = Field(None, ge=0)
    max_concurrent_transforms: int | None = Field(None, ge=0)
    batch_strategy: Literal["MultiRecord", "SingleRecord"] | None = None
    environment: dict[str, str] = {}


class IntegerRange(_Part):
    name: str
    min: int
    max: int
    scaling: Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"] = "Auto"


class ContinuousRange(_Part):
    name: str
    min: float
    max: float
    scaling: Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"] = "Auto"


class CategoricalRange(_Part):
    name: str
    values: list[str] = Field(min_length=1)


class TuningConfig(_JobConfig):
    """``sagemaker-tuning``: a hyperparameter tuning job.

    Outputs: best_training_job, best_objective_value, best_hyperparameters, job_arn, job_name.
    """

    #: The training job each trial runs; ``training.hyperparameters`` are the static ones.
    training: TrainingSpec
    objective_metric: str
    objective_type: Literal["Maximize", "Minimize"] = "Maximize"
    strategy: Literal["Bayesian", "Random", "Hyperband", "Grid"] = "Bayesian"
    max_training_jobs: int = Field(ge=1)
    max_parallel_training_jobs: int = Field(1, ge=1)
    integer_ranges: list[IntegerRange] = []
    continuous_ranges: list[ContinuousRange] = []
    categorical_ranges: list[CategoricalRange] = []
    early_stopping: Literal["Off", "Auto"] = "Off"

    @model_validator(mode="after")
    def _some_range(self) -> TuningConfig:
        if not (self.integer_ranges or self.continuous_ranges or self.categorical_ranges):
            raise ValueError("name at least one of integer_ranges, continuous_ranges, categorical_ranges")
        return self


class ModelSpec(_Part):
    """A model (container) for SageMaker to host."""

    image: str
    role_arn: str
    model_data_url: str | None = None
    environment: dict[str, str] = {}


class ServerlessSpec(_Part):
    memory_size_mb: int = Field(2048, ge=1024)
    max_concurrency: int = Field(5, ge=1)


class EndpointConfig(SageMakerConfig):
    """``sagemaker-deploy-endpoint``: model, endpoint config, endpoint; waits for InService.

    Give ``model`` (created by the task) or ``model_name`` (an existing model, never deleted by the task).
    Outputs: endpoint_name, endpoint_arn.
    """

    model: ModelSpec | None = None
    model_name: str | None = None
    #: Default: the deterministic name of this attempt. An existing endpoint of that name is never taken over.
    endpoint_name: str | None = None
    variant_name: str = "AllTraffic"
    instance_type: str = "ml.m5.large"
    initial_instance_count: int = Field(1, ge=1)
    serverless: ServerlessSpec | None = None

    @model_validator(mode="after")
    def _one_model(self) -> EndpointConfig:
        if (self.model is None) == (self.model_name is None):
            raise ValueError("give exactly one of model (to create) or model_name (an existing model)")
        return self


class InvokeConfig(SageMakerConfig):
    """``sagemaker-invoke-endpoint``: one InvokeEndpoint call inside the sync deadline.

    The body is ``payload`` (a template), else the input named ``payload_input``, else (JSON only) every input
    as one JSON object. Outputs: response (text), response_json (parsed, for JSON answers), content_type.
    """

    endpoint_name: str
    content_type: Literal["application/json", "text/csv"] = "application/json"
    accept: str | None = None
    payload: str | None = None
    payload_input: str | None = None
    target_variant: str | None = None
    custom_attributes: str | None = None

    @model_validator(mode="after")
    def _one_body(self) -> InvokeConfig:
        if self.payload is not None and self.payload_input is not None:
            raise ValueError("give payload or payload_input, not both")
        if self.content_type == "text/csv" and self.payload is None and self.payload_input is None:
            raise ValueError("a text/csv invocation needs payload or payload_input")
        return self


class ModelConfig(SageMakerConfig):
    """``sagemaker-create-model``: CreateModel, which returns at once. Outputs: model_name, model_arn."""

    image: str
    role_arn: str
    model_data_url: str | None = None
    environment: dict[str, str] = {}
    #: Default: the deterministic name of this attempt. An existing model of that name is never taken over.
    model_name: str | None = None
    request_overrides: dict[str, Any] = {}


# ============================================================================================ job metadata
#: SageMaker's resource name format (NAME_PATTERN above) and AWS's region format, anchored: a handle with anything
#: else is refused as malformed before boto3 sees it.
NAME_FIELD_PATTERN = f"^(?:{NAME_PATTERN.pattern})$"
REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"


class JobRef(JobMeta):
    """A SageMaker job: its name and region, nothing else."""

    name: str = Field(pattern=NAME_FIELD_PATTERN)
    region: str = Field(pattern=REGION_PATTERN)


class EndpointRef(JobMeta):
    """An endpoint deployment and the resources this task created (the only ones delete removes)."""

    region: str = Field(pattern=REGION_PATTERN)
    endpoint_name: str = Field(pattern=NAME_FIELD_PATTERN)
    endpoint_config_name: str = Field(pattern=NAME_FIELD_PATTERN)
    model_name: str = Field(pattern=NAME_FIELD_PATTERN)
    created: list[Literal["model", "endpoint-config", "endpoint"]] = []


# ============================================================================================ state maps
# Stopped maps to FAILED, not ABORTED: Propeller replaces an ABORTED task's message with a generic text
# (wire reference §2.7), and a job stopped by someone else needs its reason shown. Our own delete stops polling.
TRAINING_STATES = StateMap({
    "InProgress": Phase.RUNNING, "Completed": Phase.SUCCEEDED, "Failed": Phase.FAILED,
    "Stopping": Phase.RUNNING, "Stopped": Phase.FAILED, "Deleting": Phase.FAILED,
}, service="SageMaker training job", case_sensitive=True)

#: A training job InProgress is INITIALIZING until it trains (Propeller shows INITIALIZING's message).
TRAINING_PROGRESS = StateMap({
    "Pending": Phase.INITIALIZING, "Starting": Phase.INITIALIZING, "LaunchingMLInstances": Phase.INITIALIZING,
    "PreparingTrainingStack": Phase.INITIALIZING, "Downloading": Phase.INITIALIZING,
    "DownloadingTrainingImage": Phase.INITIALIZING, "Training": Phase.RUNNING, "Uploading": Phase.RUNNING,
    "Updating": Phase.RUNNING, "Restarting": Phase.RUNNING, "Interrupted": Phase.RUNNING,
    "Stopping": Phase.RUNNING, "Stopped": Phase.RUNNING, "MaxRuntimeExceeded": Phase.RUNNING,
    "MaxWaitTimeExceeded": Phase.RUNNING, "Completed": Phase.RUNNING, "Failed": Phase.RUNNING,
}, service="SageMaker training job secondary status", case_sensitive=True)

PROCESSING_STATES = StateMap({
    "InProgress": Phase.RUNNING, "Completed": Phase.SUCCEEDED, "Failed": Phase.FAILED,
    "Stopping": Phase.RUNNING, "Stopped": Phase.FAILED,
}, service="SageMaker processing job", case_sensitive=True)

TRANSFORM_STATES = StateMap({
    "InProgress": Phase.RUNNING, "Completed": Phase.SUCCEEDED, "Failed": Phase.FAILED,
    "Stopping": Phase.RUNNING, "Stopped": Phase.FAILED,
}, service="SageMaker transform job", case_sensitive=True)

TUNING_STATES = StateMap({
    "InProgress": Phase.RUNNING, "Completed": Phase.SUCCEEDED, "Failed": Phase.FAILED,
    "Stopping": Phase.RUNNING, "Stopped": Phase.FAILED, "Deleting": Phase.FAILED, "DeleteFailed": Phase.FAILED,
}, service="SageMaker tuning job", case_sensitive=True)

# flytekit's endpoint connector knew only Creating, InService and Failed and raised KeyError on the rest.
ENDPOINT_STATES = StateMap({
    "Creating": Phase.RUNNING, "Updating": Phase.RUNNING, "SystemUpdating": Phase.RUNNING,
    "RollingBack": Phase.RUNNING, "InService": Phase.SUCCEEDED, "OutOfService": Phase.FAILED,
    "Deleting": Phase.FAILED, "Failed": Phase.FAILED, "UpdateRollbackFailed": Phase.FAILED,
}, service="SageMaker endpoint", case_sensitive=True)

#: Job statuses after which StopXxx is refused and a delete has nothing to do.
FINISHED = frozenset({"Completed", "Failed", "Stopped"})
#: Endpoint statuses in which SageMaker may refuse DeleteEndpoint until the change settles.
ENDPOINT_SETTLING = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})


# ============================================================================================ shared plumbing
def _aws() -> ModuleType:
    from flyteconnectors.sagemaker import _aws as module  # boto3 loads on first use, not at host start

    return module


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _check_name(field: str, value: str, max_len: int = 63) -> str:
    if len(value) > max_len or not NAME_PATTERN.fullmatch(value):
        raise InvalidTaskConfig(field, f"{value!r} is not a SageMaker name (1-{max_len} of a-z, A-Z, 0-9 and "
                                       "'-', starting and ending with a letter or digit)")
    return value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    """Drop None values and empty containers: boto3 refuses None, and SageMaker empty lists/maps."""
    return {k: v for k, v in data.items() if v is not None and v != {} and v != []}


def _tags(task: TaskContext[Any], config: SageMakerConfig) -> list[dict[str, str]]:
    tags = {**config.tags, **task.identity.labels(), KEY_TAG: task.idempotency_key}
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _console(region: str, path: str) -> LogLink:
    return LogLink("SageMaker console", f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/{path}")


def _cloudwatch(region: str, group: str, prefix: str) -> LogLink:
    return LogLink(
        "CloudWatch logs",
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logStream:group={group};prefix={prefix};streamFilter=typeLogStreamPrefix",
    )


class _SageMaker:
    """Clients per (service, endpoint, region, credentials), built once and closed when the host drains."""

    settings_model: ClassVar[type[ConnectorSettings]] = SageMakerSettings
    settings: SageMakerSettings
    clients: Any
    secret_names: ClassVar[tuple[str, ...]] = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
    #: The outputs a task of this type may declare.
    produces: ClassVar[tuple[str, ...]] = ()

    def warm_up(self) -> None:
        """Called by the host before it serves: load boto3 and parse SageMaker's service models now. Parsing them
        holds the GIL for 100-300 ms, which would otherwise stall the event loop during the first task's call."""
        _aws().warm_up()

    def _region(self, config: SageMakerConfig) -> str:
        region = config.region or self.settings.region or _aws().default_region()
        if not region:
            raise InvalidTaskConfig("region", "no AWS region: set it in the task config, the connector settings "
                                              "(FLYTECONNECTORS_SAGEMAKER_REGION) or AWS_REGION")
        return str(region)

    def _client(self, ctx: CallContext, region: str, service: str = "sagemaker") -> Any:
        key_id = ctx.secrets.get("aws_access_key_id")
        secret = ctx.secrets.get("aws_secret_access_key")
        credentials = (key_id, secret, ctx.secrets.get("aws_session_token")) if key_id and secret else None
        runtime = service == "sagemaker-runtime"
        endpoint = self.settings.runtime_endpoint_url if runtime else self.settings.endpoint_url
        cache_key = (service, endpoint, region, fingerprint(*credentials) if credentials else "default-chain")
        settings = self.settings
        return self.clients.get(cache_key, lambda: _aws().make_client(
            service, region, endpoint, credentials,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.invoke_timeout if runtime else settings.read_timeout,
            # InvokeEndpoint is retried by the core inside the sync deadline, not by boto3 past it.
            max_attempts=1 if runtime else settings.max_attempts,
            # Every thread of the package's pool may use this one client at once: one pooled connection each.
            max_pool_connections=settings.executor_threads,
        ))

    def _create_or_adopt(self, client: Any, task: TaskContext[Any], kind: str, create: str, describe: str,
                         name_field: str, arn_field: str, request: dict[str, Any],
                         field: str = "request_overrides") -> str:
        """Create a resource, or adopt the one a previous try of this attempt created. Returns its ARN.

        A conflict ("ResourceInUse", "Cannot create already existing ...") is never taken as success by
        itself: the resource is described and adopted only if its tag names this attempt's idempotency key.
        """
        aws = _aws()
        name = request[name_field]
        with aws.aws_errors(create, field=field):
            try:
                return str(getattr(client, _snake(create))(**request)[arn_field])
            except aws.ClientError as err:
                if not aws.is_conflict(err):
                    raise
        # A conflict: a previous try whose answer was lost, or a name someone else holds.
        try:
            with aws.aws_errors(describe, missing_means_gone=True):
                found = getattr(client, _snake(describe))(**{name_field: name})
            arn = str(found[arn_field])
            with aws.aws_errors("ListTags", missing_means_gone=True):
                tags = {t["Key"]: t["Value"] for t in client.list_tags(ResourceArn=arn).get("Tags", [])}
        except JobNotFound:
            raise TransientServiceError(f"SageMaker reported {kind} {name} as existing but cannot describe it yet; "
                                        "retrying") from None
        if tags.get(KEY_TAG) != task.idempotency_key:
            raise JobRejected(f"a SageMaker {kind} named {name} already exists in {client.meta.region_name} and "
                              "was not created by this task execution; refusing to take it over")
        return arn


# ============================================================================================ async jobs
class _JobConnector(_SageMaker, AsyncConnector[C, JobRef]):
    """create / describe / stop for one kind of SageMaker job."""

    kind: ClassVar[str]
    create_op: ClassVar[str]
    describe_op: ClassVar[str]
    stop_op: ClassVar[str]
    name_field: ClassVar[str]
    arn_field: ClassVar[str]
    status_field: ClassVar[str]
    states: ClassVar[StateMap]
    name_max: ClassVar[int] = 63
    console_path: ClassVar[str]
    log_group: ClassVar[str | None] = None

    def request(self, config: C, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def outputs(self, job: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def message(self, job: dict[str, Any]) -> str:
        return str(job.get("FailureReason") or "")

    def phase_of(self, job: dict[str, Any]) -> Phase | None:
        """A finer phase than the status table gives, if any."""
        return None

    # ------------------------------------------------------------------------------------------ create
    def create(self, task: TaskContext[C]) -> JobRef:
        name = task.job_name(self.name_max)
        config = render_config(task, name)
        region = self._region(config)
        for key in config.request_overrides:
            if key in (self.name_field, "Tags"):
                raise InvalidTaskConfig(f"request_overrides.{key}",
                                        "set by the connector (the name comes from the execution; use tags)")
        request = _merge(self.request(config, name), config.request_overrides)
        request["Tags"] = _tags(task, config)
        client = self._client(task, region)
        self._create_or_adopt(client, task, self.kind, self.create_op, self.describe_op, self.name_field,
                              self.arn_field, request)
        return JobRef(name=name, region=region)

    # ------------------------------------------------------------------------------------------ get
    def get(self, job: JobRef, ctx: CallContext) -> Resource:
        client = self._client(ctx, job.region)
        with _aws().aws_errors(self.describe_op, missing_means_gone=True):
            found = getattr(client, _snake(self.describe_op))(**{self.name_field: job.name})
        status = found.get(self.status_field, "")
        links = [_console(job.region, f"{self.console_path}/{job.name}")]
        if self.log_group:
            links.append(_cloudwatch(job.region, self.log_group, job.name))
        outputs = None
        if status in self.states and self.states.table[status] is Phase.SUCCEEDED:
            outputs = {"job_arn": found.get(self.arn_field, ""), "job_name": job.name, **self.outputs(found)}
        resource = self.states.resource(status, self.message(found), outputs=outputs, log_links=links,
                                        custom_info={"arn": found.get(self.arn_field, "")})
        finer = self.phase_of(found)
        if finer is not None and resource.phase is Phase.RUNNING:
            resource.phase = finer
        return resource

    # ------------------------------------------------------------------------------------------ delete
    def delete(self, job: JobRef, ctx: CallContext) -> None:
        client = self._client(ctx, job.region)
        aws = _aws()
        try:
            with aws.aws_errors(self.stop_op, missing_means_gone=True):
                getattr(client, _snake(self.stop_op))(**{self.name_field: job.name})
        except JobRejected:
            # SageMaker refuses to stop a job that has already finished: there is nothing left to stop.
            with aws.aws_errors(self.describe_op, missing_means_gone=True):
                found = getattr(client, _snake(self.describe_op))(**{self.name_field: job.name})
            if found.get(self.status_field) in FINISHED or found.get(self.status_field) == "Stopping":
                return
            raise


class TrainingJob(_JobConnector[TrainingConfig]):
    name = "SageMaker training job"
    task_type = "sagemaker-training"
    kind = "training job"
    create_op, describe_op, stop_op = "CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob"
    name_field, arn_field, status_field = "TrainingJobName", "TrainingJobArn", "TrainingJobStatus"
    states = TRAINING_STATES
    produces = ("model_artifact", "metrics", "job_arn", "job_name")
    console_path = "jobs"
    log_group = "/aws/sagemaker/TrainingJobs"

    def request(self, config: TrainingConfig, name: str) -> dict[str, Any]:
        return {"TrainingJobName": name, **_training_definition(config)}

    def outputs(self, job: dict[str, Any]) -> dict[str, Any]:
        return {
            "model_artifact": job.get("ModelArtifacts", {}).get("S3ModelArtifacts", ""),
            "metrics": {m["MetricName"]: float(m["Value"]) for m in job.get("FinalMetricDataList", [])},
        }

    def message(self, job: dict[str, Any]) -> str:
        secondary = job.get("SecondaryStatus", "")
        transitions = job.get("SecondaryStatusTransitions") or [{}]
        detail = transitions[-1].get("StatusMessage", "")
        parts = [f"{secondary}: {detail}" if detail else secondary, job.get("FailureReason", "")]
        return " — ".join(p for p in parts if p)

    def phase_of(self, job: dict[str, Any]) -> Phase | None:
        if job.get("TrainingJobStatus") == "InProgress" and job.get("SecondaryStatus"):
            return TRAINING_PROGRESS.phase(job["SecondaryStatus"])
        return None


def _training_definition(spec: TrainingSpec) -> dict[str, Any]:
    channels = [
        _clean({
            "ChannelName": ch.name,
            "DataSource": {"S3DataSource": {"S3DataType": ch.s3_data_type, "S3Uri": ch.s3_uri,
                                            "S3DataDistributionType": ch.distribution}},
            "ContentType": ch.content_type,
            "InputMode": ch.input_mode,
        })
        for ch in spec.channels
    ]
    algorithm = _clean({
        "TrainingImage": spec.image,
        "TrainingInputMode": spec.input_mode,
        "MetricDefinitions": [{"Name": m.name, "Regex": m.regex} for m in spec.metric_definitions],
    })
    return _clean({
        "RoleArn": spec.role_arn,
        "AlgorithmSpecification": algorithm,
        "HyperParameters": {k: as_text(v) for k, v in spec.hyperparameters.items()},
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": spec.output_path},
        "ResourceConfig": {"InstanceType": spec.instance_type, "InstanceCount": spec.instance_count,
                           "VolumeSizeInGB": spec.volume_size_gb},
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_runtime_seconds},
        "Environment": dict(spec.environment),
    })


class ProcessingJob(_JobConnector[ProcessingConfig]):
    name = "SageMaker processing job"
    task_type = "sagemaker-processing"
    kind = "processing job"
    create_op, describe_op, stop_op = "CreateProcessingJob", "DescribeProcessingJob", "StopProcessingJob"
    name_field, arn_field, status_field = "ProcessingJobName", "ProcessingJobArn", "ProcessingJobStatus"
    states = PROCESSING_STATES
    produces = ("outputs", "job_arn", "job_name")
    console_path = "processing-jobs"
    log_group = "/aws/sagemaker/ProcessingJobs"

    def request(self, config: ProcessingConfig, name: str) -> dict[str, Any]:
        inputs = [
            {"InputName": i.name, "S3Input": {"S3Uri": i.s3_uri, "S3DataType": i.s3_data_type,
                                               "S3InputMode": i.input_mode,
                                               "LocalPath": i.local_path or f"/opt/ml/processing/input/{i.name}"}}
            for i in config.inputs
        ]
        outputs = [
            {"OutputName": o.name, "S3Output": {"S3Uri": o.s3_uri, "S3UploadMode": o.upload_mode,
                                                 "LocalPath": o.local_path or f"/opt/ml/processing/output/{o.name}"}}
            for o in config.outputs
        ]
        return _clean({
            "ProcessingJobName": name,
            "RoleArn": config.role_arn,
            "AppSpecification": _clean({"ImageUri": config.image, "ContainerEntrypoint": list(config.entrypoint),
                                        "ContainerArguments": list(config.arguments)}),
            "ProcessingResources": {"ClusterConfig": {"InstanceType": config.instance_type,
                                                      "InstanceCount": config.instance_count,
                                                      "VolumeSizeInGB": config.volume_size_gb}},
            "StoppingCondition": {"MaxRuntimeInSeconds": config.max_runtime_seconds},
            "ProcessingInputs": inputs,
            "ProcessingOutputConfig": {"Outputs": outputs} if outputs else None,
            "Environment": dict(config.environment),
        })

    def outputs(self, job: dict[str, Any]) -> dict[str, Any]:
        config = job.get("ProcessingOutputConfig") or {}
        return {"outputs": {o["OutputName"]: o.get("S3Output", {}).get("S3Uri", "") for o in config.get("Outputs", [])}}

    def message(self, job: dict[str, Any]) -> str:
        return " — ".join(p for p in (job.get("FailureReason", ""), job.get("ExitMessage", "")) if p)


class TransformJob(_JobConnector[TransformConfig]):
    name = "SageMaker batch transform job"
    task_type = "sagemaker-transform"
    kind = "transform job"
    create_op, describe_op, stop_op = "CreateTransformJob", "DescribeTransformJob", "StopTransformJob"
    name_field, arn_field, status_field = "TransformJobName", "TransformJobArn", "TransformJobStatus"
    states = TRANSFORM_STATES
    produces = ("output_path", "job_arn", "job_name")
    console_path = "transform-jobs"
    log_group = "/aws/sagemaker/TransformJobs"

    def request(self, config: TransformConfig, name: str) -> dict[str, Any]:
        return _clean({
            "TransformJobName": name,
            "ModelName": _check_name("model_name", config.model_name),
            "TransformInput": _clean({
                "DataSource": {"S3DataSource": {"S3DataType": config.s3_data_type, "S3Uri": config.input_path}},
                "ContentType": config.content_type,
                "SplitType": config.split_type,
                "CompressionType": config.compression_type,
            }),
            "TransformOutput": _clean({"S3OutputPath": config.output_path, "Accept": config.accept,
                                       "AssembleWith": config.assemble_with}),
            "TransformResources": {"InstanceType": config.instance_type, "InstanceCount": config.instance_count},
            "MaxPayloadInMB": config.max_payload_mb,
            "MaxConcurrentTransforms": config.max_concurrent_transforms,
            "BatchStrategy": config.batch_strategy,
            "Environment": dict(config.environment),
        })

    def outputs(self, job: dict[str, Any]) -> dict[str, Any]:
        return {"output_path": job.get("TransformOutput", {}).get("S3OutputPath", "")}


class TuningJob(_JobConnector[TuningConfig]):
    name = "SageMaker hyperparameter tuning job"
    task_type = "sagemaker-tuning"
    kind = "tuning job"
    create_op, describe_op = "CreateHyperParameterTuningJob", "DescribeHyperParameterTuningJob"
    stop_op = "StopHyperParameterTuningJob"
    name_field, arn_field = "HyperParameterTuningJobName", "HyperParameterTuningJobArn"
    status_field = "HyperParameterTuningJobStatus"
    states = TUNING_STATES
    produces = ("best_training_job", "best_objective_value", "best_hyperparameters", "job_arn", "job_name")
    name_max = 32  # SageMaker's limit for tuning job names
    console_path = "hyper-tuning-jobs"

    def request(self, config: TuningConfig, name: str) -> dict[str, Any]:
        definition = _training_definition(config.training)
        definition["StaticHyperParameters"] = definition.pop("HyperParameters", {})
        ranges = _clean({
            "IntegerParameterRanges": [{"Name": r.name, "MinValue": str(r.min), "MaxValue": str(r.max),
                                        "ScalingType": r.scaling} for r in config.integer_ranges],
            "ContinuousParameterRanges": [{"Name": r.name, "MinValue": str(r.min), "MaxValue": str(r.max),
                                           "ScalingType": r.scaling} for r in config.continuous_ranges],
            "CategoricalParameterRanges": [{"Name": r.name, "Values": list(r.values)}
                                           for r in config.categorical_ranges],
        })
        return {
            "HyperParameterTuningJobName": name,
            "HyperParameterTuningJobConfig": {
                "Strategy": config.strategy,
                "HyperParameterTuningJobObjective": {"Type": config.objective_type,
                                                     "MetricName": config.objective_metric},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": config.max_training_jobs,
                                   "MaxParallelTrainingJobs": config.max_parallel_training_jobs},
                "ParameterRanges": ranges,
                "TrainingJobEarlyStoppingType": config.early_stopping,
            },
            "TrainingJobDefinition": _clean(definition),
        }

    def outputs(self, job: dict[str, Any]) -> dict[str, Any]:
        best = job.get("BestTrainingJob") or {}
        out: dict[str, Any] = {"best_hyperparameters": dict(best.get("TunedHyperParameters") or {})}
        if best.get("TrainingJobName"):
            out["best_training_job"] = best["TrainingJobName"]
        metric = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
        if "Value" in metric:
            out["best_objective_value"] = float(metric["Value"])
        return out

    def message(self, job: dict[str, Any]) -> str:
        counters = job.get("TrainingJobStatusCounters") or {}
        progress = ", ".join(f"{v} {k}" for k, v in counters.items() if v)
        parts = [job.get("FailureReason", ""), f"training jobs: {progress}" if progress else ""]
        return " — ".join(p for p in parts if p)


# ============================================================================================ endpoints
class EndpointDeployment(_SageMaker, AsyncConnector[EndpointConfig, EndpointRef]):
    """Model, then endpoint config, then endpoint; done when the endpoint is InService.

    Delete (on abort) removes what this task created, endpoint first, and nothing else.
    """

    name = "SageMaker endpoint deployment"
    task_type = "sagemaker-deploy-endpoint"
    produces = ("endpoint_name", "endpoint_arn")

    def create(self, task: TaskContext[EndpointConfig]) -> EndpointRef:
        base = task.job_name(63)
        config = render_config(task, base)
        region = self._region(config)
        endpoint_name = _check_name("endpoint_name", config.endpoint_name or base)
        client = self._client(task, region)
        tags = _tags(task, config)
        aws = _aws()
        ref = EndpointRef(region=region, endpoint_name=endpoint_name, endpoint_config_name=base,
                          model_name=base if config.model is not None else _check_name("model_name",
                                                                                      config.model_name or ""))
        created: list[Literal["model", "endpoint-config", "endpoint"]] = []
        try:
            if config.model is not None:
                spec = config.model
                self._create_or_adopt(client, task, "model", "CreateModel", "DescribeModel", "ModelName", "ModelArn", {
                    "ModelName": base, "ExecutionRoleArn": spec.role_arn, "Tags": tags,
                    "PrimaryContainer": _clean({"Image": spec.image, "ModelDataUrl": spec.model_data_url,
                                                "Environment": dict(spec.environment)}),
                }, field="model")
                created.append("model")
            else:
                try:
                    with aws.aws_errors("DescribeModel", missing_means_gone=True):
                        client.describe_model(ModelName=ref.model_name)
                except JobNotFound:
                    raise InvalidTaskConfig("model_name", f"SageMaker has no model named {ref.model_name!r} in "
                                                          f"{region}") from None
            variant: dict[str, Any] = {"VariantName": config.variant_name, "ModelName": ref.model_name}
            if config.serverless is not None:
                variant["ServerlessConfig"] = {"MemorySizeInMB": config.serverless.memory_size_mb,
                                               "MaxConcurrency": config.serverless.max_concurrency}
            else:
                variant.update(InstanceType=config.instance_type, InitialInstanceCount=config.initial_instance_count)
            self._create_or_adopt(client, task, "endpoint configuration", "CreateEndpointConfig",
                                  "DescribeEndpointConfig", "EndpointConfigName", "EndpointConfigArn",
                                  {"EndpointConfigName": base, "ProductionVariants": [variant], "Tags": tags},
                                  field="instance_type")
            created.append("endpoint-config")
            self._create_or_adopt(client, task, "endpoint", "CreateEndpoint", "DescribeEndpoint", "EndpointName",
                                  "EndpointArn", {"EndpointName": endpoint_name, "EndpointConfigName": base,
                                                  "Tags": tags}, field="endpoint_name")
            created.append("endpoint")
        except (JobRejected, InvalidTaskConfig):
            # The task fails for good and Flyte will not call delete: remove what this call set up.
            self._teardown(client, ref.model_copy(update={"created": created}))
            raise
        return ref.model_copy(update={"created": created})

    def get(self, job: EndpointRef, ctx: CallContext) -> Resource:
        client = self._client(ctx, job.region)
        with _aws().aws_errors("DescribeEndpoint", missing_means_gone=True):
            found = client.describe_endpoint(EndpointName=job.endpoint_name)
        status = found.get("EndpointStatus", "")
        outputs = {"endpoint_name": job.endpoint_name, "endpoint_arn": found.get("EndpointArn", "")}
        links = [_console(job.region, f"endpoints/{job.endpoint_name}"),
                 _cloudwatch(job.region, f"/aws/sagemaker/Endpoints/{job.endpoint_name}", "")]
        return ENDPOINT_STATES.resource(status, found.get("FailureReason", ""), outputs=outputs, log_links=links,
                                        custom_info={"arn": found.get("EndpointArn", "")})

    def delete(self, job: EndpointRef, ctx: CallContext) -> None:
        self._teardown(self._client(ctx, job.region), job)

    def _teardown(self, client: Any, job: EndpointRef) -> None:
        aws = _aws()
        steps = (("endpoint", "DeleteEndpoint", {"EndpointName": job.endpoint_name}),
                 ("endpoint-config", "DeleteEndpointConfig", {"EndpointConfigName": job.endpoint_config_name}),
                 ("model", "DeleteModel", {"ModelName": job.model_name}))
        for kind, operation, args in steps:
            if kind not in job.created:
                continue
            try:
                with aws.aws_errors(operation, missing_means_gone=True):
                    getattr(client, _snake(operation))(**args)
            except JobNotFound:
                continue
            except JobRejected:
                if kind != "endpoint":
                    raise
                # SageMaker may refuse to delete an endpoint that is still being created or updated.
                with aws.aws_errors("DescribeEndpoint", missing_means_gone=True):
                    status = client.describe_endpoint(EndpointName=job.endpoint_name).get("EndpointStatus")
                if status in ENDPOINT_SETTLING:
                    raise TransientServiceError(f"SageMaker cannot delete endpoint {job.endpoint_name} while it is "
                                                f"{status}; the abort will be retried") from None
                raise


# ============================================================================================ sync
class InvokeEndpoint(_SageMaker, SyncConnector[InvokeConfig]):
    name = "SageMaker endpoint invocation"
    task_type = "sagemaker-invoke-endpoint"
    produces = ("response", "response_json", "content_type")

    def do(self, task: TaskContext[InvokeConfig]) -> Resource:
        config = render_config(task, task.job_name(63))
        region = self._region(config)
        endpoint = _check_name("endpoint_name", config.endpoint_name)
        body = _payload(config, task.inputs)
        request = _clean({"EndpointName": endpoint, "Body": body, "ContentType": config.content_type,
                          "Accept": config.accept, "TargetVariant": config.target_variant,
                          "CustomAttributes": config.custom_attributes})
        client = self._client(task, region, "sagemaker-runtime")
        with _aws().aws_errors("InvokeEndpoint"):
            answer = client.invoke_endpoint(**request)
            raw = answer["Body"].read()
        content_type = str(answer.get("ContentType", ""))
        text = raw.decode("utf-8", "replace")
        outputs: dict[str, Any] = {"response": text, "content_type": content_type}
        if "json" in content_type.lower():
            with contextlib.suppress(ValueError):
                outputs["response_json"] = json.loads(text)
        return Resource.succeeded(outputs, log_links=[_console(region, f"endpoints/{endpoint}")],
                                  custom_info={"endpoint": endpoint,
                                               "variant": answer.get("InvokedProductionVariant", "")})


def _payload(config: InvokeConfig, inputs: Mapping[str, Any]) -> bytes:
    if config.payload is not None:
        return config.payload.encode()
    if config.payload_input is not None:
        if config.payload_input not in inputs:
            known = ", ".join(sorted(inputs)) or "none"
            raise InvalidTaskConfig("payload_input", f"the task has no input {config.payload_input!r} "
                                                     f"(inputs: {known})")
        value = inputs[config.payload_input]
    else:
        value = dict(inputs)
    if isinstance(value, (bytes, str)):
        return value.encode() if isinstance(value, str) else value
    if config.content_type == "application/json":
        return json.dumps(value, default=str).encode()
    rows = value if isinstance(value, list) and value and all(isinstance(r, (list, tuple)) for r in value) else [value]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([as_text(c) for c in row] if isinstance(row, (list, tuple)) else [as_text(row)])
    return out.getvalue().encode()


class CreateModel(_SageMaker, SyncConnector[ModelConfig]):
    name = "SageMaker model"
    task_type = "sagemaker-create-model"
    produces = ("model_name", "model_arn")

    def do(self, task: TaskContext[ModelConfig]) -> Resource:
        base = task.job_name(63)
        config = render_config(task, base)
        region = self._region(config)
        name = _check_name("model_name", config.model_name or base)
        for key in config.request_overrides:
            if key in ("ModelName", "Tags"):
                raise InvalidTaskConfig(f"request_overrides.{key}", "set by the connector")
        request = _merge({
            "ModelName": name, "ExecutionRoleArn": config.role_arn,
            "PrimaryContainer": _clean({"Image": config.image, "ModelDataUrl": config.model_data_url,
                                        "Environment": dict(config.environment)}),
        }, config.request_overrides)
        request["Tags"] = _tags(task, config)
        client = self._client(task, region)
        arn = self._create_or_adopt(client, task, "model", "CreateModel", "DescribeModel", "ModelName", "ModelArn",
                                    request)
        return Resource.succeeded({"model_name": name, "model_arn": arn},
                                  log_links=[_console(region, f"models/{name}")], custom_info={"arn": arn})


def __getattr__(name: str) -> Any:
    # CONNECTORS also serves (or refuses, with the reason) flytekit's task types: flytekit_compat.py subclasses the
    # connectors above. Built on first use, so that either module may be imported first.
    if name == "CONNECTORS":
        from flyteconnectors.sagemaker import flytekit_compat

        globals()[name] = (TrainingJob, ProcessingJob, TransformJob, TuningJob, EndpointDeployment, InvokeEndpoint,
                           CreateModel, *flytekit_compat.CONNECTORS)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
