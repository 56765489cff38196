"""A local Databricks workspace for tests, the sandbox and trying things out: ``flyteconnectors fake databricks``.

It speaks the REST protocol databricks-sdk 0.162 uses (Jobs API 2.2, Statement Execution API 2.0, query
history, the ``/.well-known/databricks-config`` probe and OAuth M2M), keeps runs and statements in memory, and
goes one step further than state scripting: a one-time run whose ``spark_python_task`` parameters start with
``pyflyte-execute`` / ``pyflyte-fast-execute`` is *executed* in a local subprocess, through the same entrypoint a
cluster runs (``flyteconnectors.databricks.entrypoint``), without Spark. The run's state follows the process, and
the task's outputs land under its output prefix.

Scripted states (``script_next_job`` / ``default_script``), one step per status read:

* runs: ``"LIFE"`` or ``"LIFE:RESULT"`` (``"TERMINATED:SUCCESS"``, ``"INTERNAL_ERROR:FAILED"``) give the v1 ``state``
  and the matching v2 ``status``; a dict ``{"state": {...} | None, "status": {...} | None, "output": "..."}`` sets
  either object exactly (``None`` leaves it out of the response);
* statements: ``"PENDING"``, ``"RUNNING"``, ``"SUCCEEDED"`` (the SQL is then evaluated with sqlite3),
  ``"FAILED"``, ``"CANCELED"``, ``"CLOSED"``, or ``{"state": ..., "error": {"error_code": ..., "message": ...}}``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flyteconnectors.core.testing.fake import FakeHTTPError, FakeRequest, FakeService, JobScript, route

WORKSPACE_ID = "1234567890"
FLYTE_COMMANDS = ("pyflyte-execute", "pyflyte-fast-execute")

# v1 result_state -> v2 termination code and type, as the Jobs service reports them side by side.
_TERMINATION = {
    "SUCCESS": ("SUCCESS", "SUCCESS"),
    "SUCCESS_WITH_FAILURES": ("SUCCESS_WITH_FAILURES", "SUCCESS"),
    "FAILED": ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
    "TIMEDOUT": ("CANCELED", "CLIENT_ERROR"),
    "CANCELED": ("USER_CANCELED", "SUCCESS"),
    "MAXIMUM_CONCURRENT_RUNS_REACHED": ("MAX_CONCURRENT_RUNS_EXCEEDED", "CLIENT_ERROR"),
    "EXCLUDED": ("SKIPPED", "SUCCESS"),
    "UPSTREAM_FAILED": ("SKIPPED", "CLIENT_ERROR"),
    "UPSTREAM_CANCELED": ("SKIPPED", "CLIENT_ERROR"),
    "DISABLED": ("DISABLED", "CLIENT_ERROR"),
}
_V2_LIFE = {"WAITING_FOR_RETRY": "WAITING", "SKIPPED": "TERMINATED", "INTERNAL_ERROR": "TERMINATED"}
_TERMINAL_LIFE = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(Error|Exception|Exit)\b: .+")
_TERMINAL_STATEMENT = {"SUCCEEDED", "FAILED", "CANCELED", "CLOSED"}


def _bad_request(message: str, code: str = "INVALID_PARAMETER_VALUE", status: int = 400) -> FakeHTTPError:
    return FakeHTTPError(status, {"error_code": code, "message": message})


@dataclass
class FakeRun:
    run_id: int
    job_id: int
    run_name: str
    run_type: str
    tasks: list[dict[str, Any]]
    script: JobScript | None
    env: dict[str, str] = field(default_factory=dict)
    job_parameters: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    started: bool = False
    cancelled: bool = False
    #: the last reported v1 state and v2 status (None: not reported)
    state: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    output: str | None = None
    error: str | None = None
    error_trace: str | None = None
    start_time: int = field(default_factory=lambda: int(time.time() * 1000))
    end_time: int = 0

    @property
    def task_run_id(self) -> int:
        return self.run_id * 10 + 1

    @property
    def terminal(self) -> bool:
        life = (self.state or {}).get("life_cycle_state") or (self.status or {}).get("state")
        return life in _TERMINAL_LIFE


@dataclass
class FakeStatement:
    statement_id: str
    statement: str
    warehouse_id: str
    parameters: list[dict[str, Any]]
    query_tags: list[dict[str, str]]
    row_limit: int | None
    script: JobScript
    state: str = "PENDING"
    error: dict[str, str] | None = None
    columns: list[dict[str, Any]] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)
    truncated: bool = False
    cancelled: bool = False
    start_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    end_ms: int = 0


class DatabricksFake(FakeService):
    """A Databricks workspace on 127.0.0.1. See the module docstring for the scripting grammar."""

    name = "databricks"
    default_script: tuple[Any, ...] = ("PENDING", "RUNNING", "TERMINATED:SUCCESS")
    default_statement_script: tuple[Any, ...] = ("PENDING", "RUNNING", "SUCCEEDED")

    def __init__(
        self,
        *,
        seed: int = 0,
        execute_python: bool = True,
        python: str = sys.executable,
        python_path: list[str] | None = None,
        workdir: str | None = None,
        env: dict[str, str] | None = None,
        tokens: set[str] | None = None,
        clients: dict[str, str] | None = None,
        chunk_rows: int = 1000,
        example_job: bool = True,
    ) -> None:
        super().__init__(seed=seed)
        #: a saved job 501 named "example" exists from the start (for ``run-now`` in the examples)
        self.example_job = example_job
        #: run submitted Flyte Python tasks in a subprocess (else they follow the state script)
        self.execute_python = execute_python
        self.python = python
        self.python_path = list(python_path or [])
        self.workdir = workdir
        self.extra_env = dict(env or {})
        #: accepted bearer tokens (None: any non-empty token)
        self.tokens = tokens
        #: OAuth M2M service principals: client_id -> client_secret
        self.clients = dict(clients or {})
        self.chunk_rows = chunk_rows
        self.reset_state()

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> DatabricksFake:
        super().serve(host, port)
        # The toolkit writes a response's headers and body in two sends; with Nagle's algorithm on, the body waits
        # for the client's delayed ACK (~40 ms per request). TCP_NODELAY makes a poll take a millisecond.
        assert self._server is not None
        self._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        return self

    # ------------------------------------------------------------------ state
    def reset_state(self) -> None:
        for run in getattr(self, "runs", {}).values():
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
        self.runs: dict[int, FakeRun] = {}
        self.statements: dict[str, FakeStatement] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.idempotency: dict[str, int] = {}
        self.oauth_tokens: set[str] = set()
        self._run_ids = iter(range(1001, 10**9))
        self._job_ids = iter(range(501, 10**9))
        if self.example_job:
            self.add_job("example", output="hello from the example job", parameters={"day": ""})

    def add_job(self, name: str = "job", *, tasks: list[dict[str, Any]] | None = None, output: str | None = None,
                parameters: dict[str, str] | None = None) -> int:
        """Define a saved job (what ``run-now`` triggers). ``output`` is its notebook task's exit value."""
        with self.lock:
            job_id = next(self._job_ids)
            self.jobs[job_id] = {
                "name": name,
                "tasks": tasks or [{"task_key": "main", "notebook_task": {"notebook_path": "/Shared/main"}}],
                "parameters": [{"name": k, "default": v} for k, v in (parameters or {}).items()],
                "output": output,
            }
            return job_id

    def _script(self, key: str, default: tuple[Any, ...]) -> JobScript:
        with self.lock:
            steps = self._queued_scripts.pop(0) if self._queued_scripts else list(default)
            return self.script_job(key, *steps)

    # ------------------------------------------------------------------ auth
    def _authorize(self, request: FakeRequest) -> None:
        header = request.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise FakeHTTPError(401, {"error_code": "UNAUTHENTICATED", "message": "Credential was not sent or was "
                                      "of an unsupported type for this API."})
        if token in self.oauth_tokens:
            return
        if self.tokens is not None and token not in self.tokens:
            raise FakeHTTPError(403, {"error_code": "PERMISSION_DENIED", "message": "Invalid access token."})

    def _base(self, request: FakeRequest) -> str:
        return f"http://{request.header('host') or '127.0.0.1'}"

    @route("GET", r"/\.well-known/databricks-config")
    def well_known(self, request: FakeRequest) -> Any:
        return {"workspace_id": WORKSPACE_ID, "oidc_endpoint": f"{self._base(request)}/oidc"}

    @route("GET", r"/oidc/\.well-known/oauth-authorization-server")
    def oidc_discovery(self, request: FakeRequest) -> Any:
        base = self._base(request)
        return {"authorization_endpoint": f"{base}/oidc/v1/authorize", "token_endpoint": f"{base}/oidc/v1/token",
                "issuer": f"{base}/oidc"}

    @route("POST", r"/oidc/v1/token")
    def oidc_token(self, request: FakeRequest) -> Any:
        import base64
        from urllib.parse import parse_qs

        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = request.header("authorization") or ""
        if header.lower().startswith("basic "):
            client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials" or self.clients.get(client_id or "") != client_secret:
            raise FakeHTTPError(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
        token = f"fake-oauth-{uuid.uuid4().hex}"
        self.oauth_tokens.add(token)
        return {"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": form.get("scope", "")}

    # ------------------------------------------------------------------ jobs
    @route("POST", r"/api/2\.[12]/jobs/create")
    def create_job(self, request: FakeRequest) -> Any:
        self._authorize(request)
        body = request.json()
        params = {p["name"]: p.get("default", "") for p in body.get("parameters", [])}
        return {"job_id": self.add_job(body.get("name", "Untitled"), tasks=body.get("tasks"), parameters=params)}

    @route("GET", r"/api/2\.[12]/jobs/get")
    def get_job(self, request: FakeRequest) -> Any:
        self._authorize(request)
        job = self.jobs.get(int(request.query.get("job_id", 0)))
        if job is None:
            raise _bad_request(f"Job {request.query.get('job_id')} does not exist.")
        return {"job_id": int(request.query["job_id"]), "settings": {k: v for k, v in job.items() if k != "output"}}

    @route("POST", r"/api/2\.[12]/jobs/runs/submit")
    def submit(self, request: FakeRequest) -> Any:
        self._authorize(request)
        body = request.json()
        tasks = body.get("tasks") or []
        if not tasks:
            raise _bad_request("A one-time run must have at least one task.")
        for task in tasks:
            computes = [k for k in ("existing_cluster_id", "new_cluster", "environment_key", "job_cluster_key")
                        if task.get(k)]
            if not computes:
                raise _bad_request(f"Task {task.get('task_key')} has no compute: set existing_cluster_id, "
                                   "new_cluster or environment_key.")
        return self._start_run(request, body, tasks, run_type="SUBMIT_RUN", job_id=None)

    @route("POST", r"/api/2\.[12]/jobs/run-now")
    def run_now(self, request: FakeRequest) -> Any:
        self._authorize(request)
        body = request.json()
        job_id = int(body.get("job_id") or 0)
        job = self.jobs.get(job_id)
        if job is None:
            raise _bad_request(f"Job {job_id} does not exist.")
        return self._start_run(request, body, job["tasks"], run_type="JOB_RUN", job_id=job_id)

    def _start_run(self, request: FakeRequest, body: dict[str, Any], tasks: list[dict[str, Any]], *, run_type: str,
                   job_id: int | None) -> Any:
        token = body.get("idempotency_token")
        if token is not None and len(token) > 64:
            raise _bad_request("idempotency_token must be at most 64 characters.")
        with self.lock:
            if token and token in self.idempotency:
                return {"run_id": self.idempotency[token], "number_in_job": self.idempotency[token]}
            run_id = next(self._run_ids)
            if token:
                self.idempotency[token] = run_id
            run = FakeRun(
                run_id=run_id,
                job_id=job_id if job_id is not None else 500000 + run_id,
                run_name=body.get("run_name") or (self.jobs[job_id]["name"] if job_id else "Untitled"),
                run_type=run_type,
                tasks=[dict(t) for t in tasks],
                script=None,
                env=_run_env(body, tasks[0]),
                job_parameters=dict(body.get("job_parameters") or {}),
            )
            if job_id is not None:
                run.output = self.jobs[job_id].get("output")
            command = _flyte_command(tasks[0])
            if not (self.execute_python and command):
                run.script = self._script(str(run_id), self.default_script)
            self.runs[run_id] = run
        if run.script is None:
            self._launch(run, command or [])
        return {"run_id": run_id, "number_in_job": run_id}

    def _launch(self, run: FakeRun, command: list[str]) -> None:
        env = {**os.environ, **self.extra_env, **run.env}
        if self.python_path:
            env["PYTHONPATH"] = os.pathsep.join([*self.python_path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        fd, run.log_path = tempfile.mkstemp(prefix=f"fake-databricks-run-{run.run_id}-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            run.process = subprocess.Popen(
                [self.python, "-m", "flyteconnectors.databricks.entrypoint", *command],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir or os.getcwd(),
            )

    @route("GET", r"/api/2\.[12]/jobs/runs/get")
    def get_run(self, request: FakeRequest) -> Any:
        self._authorize(request)
        run = self._run(request.query.get("run_id"))
        with self.lock:
            self._advance(run)
            return self._run_json(run, self._base(request))

    @route("POST", r"/api/2\.[12]/jobs/runs/cancel")
    def cancel_run(self, request: FakeRequest) -> Any:
        self._authorize(request)
        run = self._run(request.json().get("run_id"))
        with self.lock:
            if run.terminal or run.cancelled:
                return {}
            run.cancelled = True
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
            run.script = JobScript(["TERMINATING", "TERMINATED:CANCELED"])
        return {}

    @route("GET", r"/api/2\.[12]/jobs/runs/get-output")
    def get_run_output(self, request: FakeRequest) -> Any:
        self._authorize(request)
        wanted = int(request.query.get("run_id") or 0)
        with self.lock:
            run = next((r for r in self.runs.values() if wanted == r.task_run_id), None)
            if run is None:
                if wanted in self.runs and len(self.runs[wanted].tasks) > 1:
                    raise _bad_request("Retrieving the output of runs with multiple tasks is not supported. Please "
                                       "retrieve the output of each individual task run instead.")
                run = self.runs.get(wanted)
            if run is None:
                raise _bad_request(f"Run {wanted} does not exist.")
            out: dict[str, Any] = {"metadata": self._run_json(run, self._base(request))}
            if run.error:
                out["error"] = run.error
                out["error_trace"] = run.error_trace or ""
            if run.output is not None and run.terminal:
                out["notebook_output"] = {"result": run.output, "truncated": False}
            if run.log_path:
                out["logs"] = _tail(run.log_path, 2000)
                out["logs_truncated"] = False
            return out

    def _run(self, raw_id: Any) -> FakeRun:
        try:
            run_id = int(raw_id)
        except (TypeError, ValueError):
            raise _bad_request(f"Invalid run_id {raw_id!r}.") from None
        run = self.runs.get(run_id)
        if run is None:
            raise _bad_request(f"Run {run_id} does not exist.")
        return run

    def _advance(self, run: FakeRun) -> None:
        """One status read: move the script one step, or follow the local process."""
        if run.script is not None:
            step = run.script.advance()
            if isinstance(step, dict):
                run.state = step.get("state")
                run.status = step.get("status")
                if "output" in step:
                    run.output = step["output"]
                if "error" in step:
                    run.error = step["error"]
            else:
                run.state, run.status = _states(str(step), "")
            if run.cancelled and run.terminal:
                run.state = {**(run.state or {}), "user_cancelled_or_timedout": True}
        else:
            process = run.process
            assert process is not None
            code = process.poll()
            if not run.started:
                run.started = True
                run.state, run.status = _states("PENDING", "Waiting for cluster")
            elif code is None:
                run.state, run.status = _states("RUNNING", "In run")
            elif code == 0:
                run.state, run.status = _states("TERMINATED:SUCCESS", "")
            else:
                lines = [ln.strip() for ln in _tail(run.log_path, 16000).splitlines() if ln.strip()]
                # Like the Jobs service: the exception the script died of, and the tail of its output.
                raised = [ln for ln in lines if _EXCEPTION_LINE.match(ln)]
                run.error = raised[-1] if raised else f"Python exited with code {code}"
                run.error_trace = "\n".join(lines[-40:])
                run.state, run.status = _states("TERMINATED:FAILED", "Workload failed, see run output for details")
        if run.terminal and not run.end_time:
            run.end_time = int(time.time() * 1000)

    def _run_json(self, run: FakeRun, base: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": run.run_id,
            "job_id": run.job_id,
            "number_in_job": run.run_id,
            "run_name": run.run_name,
            "run_type": run.run_type,
            "run_page_url": f"{base}/?o={WORKSPACE_ID}#job/{run.job_id}/run/{run.run_id}",
            "start_time": run.start_time,
            "end_time": run.end_time,
            "tasks": [
                {"task_key": t.get("task_key", "main"), "run_id": run.task_run_id + i,
                 **({"state": run.state} if run.state else {}), **({"status": run.status} if run.status else {})}
                for i, t in enumerate(run.tasks)
            ],
            "job_parameters": [{"name": k, "value": v} for k, v in run.job_parameters.items()],
        }
        if run.state is not None:
            out["state"] = run.state
        if run.status is not None:
            out["status"] = run.status
        return out

    # ------------------------------------------------------------------ SQL statements
    @route("POST", r"/api/2\.0/sql/statements/?")
    def execute_statement(self, request: FakeRequest) -> Any:
        self._authorize(request)
        body = request.json()
        if not body.get("statement"):
            raise _bad_request("statement is required.")
        if not body.get("warehouse_id"):
            raise _bad_request("warehouse_id is required.")
        if body.get("wait_timeout") not in (None, "0s") and not re.fullmatch(r"([5-9]|[1-4][0-9]|50)s",
                                                                            body["wait_timeout"]):
            raise _bad_request("wait_timeout must be 0s or between 5s and 50s.")
        statement_id = f"01ef{uuid.uuid4().hex[:28]}"
        stmt = FakeStatement(
            statement_id=statement_id,
            statement=body["statement"],
            warehouse_id=body["warehouse_id"],
            parameters=list(body.get("parameters") or []),
            query_tags=list(body.get("query_tags") or []),
            row_limit=body.get("row_limit"),
            script=self._script(statement_id, self.default_statement_script),
        )
        with self.lock:
            self.statements[statement_id] = stmt
        return {"statement_id": statement_id, "status": {"state": "PENDING"}}

    @route("GET", r"/api/2\.0/sql/statements/(?P<statement_id>[^/]+)")
    def get_statement(self, request: FakeRequest, statement_id: str) -> Any:
        self._authorize(request)
        stmt = self._statement(statement_id)
        with self.lock:
            if stmt.state not in _TERMINAL_STATEMENT:
                self._advance_statement(stmt)
            return self._statement_json(stmt, chunk=0)

    @route("GET", r"/api/2\.0/sql/statements/(?P<statement_id>[^/]+)/result/chunks/(?P<index>\d+)")
    def get_chunk(self, request: FakeRequest, statement_id: str, index: str) -> Any:
        self._authorize(request)
        stmt = self._statement(statement_id)
        if stmt.state != "SUCCEEDED":
            raise _bad_request(f"Statement {statement_id} has no result (state {stmt.state}).", "BAD_REQUEST")
        return self._chunk(stmt, int(index))

    @route("POST", r"/api/2\.0/sql/statements/(?P<statement_id>[^/]+)/cancel")
    def cancel_statement(self, request: FakeRequest, statement_id: str) -> Any:
        self._authorize(request)
        stmt = self._statement(statement_id)
        with self.lock:
            if stmt.state not in _TERMINAL_STATEMENT:
                stmt.cancelled = True
                stmt.state = "CANCELED"
                stmt.end_ms = int(time.time() * 1000)
        return {}

    @route("GET", r"/api/2\.0/sql/history/queries")
    def query_history(self, request: FakeRequest) -> Any:
        self._authorize(request)
        query = request.query
        warehouses = {v for k, v in query.items() if k.startswith("filter_by.warehouse_ids")}
        since = int(query.get("filter_by.query_start_time_range.start_time_ms") or 0)
        with self.lock:
            found = [
                s for s in self.statements.values()
                if (not warehouses or s.warehouse_id in warehouses) and s.start_ms >= since
            ]
        found.sort(key=lambda s: s.start_ms, reverse=True)
        limit = int(query.get("max_results") or 100)
        return {
            "res": [
                {"query_id": s.statement_id, "statement_type": "SELECT", "query_text": s.statement,
                 "warehouse_id": s.warehouse_id, "status": _history_status(s.state),
                 "query_start_time_ms": s.start_ms, "query_tags": s.query_tags}
                for s in found[:limit]
            ],
            "has_next_page": False,
        }

    def _statement(self, statement_id: str) -> FakeStatement:
        stmt = self.statements.get(statement_id)
        if stmt is None:
            raise FakeHTTPError(404, {"error_code": "NOT_FOUND", "message": f"Statement {statement_id} not found."})
        return stmt

    def _advance_statement(self, stmt: FakeStatement) -> None:
        step = stmt.script.advance()
        state = str(step.get("state") if isinstance(step, dict) else step)
        if isinstance(step, dict) and step.get("error"):
            stmt.error = dict(step["error"])
        if state == "SUCCEEDED":
            self._evaluate(stmt)
            return
        stmt.state = state
        if state == "FAILED" and stmt.error is None:
            stmt.error = {"error_code": "INTERNAL_ERROR", "message": "The statement failed."}
        if state in _TERMINAL_STATEMENT:
            stmt.end_ms = int(time.time() * 1000)

    def _evaluate(self, stmt: FakeStatement) -> None:
        """Run the SQL with sqlite3: named parameters ``:name`` bind like the Statement Execution API's."""
        params: dict[str, Any] = {}
        for p in stmt.parameters:
            params[p["name"]] = _typed_param(p)
        try:
            with sqlite3.connect(":memory:") as db:
                cursor = db.execute(stmt.statement, params)
                names = [d[0] for d in cursor.description or []]
                rows = cursor.fetchall()
        except sqlite3.Error as err:
            stmt.state = "FAILED"
            stmt.error = {"error_code": "BAD_REQUEST", "message": f"[PARSE_SYNTAX_ERROR] {err}"}
            stmt.end_ms = int(time.time() * 1000)
            return
        if stmt.row_limit is not None and len(rows) > stmt.row_limit:
            rows, stmt.truncated = rows[: stmt.row_limit], True
        stmt.columns = [
            {"name": n, "position": i, "type_name": _sql_type(rows, i), "type_text": _sql_type(rows, i)}
            for i, n in enumerate(names)
        ]
        stmt.rows = [[None if v is None else _sql_text(v) for v in row] for row in rows]
        stmt.state = "SUCCEEDED"
        stmt.end_ms = int(time.time() * 1000)

    def _statement_json(self, stmt: FakeStatement, chunk: int) -> dict[str, Any]:
        out: dict[str, Any] = {"statement_id": stmt.statement_id, "status": {"state": stmt.state}}
        if stmt.error is not None and stmt.state == "FAILED":
            out["status"]["error"] = stmt.error
        if stmt.state == "SUCCEEDED":
            chunks = self._chunk_bounds(stmt)
            out["manifest"] = {
                "format": "JSON_ARRAY",
                "schema": {"column_count": len(stmt.columns), "columns": stmt.columns},
                "total_row_count": len(stmt.rows),
                "total_chunk_count": len(chunks),
                "chunks": [{"chunk_index": i, "row_offset": a, "row_count": b - a} for i, (a, b) in enumerate(chunks)],
                "truncated": stmt.truncated,
            }
            out["result"] = self._chunk(stmt, chunk)
        return out

    def _chunk_bounds(self, stmt: FakeStatement) -> list[tuple[int, int]]:
        size = max(1, self.chunk_rows)
        return [(a, min(a + size, len(stmt.rows))) for a in range(0, len(stmt.rows), size)] or [(0, 0)]

    def _chunk(self, stmt: FakeStatement, index: int) -> dict[str, Any]:
        bounds = self._chunk_bounds(stmt)
        if index >= len(bounds):
            raise _bad_request(f"Chunk index {index} is out of range.", "BAD_REQUEST")
        start, end = bounds[index]
        out: dict[str, Any] = {"chunk_index": index, "row_offset": start, "row_count": end - start,
                               "data_array": stmt.rows[start:end]}
        if index + 1 < len(bounds):
            out["next_chunk_index"] = index + 1
            out["next_chunk_internal_link"] = f"/api/2.0/sql/statements/{stmt.statement_id}/result/chunks/{index + 1}"
        return out


# ---------------------------------------------------------------------------------------------- helpers
def _states(step: str, message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The v1 ``state`` and v2 ``status`` for ``LIFE[:RESULT]``."""
    life, _, result = step.partition(":")
    state: dict[str, Any] = {"life_cycle_state": life, "state_message": message, "user_cancelled_or_timedout": False}
    status: dict[str, Any] = {"state": _V2_LIFE.get(life, life)}
    if result:
        state["result_state"] = result
    if life == "INTERNAL_ERROR":
        status["termination_details"] = {"code": "INTERNAL_ERROR", "type": "INTERNAL_ERROR", "message": message}
    elif life == "SKIPPED":
        status["termination_details"] = {"code": "SKIPPED", "type": "SUCCESS", "message": message}
    elif life == "TERMINATED" and result:
        code, kind = _TERMINATION.get(result, (result, "CLIENT_ERROR"))
        status["termination_details"] = {"code": code, "type": kind, "message": message}
    return state, status


def _flyte_command(task: dict[str, Any]) -> list[str] | None:
    params = (task.get("spark_python_task") or {}).get("parameters") or []
    if params and params[0] in FLYTE_COMMANDS:
        return [str(p) for p in params]
    return None


def _run_env(body: dict[str, Any], task: dict[str, Any]) -> dict[str, str]:
    """Environment variables the run's first task sees: cluster spark_env_vars, or a per-run entry."""
    env: dict[str, str] = {}
    env.update((task.get("new_cluster") or {}).get("spark_env_vars") or {})
    key = task.get("environment_variables_key")
    for entry in body.get("environment_variables") or []:
        if entry.get("environment_variables_key") == key:
            env.update((entry.get("spec") or {}).get("variables") or {})
    return {str(k): str(v) for k, v in env.items()}


def _tail(path: str, limit: int) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def _typed_param(p: dict[str, Any]) -> Any:
    value = p.get("value")
    kind = (p.get("type") or "STRING").upper()
    if value is None:
        return None
    if kind in ("INT", "BIGINT", "SMALLINT", "TINYINT", "LONG"):
        return int(value)
    if kind in ("DOUBLE", "FLOAT", "DECIMAL"):
        return float(value)
    if kind == "BOOLEAN":
        return value.lower() == "true"
    return value


def _sql_type(rows: list[tuple[Any, ...]], i: int) -> str:
    for row in rows:
        value = row[i]
        if isinstance(value, bool):
            return "BOOLEAN"
        if isinstance(value, int):
            return "LONG"
        if isinstance(value, float):
            return "DOUBLE"
        if value is not None:
            return "STRING"
    return "STRING"


def _sql_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _history_status(state: str) -> str:
    return {"PENDING": "QUEUED", "SUCCEEDED": "FINISHED", "CANCELED": "CANCELED", "CLOSED": "FINISHED"}.get(
        state, state
    )
