"""A toy hosted service for the local-execution tests: its connectors and its fake, wired like a real package.

The connectors read their endpoint from settings (``FLYTECONNECTORS_TOY_ENDPOINT`` when registered as package
``toy``) and a bearer token from the secret ``toy_token``, so a local run reaches the fake the same way a host
would. Job behaviour is scripted by the task config's ``steps``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from typing import Any

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
from flyteconnectors.core.testing.fake import FakeHTTPError, FakeRequest, FakeService, JobScript, route


# ============================================================================================ connectors
class ToySettings(ConnectorSettings):
    endpoint: str = "http://127.0.0.1:9"


class ToyJobConfig(TaskConfig):
    payload: str = ""
    steps: list[str] = ["RUNNING", "SUCCEEDED"]


class ToyQueryConfig(TaskConfig):
    sql_field = "query"
    query: str
    warehouse: str = "default"
    steps: list[str] = ["SUCCEEDED"]


class ToyRunConfig(TaskConfig):
    cluster: str = "small"


class ToyEchoConfig(TaskConfig):
    prefix: str = ""


class ToyMeta(JobMeta):
    job_id: str


STATES = StateMap({"QUEUED": Phase.QUEUED, "RUNNING": Phase.RUNNING, "SUCCEEDED": Phase.SUCCEEDED,
                   "FAILED": Phase.FAILED, "CANCELLED": Phase.ABORTED}, service="toy")


class ToyClient:
    def __init__(self, endpoint: str, token: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.endpoint + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            if err.code == 404:
                raise JobNotFound(f"HTTP 404 {path}") from None
            if err.code >= 500:
                raise TransientServiceError(f"HTTP {err.code}") from None
            raise JobRejected(f"HTTP {err.code}: {err.read().decode(errors='replace')}") from None
        except (urllib.error.URLError, ConnectionError) as err:
            raise TransientServiceError(f"cannot reach {self.endpoint}: {err}") from None

    def close(self) -> None:
        pass


class _ToyBase(AsyncConnector[Any, ToyMeta]):
    settings_model = ToySettings
    secret_names = ("toy_token",)

    def _client(self, ctx: CallContext) -> ToyClient:
        token = ctx.secrets.require("toy_token")
        endpoint = self.settings.endpoint
        return self.clients.get((endpoint, fingerprint(token)), lambda: ToyClient(endpoint, token))

    def _start(self, task: TaskContext[Any], body: dict[str, Any]) -> ToyMeta:
        job = self._client(task).call("POST", "/v1/jobs", {"name": task.idempotency_key, **body})
        return ToyMeta(job_id=job["id"])

    def get(self, job: ToyMeta, ctx: CallContext) -> Resource:
        status = self._client(ctx).call("GET", f"/v1/jobs/{job.job_id}")
        outputs = {"result": status["result"]} if status.get("result") is not None else None
        return STATES.resource(status["state"], status.get("message", ""), outputs=outputs,
                               log_links=[LogLink("Toy console", f"{self.settings.endpoint}/ui/{job.job_id}")])

    def delete(self, job: ToyMeta, ctx: CallContext) -> None:
        self._client(ctx).call("POST", f"/v1/jobs/{job.job_id}/cancel", {})


class ToyJob(_ToyBase):
    name = "Toy Jobs"
    task_type = "toy-job"
    config_model = ToyJobConfig

    def create(self, task: TaskContext[ToyJobConfig]) -> ToyMeta:
        args = ",".join(f"{k}={v}" for k, v in sorted(task.inputs.items()))
        return self._start(task, {"steps": task.config.steps, "result": f"{task.config.payload}({args})"})


class ToyQuery(_ToyBase):
    name = "Toy Warehouse"
    task_type = "toy-query"
    config_model = ToyQueryConfig

    def create(self, task: TaskContext[ToyQueryConfig]) -> ToyMeta:
        query = re.sub(r"{{\s*\.inputs\.(\w+)\s*}}", lambda m: str(task.inputs[m.group(1)]), task.config.query)
        return self._start(task, {"steps": task.config.steps, "result": f"{task.config.warehouse}: {query}"})


class ToyRun(_ToyBase):
    """Runs the task's container at the service, like Databricks: the function body writes outputs.pb."""

    name = "Toy Compute"
    task_type = "toy-run"
    config_model = ToyRunConfig

    def create(self, task: TaskContext[ToyRunConfig]) -> ToyMeta:
        return self._start(task, {"command": list(task.container_args), "cluster": task.config.cluster})


