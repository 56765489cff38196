"""A local fake of SageMaker: moto's server with what moto lacks, on the core's fake-service toolkit.

boto3 talks to it over its real wire protocol (SageMaker is ``POST /`` with ``X-Amz-Target: SageMaker.<Op>``
and a JSON body; the runtime is ``POST /endpoints/<name>/invocations``). Everything moto implements well is
forwarded to moto's WSGI app in-process. This class adds what moto 5 lacks (``shared/reference/cloud-fakes.md``
§1):

* ``StopTrainingJob``, ``StopTransformJob`` and ``StopHyperParameterTuningJob`` (moto answers 500), and
  ``StopProcessingJob`` through the same logic: the next describe says ``Stopping``, the one after ``Stopped``;
* scripted status transitions: moto reports every job ``Completed`` and every endpoint ``InService`` at once.
  Here each describe of a job or endpoint walks one step of its script (the toolkit's ``JobScript``);
* rejection of duplicate names, with the errors SageMaker sends (moto accepts a second job silently);
* ``InvokeEndpoint`` only on an endpoint that exists and is ``InService`` (moto answers any name), echoing the
  request body unless a response was set with :meth:`SageMakerFake.respond`.

Scripts are keyed ``<kind>/<name>``: ``training/fc-...``, ``processing/...``, ``transform/...``, ``tuning/...``,
``endpoint/...``. A step is a status string or a dict: ``{"status": "Failed", "failure_reason": "OOM",
"secondary_status": "Training", "message": "..."}``; other keys (CamelCase) are merged into the describe answer
as they are, e.g. ``{"status": "Completed", "BestTrainingJob": {...}}``.

Each fake instance keeps its resources in its own moto account (``x-moto-account-id``), so fakes in one process
do not see each other's jobs.

Control API (besides the toolkit's ``/_fake/{health,requests,reset,faults,latency,script}``):
``POST /_fake/sagemaker/respond {"endpoint", "body", "content_type", "status"}`` sets an endpoint's answer, and
``GET /_fake/sagemaker/stopped`` lists the jobs that received a stop.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any

from flyteconnectors.core.testing.fake import FakeHTTPError, FakeRequest, FakeResponse, FakeService, JobScript, route

JSON_TYPE = "application/x-amz-json-1.1"
_ACCOUNTS = itertools.count(1)


@dataclass(frozen=True)
class Kind:
    """One SageMaker resource type as the fake handles it."""

    key: str
    label: str  # as SageMaker writes it in messages
    arn_type: str
    name_field: str
    create: str
    describe: str
    stop: str | None = None
    status_field: str | None = None
    duplicate_code: str = "ResourceInUse"


KINDS: dict[str, Kind] = {
    k.key: k
    for k in (
        Kind("training", "training job", "training-job", "TrainingJobName", "CreateTrainingJob",
             "DescribeTrainingJob", "StopTrainingJob", "TrainingJobStatus"),
        Kind("processing", "processing job", "processing-job", "ProcessingJobName", "CreateProcessingJob",
             "DescribeProcessingJob", "StopProcessingJob", "ProcessingJobStatus"),
        Kind("transform", "transform job", "transform-job", "TransformJobName", "CreateTransformJob",
             "DescribeTransformJob", "StopTransformJob", "TransformJobStatus"),
        Kind("tuning", "hyperparameter tuning job", "hyper-parameter-tuning-job", "HyperParameterTuningJobName",
             "CreateHyperParameterTuningJob", "DescribeHyperParameterTuningJob", "StopHyperParameterTuningJob",
             "HyperParameterTuningJobStatus"),
        Kind("endpoint", "endpoint", "endpoint", "EndpointName", "CreateEndpoint", "DescribeEndpoint",
             status_field="EndpointStatus", duplicate_code="ValidationException"),
        Kind("endpoint-config", "endpoint configuration", "endpoint-config", "EndpointConfigName",
             "CreateEndpointConfig", "DescribeEndpointConfig", duplicate_code="ValidationException"),
        Kind("model", "model", "model", "ModelName", "CreateModel", "DescribeModel",
             duplicate_code="ValidationException"),
    )
}
_BY_ACTION = {getattr(k, attr): (k, attr) for k in KINDS.values() for attr in ("create", "describe", "stop")
              if getattr(k, attr)}

#: What a training job's SecondaryStatus says when a script step names only the primary status.
_SECONDARY = {"InProgress": "Training", "Completed": "Completed", "Failed": "Failed", "Stopping": "Stopping",
              "Stopped": "Stopped"}
_SECONDARY_MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "The training job was stopped",
}
_FINISHED = {"Completed", "Failed", "Stopped"}


class SageMakerFake(FakeService):
    """SageMaker and SageMaker Runtime on 127.0.0.1, for boto3 (``endpoint_url=fake.url``)."""

    name = "sagemaker"
    #: A new job reports InProgress once, then Completed.
    default_script: tuple[Any, ...] = ("InProgress", "Completed")
    #: A new endpoint reports Creating once, then InService.
    endpoint_script: tuple[Any, ...] = ("Creating", "InService")

    def __init__(self, *, seed: int = 0, account_id: str | None = None) -> None:
        super().__init__(seed=seed)
        self.account_id = account_id or f"{100000000000 + next(_ACCOUNTS) * 1111:012d}"
        self._moto_lock = threading.RLock()
        self._app: Any = None
        self._reported: dict[str, Any] = {}
        self._invocations: dict[str, FakeResponse] = {}
        #: ``<kind>/<name>`` of every job that received a stop request.
        self.stopped: set[str] = set()

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> SageMakerFake:
        self._warm_up()
        super().serve(host, port)
        # The toolkit's handler writes the headers and the body in two sends; with Nagle's algorithm on, the
        # body waits for the client's delayed ACK (~40 ms per call). Core change requested: set this there.
        if self._server is not None:
            self._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        return self

    def _warm_up(self) -> None:
        """Import moto and build its app now, not inside the first request a test times."""
        with self._moto_lock:
            self._call("ListModels", {}, "us-east-1")

    def fault_body(self, status: int) -> Any:
        """Injected errors in the JSON protocol's shape, so boto3 reads a code as it would from SageMaker."""
        code = {400: "ValidationException", 429: "ThrottlingException", 503: "ServiceUnavailable"}.get(
            status, "InternalFailure" if status >= 500 else "ValidationException")
        return {"__type": code, "message": f"injected fault (HTTP {status})"}

    # ================================================================= test helpers
    def respond(self, endpoint_name: str, body: Any, *, content_type: str = "application/json",
                status: int = 200, error_code: str = "ModelError") -> None:
        """Set what InvokeEndpoint answers for this endpoint (default: it echoes the request).

        ``body`` is bytes, text, or JSON-able. A status >= 400 answers a runtime error (``error_code``, with
        ``body`` as the message), as SageMaker does when the model container fails (424 ModelError).
        """
        if status >= 400:
            response = FakeResponse(status, {"__type": error_code, "message": str(body)},
                                    {"x-amzn-ErrorType": error_code, "Content-Type": "application/json"})
        else:
            payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
            response = FakeResponse(status, payload.encode() if isinstance(payload, str) else payload,
                                    {"Content-Type": content_type})
        with self.lock:
            self._invocations[endpoint_name] = response

    def status_of(self, kind: str, name: str) -> Any:
        """The status the last describe of ``kind/name`` reported (the first step if never described)."""
        with self.lock:
            key = f"{kind}/{name}"
            if key in self._reported:
                return _status(self._reported[key])
            script = self.scripts.get(key)
            return _status(script.steps[0]) if script else None

    def names(self, kind: str, region: str = "us-east-1") -> list[str]:
        """Names of the resources of ``kind`` that exist in moto (for counting remote jobs in tests)."""
        backend = self._backend(region)
        store = {
            "training": "training_jobs", "processing": "processing_jobs", "transform": "transform_jobs",
            "tuning": "hyper_parameter_tuning_jobs", "endpoint": "endpoints", "endpoint-config": "endpoint_configs",
            "model": "_models",
        }[kind]
        with self._moto_lock:
            return sorted(getattr(backend, store))

    def _control(self, request: FakeRequest) -> FakeResponse:
        # POST /_fake/sagemaker/respond {"endpoint": "e", "body": ..., "content_type": ..., "status": 200}
        if request.method == "POST" and request.path.rstrip("/") == "/_fake/sagemaker/respond":
            spec = request.json()
            self.respond(spec["endpoint"], spec.get("body", ""), content_type=spec.get("content_type",
                                                                                        "application/json"),
                         status=int(spec.get("status", 200)), error_code=spec.get("error_code", "ModelError"))
            return FakeResponse(200, {"ok": True})
        if request.method == "GET" and request.path.rstrip("/") == "/_fake/sagemaker/stopped":
            return FakeResponse(200, sorted(self.stopped))
        return super()._control(request)

    def reset_state(self) -> None:
        from moto.sagemaker.models import sagemaker_backends

        with self._moto_lock:
            sagemaker_backends[self.account_id].reset()
        self._reported.clear()
        self._invocations.clear()
        self.stopped.clear()

    # ================================================================= SageMaker API (POST / + X-Amz-Target)
    @route("POST", "/")
    def api(self, request: FakeRequest) -> Any:
        target = request.header("x-amz-target") or ""
        action = target.split(".", 1)[-1]
        found = _BY_ACTION.get(action)
        if found is None:
            return self._forward(request)
        kind, what = found
        body = request.json() or {}
        name = str(body.get(kind.name_field, ""))
        if what == "create":
            return self._create(request, kind, name)
        if what == "describe":
            return self._describe(request, kind, name)
        return self._stop(request, kind, name)

    def _create(self, request: FakeRequest, kind: Kind, name: str) -> FakeResponse:
        region = _region(request)
        with self._moto_lock:
            existing = self._call(kind.describe, {kind.name_field: name}, region)
            if existing.status == 200:
                raise _error(kind.duplicate_code, _duplicate_message(kind, self._arn(kind, name, region)))
            response = self._forward(request)
        if response.status == 200 and kind.status_field:
            key = f"{kind.key}/{name}"
            with self.lock:
                self._reported.pop(key, None)
                if kind.key == "endpoint" and not self._queued_scripts:
                    self.scripts[key] = JobScript(self.endpoint_script)
                else:
                    self.new_job_script(key)
        return response

    def _describe(self, request: FakeRequest, kind: Kind, name: str) -> FakeResponse:
        response = self._forward(request)
        key = f"{kind.key}/{name}"
        if response.status != 200 or not kind.status_field:
            return response
        with self.lock:
            script = self.scripts.get(key)
            if script is None:
                return response
            step = script.advance()
            self._reported[key] = step
        data = json.loads(response.body)
        _overlay(kind, data, step)
        return FakeResponse(200, json.dumps(data, default=str).encode(), {"Content-Type": JSON_TYPE})

    def _stop(self, request: FakeRequest, kind: Kind, name: str) -> Any:
        region = _region(request)
        with self._moto_lock:
            found = self._call(kind.describe, {kind.name_field: name}, region)
        if found.status != 200:
            raise _error("ResourceNotFound", f"Could not find {kind.label} '{self._arn(kind, name, region)}'.")
        key = f"{kind.key}/{name}"
        with self.lock:
            script = self.scripts.get(key)
            if script is None:  # created outside the fake's scripting: moto says Completed
                script = self.scripts[key] = JobScript(["Completed"])
            now = _status(self._reported.get(key, script.steps[0]))
            if now in _FINISHED:
                raise _error("ValidationException",
                             f"The request was rejected because the {kind.label} is in status {now}.")
            self.stopped.add(key)
            if now != "Stopping" and _status(script.current) not in ("Stopping", "Stopped"):
                script.steps = [*script.steps[: script.index], "Stopping", "Stopped"]
        return FakeResponse(200, b"{}", {"Content-Type": JSON_TYPE})

    # ================================================================= SageMaker Runtime
    @route("POST", r"/endpoints/(?P<endpoint>[^/]+)/invocations")
    def invoke(self, request: FakeRequest, endpoint: str) -> FakeResponse:
        region = _region(request)
        with self._moto_lock:
            found = self._call("DescribeEndpoint", {"EndpointName": endpoint}, region)
        status = self.status_of("endpoint", endpoint) if found.status == 200 else None
        if found.status != 200:
            raise _runtime_error(400, "ValidationError", f"Endpoint {endpoint} of account {self.account_id} not found.")
        if status not in (None, "InService"):
            raise _runtime_error(
                400, "ValidationError",
                f"Endpoint {endpoint} of account {self.account_id} is not in service (status {status}).",
            )
        with self.lock:
            scripted = self._invocations.get(endpoint)
        if scripted is not None:
            return scripted
        content_type = request.header("content-type") or "application/octet-stream"
        return FakeResponse(200, request.body, {"Content-Type": content_type,
                                                "x-Amzn-Invoked-Production-Variant": "AllTraffic"})

    # ================================================================= moto
    def fallback(self, request: FakeRequest) -> Any:
        return self._forward(request)

    def _moto(self) -> Any:
        if self._app is None:
            from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
            from werkzeug.test import Client

            self._app = Client(DomainDispatcherApplication(create_backend_app))
        return self._app

    def _backend(self, region: str) -> Any:
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[self.account_id][region]

    def _forward(self, request: FakeRequest) -> FakeResponse:
        headers = {k: v for k, v in request.headers.items() if k not in ("content-length", "host")}
        headers["x-moto-account-id"] = self.account_id
        query = "&".join(f"{k}={v}" for k, v in request.query.items())
        with self._moto_lock:
            answer = self._moto().open(request.path + (f"?{query}" if query else ""), method=request.method,
                                       headers=headers, data=request.body)
            payload = answer.get_data()
        passed = {k: v for k, v in answer.headers.items() if k.lower() not in ("content-length", "server", "status")}
        return FakeResponse(answer.status_code, payload, passed)

    def _call(self, action: str, payload: dict[str, Any], region: str) -> FakeResponse:
        """A SageMaker call of the fake's own (not journaled), straight to moto."""
        headers = {
            "x-amz-target": f"SageMaker.{action}",
            "content-type": JSON_TYPE,
            "authorization": f"AWS4-HMAC-SHA256 Credential=FAKE/20240101/{region}/sagemaker/aws4_request, "
                             "SignedHeaders=host, Signature=0",
        }
        return self._forward(FakeRequest("POST", "/", {}, headers, json.dumps(payload).encode()))

    def _arn(self, kind: Kind, name: str, region: str) -> str:
        return f"arn:aws:sagemaker:{region}:{self.account_id}:{kind.arn_type}/{name.lower()}"


