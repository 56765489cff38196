"""A complete example connector and its fake: the reference for authors and the kit's own test subject.

The "jobs" service is a tiny HTTP/JSON API:

* ``POST /v1/jobs {"name", "payload"}`` starts a job (409 if the name exists);
* ``GET /v1/jobs/by-name/<name>`` and ``GET /v1/jobs/<id>`` report it;
* ``POST /v1/jobs/<id>/cancel`` cancels it.

Every request needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from pydantic import Field

from flyteconnectors.core import (
    AsyncConnector,
    CallContext,
    ConnectorSettings,
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
from flyteconnectors.core.testing.fake import FakeHTTPError, FakeRequest, FakeService, route


# ============================================================================================ the connector
class ExampleConfig(TaskConfig):
    payload: str = ""
    priority: int = 1


class ExampleMeta(JobMeta):
    #: The service's job id goes into URL paths: anything but its id format is refused as a malformed handle.
    job_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class ExampleSettings(ConnectorSettings):
    endpoint: str = "http://127.0.0.1:8765"


STATES = StateMap(
    {
        "QUEUED": Phase.QUEUED,
        "RUNNING": Phase.RUNNING,
        "CANCELLING": Phase.RUNNING,
        "SUCCEEDED": Phase.SUCCEEDED,
        "FAILED": Phase.FAILED,
        "CANCELLED": Phase.ABORTED,
    },
    service="example",
)


class JobsClient:
    """A deliberately small blocking HTTP client (real connectors use the service's official SDK)."""

    def __init__(self, endpoint: str, token: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = 10) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.endpoint + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout or 10) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            detail = _error_text(err)
            if err.code == 404:
                raise JobNotFound(detail) from None
            if err.code == 409:
                raise FileExistsError(detail) from None
            if err.code in (429, 500, 502, 503, 504):
                raise TransientServiceError(f"HTTP {err.code}: {detail}") from None
            raise JobRejected(f"HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise TransientServiceError(f"cannot reach {self.endpoint}: {getattr(err, 'reason', err)}") from None

    def close(self) -> None:
        """Nothing pooled; present so the ClientCache can close it like a real SDK client."""


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(err.read()).get("error", err.reason))
    except Exception:
        return str(err.reason)


class ExampleJob(AsyncConnector[ExampleConfig, ExampleMeta]):
    name = "Example Jobs"
    task_type = "example-job"
    settings_model = ExampleSettings
    secret_names = ("example_token",)

    def _client(self, ctx: CallContext) -> JobsClient:
        token = ctx.secrets.require("example_token")
        endpoint = self.settings.endpoint
        return self.clients.get((endpoint, fingerprint(token)), lambda: JobsClient(endpoint, token))

    def create(self, task: TaskContext[ExampleConfig]) -> ExampleMeta:
        client = self._client(task)
        name = task.idempotency_key
        try:
            job = client.call("POST", "/v1/jobs", {"name": name, "payload": task.config.payload,
                                                    "priority": task.config.priority}, task.timeout(10))
        except FileExistsError:  # a retried create: adopt the job the first call started
            job = client.call("GET", f"/v1/jobs/by-name/{name}", timeout=task.timeout(10))
        return ExampleMeta(job_id=job["id"])

    def get(self, job: ExampleMeta, ctx: CallContext) -> Resource:
        status = self._client(ctx).call("GET", f"/v1/jobs/{job.job_id}", timeout=ctx.timeout(10))
        link = LogLink("Example job", f"{self.settings.endpoint}/ui/jobs/{job.job_id}")
        return STATES.resource(status["state"], status.get("message", ""),
                               outputs={"result": status.get("result", "")}, log_links=[link])

    def delete(self, job: ExampleMeta, ctx: CallContext) -> None:
        self._client(ctx).call("POST", f"/v1/jobs/{job.job_id}/cancel", {}, timeout=ctx.timeout(10))


class ExampleEchoConfig(TaskConfig):
    prefix: str = ""


class ExampleEcho(SyncConnector[ExampleEchoConfig]):
    name = "Example Echo"
    task_type = "example-echo"
    settings_model = ExampleSettings
    secret_names = ("example_token",)

    def do(self, task: TaskContext[ExampleEchoConfig]) -> Resource:
        token = task.secrets.require("example_token")
        endpoint = self.settings.endpoint
        client = self.clients.get((endpoint, fingerprint(token)), lambda: JobsClient(endpoint, token))
        answer = client.call("POST", "/v1/echo", {"text": task.config.prefix + str(task.inputs.get("text", ""))},
                             timeout=task.timeout(10))
        return Resource.succeeded({"out": answer["text"]})


CONNECTORS = (ExampleJob, ExampleEcho)


# ============================================================================================ the fake
class ExampleFake(FakeService):
    name = "example"
    default_script = ("QUEUED", "RUNNING", "SUCCEEDED")

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.jobs: dict[str, dict[str, Any]] = {}

    def reset_state(self) -> None:
        self.jobs.clear()

    def _auth(self, request: FakeRequest) -> None:
        header = request.header("authorization") or ""
        if not header.startswith("Bearer ") or len(header) < 10:
            raise FakeHTTPError(401, {"error": "missing or bad bearer token"})

    def _view(self, job: dict[str, Any], advance: bool) -> dict[str, Any]:
        script = self.scripts[job["id"]]
        step = script.advance() if advance else script.current
        state, _, message = str(step).partition(":")
        return {"id": job["id"], "name": job["name"], "state": state, "message": message,
                "result": f"processed {job['payload']}" if state == "SUCCEEDED" else ""}

    @route("POST", r"/v1/jobs")
    def create(self, request: FakeRequest) -> Any:
        self._auth(request)
        body = request.json()
        with self.lock:
            if any(j["name"] == body["name"] for j in self.jobs.values()):
                raise FakeHTTPError(409, {"error": f"a job named {body['name']} already exists"})
            job_id = f"job-{self.next_id()}"
            self.jobs[job_id] = {"id": job_id, "name": body["name"], "payload": body.get("payload", ""),
                                 "cancelled": 0}
            self.new_job_script(job_id)
            return self._view(self.jobs[job_id], advance=False)

    @route("GET", r"/v1/jobs/by-name/(?P<name>[^/]+)")
    def by_name(self, request: FakeRequest, name: str) -> Any:
        self._auth(request)
        with self.lock:
            for job in self.jobs.values():
                if job["name"] == name:
                    return self._view(job, advance=False)
        raise FakeHTTPError(404, {"error": f"no job named {name}"})

    @route("GET", r"/v1/jobs/(?P<job_id>[^/]+)")
    def status(self, request: FakeRequest, job_id: str) -> Any:
        self._auth(request)
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise FakeHTTPError(404, {"error": f"no job {job_id}"})
            return self._view(job, advance=True)

    @route("POST", r"/v1/jobs/(?P<job_id>[^/]+)/cancel")
    def cancel(self, request: FakeRequest, job_id: str) -> Any:
        self._auth(request)
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise FakeHTTPError(404, {"error": f"no job {job_id}"})
            job["cancelled"] += 1
            script = self.scripts[job_id]
            if str(script.current).split(":")[0] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
                script.jump_to_end("CANCELLED")
            return {"ok": True}

    @route("POST", r"/v1/echo")
    def echo(self, request: FakeRequest) -> Any:
        self._auth(request)
        return {"text": request.json().get("text", "")}
