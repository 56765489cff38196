"""A local fake of {{Name}}: its HTTP/JSON API on 127.0.0.1, with the core's journal, faults and job scripts.

Run it with ``flyteconnectors fake {{name}}``. Steps of a job script are ``"STATE"`` or ``"STATE:message"``.
"""

from __future__ import annotations

from typing import Any

from flyteconnectors.core.testing.fake import FakeHTTPError, FakeRequest, FakeService, route

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


class {{Name}}Fake(FakeService):
    name = "{{name}}"
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

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise FakeHTTPError(404, {"error": f"no job {job_id}"})
        return job

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
            return self._view(self._job(job_id), advance=True)

    @route("POST", r"/v1/jobs/(?P<job_id>[^/]+)/cancel")
    def cancel(self, request: FakeRequest, job_id: str) -> Any:
        self._auth(request)
        with self.lock:
            job = self._job(job_id)
            job["cancelled"] += 1
            script = self.scripts[job_id]
            if str(script.current).split(":")[0] not in TERMINAL:
                script.jump_to_end("CANCELLED")
            return {"ok": True}