def _status(step: Any) -> Any:
    return step.get("status") if isinstance(step, dict) else step


def _overlay(kind: Kind, data: dict[str, Any], step: Any) -> None:
    spec = dict(step) if isinstance(step, dict) else {"status": step}
    status = spec.pop("status", None)
    if status is not None and kind.status_field:
        data[kind.status_field] = status
    secondary = spec.pop("secondary_status", None)
    if kind.key == "training" and status is not None:
        data["SecondaryStatus"] = secondary = secondary or _SECONDARY.get(status, status)
        message = spec.pop("message", None) or _SECONDARY_MESSAGES.get(secondary, "")
        data["SecondaryStatusTransitions"] = [{"Status": secondary, "StatusMessage": message,
                                               "StartTime": data.get("CreationTime")}]
    reason = spec.pop("failure_reason", None)
    if reason is not None:
        data["FailureReason"] = reason
    elif status not in ("Failed", "UpdateRollbackFailed", "DeleteFailed"):
        data.pop("FailureReason", None)
    exit_message = spec.pop("message", None)
    if exit_message is not None and kind.key == "processing":
        data["ExitMessage"] = exit_message
    data.update(spec)


def _region(request: FakeRequest) -> str:
    auth = request.header("authorization") or ""
    try:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
        return scope.split("/")[2]
    except IndexError:
        return "us-east-1"


def _error(code: str, message: str) -> FakeHTTPError:
    return FakeHTTPError(400, {"__type": code, "message": message},
                         {"x-amzn-ErrorType": code, "Content-Type": JSON_TYPE})


def _runtime_error(status: int, code: str, message: str) -> FakeHTTPError:
    return FakeHTTPError(status, {"__type": code, "message": message},
                         {"x-amzn-ErrorType": code, "Content-Type": "application/json"})


def _duplicate_message(kind: Kind, arn: str) -> str:
    # The texts SageMaker answers: ResourceInUse for jobs, ValidationException for models and endpoints.
    if kind.duplicate_code == "ResourceInUse":
        label = "Tuning job" if kind.key == "tuning" else kind.label.capitalize()
        return (f"{label} names must be unique within an AWS account and region, and a {kind.label} with this "
                f"name already exists ({arn})")
    return f'Cannot create already existing {kind.label} "{arn}".'