class ToyEcho(SyncConnector[ToyEchoConfig]):
    name = "Toy Echo"
    task_type = "toy-echo"
    settings_model = ToySettings
    secret_names = ("toy_token",)

    def do(self, task: TaskContext[ToyEchoConfig]) -> Resource:
        token = task.secrets.require("toy_token")
        client = self.clients.get((self.settings.endpoint, fingerprint(token)),
                                  lambda: ToyClient(self.settings.endpoint, token))
        answer = client.call("POST", "/v1/echo", {"text": task.config.prefix + str(task.inputs.get("text", ""))})
        return Resource.succeeded({"out": answer["text"]})


CONNECTORS = (ToyJob, ToyQuery, ToyRun, ToyEcho)


# ============================================================================================ the fake
class ToyFake(FakeService):
    """Jobs follow their ``steps``; ``command`` jobs run the command (pyflyte-execute) as a subprocess."""

    name = "toy"

    def __init__(self, *, cwd: str | None = None, env: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.cwd = cwd
        self.env = env
        self.jobs: dict[str, dict[str, Any]] = {}

    def reset_state(self) -> None:
        for job in self.jobs.values():
            if job.get("process") is not None and job["process"].poll() is None:
                job["process"].kill()
        self.jobs.clear()

    def _auth(self, request: FakeRequest) -> None:
        if not (request.header("authorization") or "").startswith("Bearer "):
            raise FakeHTTPError(401, {"error": "missing bearer token"})

    def cancelled(self) -> list[str]:
        """Ids of the jobs a cancel request reached."""
        return [job_id for job_id, job in self.jobs.items() if job["cancelled"]]

    @route("POST", r"^/v1/jobs$")
    def create(self, request: FakeRequest) -> Any:
        self._auth(request)
        body = request.json()
        with self.lock:
            for job in self.jobs.values():
                if job["name"] == body["name"]:
                    return {"id": job["id"]}
            job_id = f"job-{self.next_id()}"
            job = {"id": job_id, "name": body["name"], "result": body.get("result"), "cancelled": False,
                   "process": None}
            if body.get("command"):
                job["process"] = subprocess.Popen(body["command"], cwd=self.cwd, env={**os.environ, **(self.env or {})},
                                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.scripts[job_id] = JobScript(body.get("steps") or ["RUNNING"])
            self.jobs[job_id] = job
            return {"id": job_id}

    @route("GET", r"^/v1/jobs/(?P<job_id>[^/]+)$")
    def status(self, request: FakeRequest, job_id: str) -> Any:
        self._auth(request)
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise FakeHTTPError(404, {"error": f"no job {job_id}"})
            process = job["process"]
            if process is not None:
                code = process.poll()
                if job["cancelled"]:
                    return {"state": "CANCELLED"}
                if code is None:
                    return {"state": "RUNNING", "message": f"running on {job_id}"}
                if code == 0:
                    return {"state": "SUCCEEDED"}
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                return {"state": "FAILED", "message": f"exit code {code}: {output[-2000:]}"}
            state = self.scripts[job_id].advance()
            return {"state": state, "result": job["result"] if state == "SUCCEEDED" else None}

    @route("POST", r"^/v1/jobs/(?P<job_id>[^/]+)/cancel$")
    def cancel(self, request: FakeRequest, job_id: str) -> Any:
        self._auth(request)
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise FakeHTTPError(404, {"error": f"no job {job_id}"})
            job["cancelled"] = True
            if job["process"] is not None and job["process"].poll() is None:
                job["process"].kill()
            self.scripts[job_id].jump_to_end("CANCELLED")
            return {"ok": True}

    @route("POST", r"^/v1/echo$")
    def echo(self, request: FakeRequest) -> Any:
        self._auth(request)
        return {"text": request.json().get("text", "")}
