"""The {{Name}} connector: host-side config, job metadata, state map and create / get / delete.

Importing this module must stay cheap: import the service's SDK inside functions, never at module level.
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
    TaskConfig,
    TaskContext,
    TransientServiceError,
    fingerprint,
)


class {{Name}}Config(TaskConfig):
    """What a task may ask for."""

    payload: str = ""
    priority: int = 1


class {{Name}}Meta(JobMeta):
    """Just enough to find the job again; never a secret."""

    #: resource_meta is untrusted input (unless signed): check each id against the service's own format, so an
    #: altered handle is refused clearly before it reaches a URL (the contract suite sends junk in every field).
    job_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class {{Name}}Settings(ConnectorSettings):
    """Chosen by whoever runs the host: FLYTECONNECTORS_{{NAME}}_ENDPOINT=..."""

    endpoint: str = "https://api.{{name}}.example.com"


STATES = StateMap(
    {
        "QUEUED": Phase.QUEUED,
        "RUNNING": Phase.RUNNING,
        "CANCELLING": Phase.RUNNING,
        "SUCCEEDED": Phase.SUCCEEDED,
        "FAILED": Phase.FAILED,
        "CANCELLED": Phase.ABORTED,
    },
    service="{{name}}",
)


class {{Name}}Client:
    """A small blocking HTTP client. Replace it with the service's official SDK, imported lazily."""

    def __init__(self, endpoint: str, token: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 10) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.endpoint + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
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
        """Nothing pooled; the ClientCache closes clients when the host drains."""


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(err.read()).get("error", err.reason))
    except Exception:
        return str(err.reason)


class {{Name}}Job(AsyncConnector[{{Name}}Config, {{Name}}Meta]):
    name = "{{Name}} Jobs"
    task_type = "{{name}}-job"
    settings_model = {{Name}}Settings
    secret_names = ("{{name}}_token",)

    def _client(self, ctx: CallContext) -> {{Name}}Client:
        token = ctx.secrets.require("{{name}}_token")
        endpoint = self.settings.endpoint
        return self.clients.get((endpoint, fingerprint(token)), lambda: {{Name}}Client(endpoint, token))

    def create(self, task: TaskContext[{{Name}}Config]) -> {{Name}}Meta:
        client = self._client(task)
        name = task.idempotency_key
        try:
            job = client.call("POST", "/v1/jobs", {"name": name, "payload": task.config.payload,
                                                    "priority": task.config.priority}, task.timeout(10))
        except FileExistsError:  # create is called at least once per attempt: adopt the job the first call started
            job = client.call("GET", f"/v1/jobs/by-name/{name}", timeout=task.timeout(10))
        return {{Name}}Meta(job_id=job["id"])

    def get(self, job: {{Name}}Meta, ctx: CallContext) -> Resource:
        status = self._client(ctx).call("GET", f"/v1/jobs/{job.job_id}", timeout=ctx.timeout(10))
        link = LogLink("{{Name}} job", f"{self.settings.endpoint}/ui/jobs/{job.job_id}")
        return STATES.resource(status["state"], status.get("message", ""),
                               outputs={"result": status.get("result", "")}, log_links=[link])

    def delete(self, job: {{Name}}Meta, ctx: CallContext) -> None:
        self._client(ctx).call("POST", f"/v1/jobs/{job.job_id}/cancel", {}, timeout=ctx.timeout(10))


CONNECTORS = ({{Name}}Job,)
