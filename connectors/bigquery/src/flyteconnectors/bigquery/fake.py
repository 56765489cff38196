"""A local fake of BigQuery's REST API (``/bigquery/v2``), enough for google-cloud-bigquery's job calls.

It keeps query jobs and the tables they write. A job walks a scripted list of states, one step per status
read (``jobs.get`` or ``jobs.getQueryResults``): ``default_script`` is PENDING, RUNNING, DONE, and
``script_next_job(...)`` queues another for the next job. A step is a state name or a dict such as
``{"state": "DONE", "errorResult": {"reason": "invalidQuery", "message": "..."}}``.

Like the service, the fake refuses at insert (HTTP 400 ``invalidQuery``) a statement it cannot parse, a
``@parameter`` the job does not define and a parameter value that does not fit its type; it answers 409 for a
job id that exists; it fails a job that would bill more than ``maximumBytesBilled``; it honours the
destination table's write and create dispositions; a dry run is answered at once and stores nothing; cancel
finishes the job with ``errorResult.reason == "stopped"`` on the next read.

Point the SDK at it with ``client_options={"api_endpoint": fake.url}`` and anonymous credentials, or a
service-account key whose ``token_uri`` is ``<fake.url>/token``. Run it on its own with
``flyteconnectors fake bigquery``; ``GET /_fake/jobs`` lists its jobs.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import re
import time
from typing import Any

from flyteconnectors.core.testing.fake import FakeHTTPError, FakeRequest, FakeResponse, FakeService, Fault, route

API = "/bigquery/v2/projects/(?P<project>[^/]+)"
KEYWORDS = {
    "SELECT": "SELECT", "WITH": "SELECT", "INSERT": "INSERT", "UPDATE": "UPDATE", "DELETE": "DELETE",
    "MERGE": "MERGE", "CREATE": "CREATE_TABLE", "DROP": "DROP_TABLE", "ALTER": "ALTER_TABLE",
    "TRUNCATE": "TRUNCATE_TABLE", "DECLARE": "SCRIPT", "BEGIN": "SCRIPT", "CALL": "SCRIPT",
    "EXPORT": "EXPORT_DATA", "LOAD": "LOAD_DATA",
}
SCALARS = {"INT64", "FLOAT64", "NUMERIC", "BIGNUMERIC", "BOOL", "STRING", "BYTES", "DATE", "DATETIME", "TIMESTAMP",
           "TIME", "JSON", "GEOGRAPHY", "INTERVAL"}
_PARAM_REF = re.compile(r"(?<![@\w])@([A-Za-z_]\w*)")
_COMMENT = re.compile(r"--[^\n]*|#[^\n]*|/\*.*?\*/", re.DOTALL)
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([+-]\d{2}:\d{2}|Z| UTC)?$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$")


_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE"}
#: The ``errors[0].reason`` BigQuery gives with each status; the SDK decides retries by it.
_REASONS = {400: "invalid", 401: "authError", 403: "accessDenied", 404: "notFound", 409: "duplicate",
            429: "rateLimitExceeded", 500: "internalError", 502: "badGateway", 503: "backendError"}


def error_body(status: int, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    """BigQuery's JSON error envelope, e.g. ``fake.inject_fault(403, body=error_body(403, "rateLimitExceeded"))``."""
    reason = reason or _REASONS.get(status, "backendError")
    message = message or f"{reason} (injected by the fake)"
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN"),
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}


def _error(status: int, reason: str, message: str) -> FakeHTTPError:
    return FakeHTTPError(status, error_body(status, reason, message))


def _ms(at: float) -> str:
    return str(int(at * 1000))


class BigQueryFake(FakeService):
    name = "bigquery"
    default_script: tuple[Any, ...] = ("PENDING", "RUNNING", "DONE")
    #: What every query "reads"; a job whose maximumBytesBilled is lower fails, as BigQuery's would.
    bytes_processed: int = 10 * 1024 * 1024
    #: The rows a query returns, and their schema.
    schema: tuple[dict[str, str], ...] = ({"name": "x", "type": "INTEGER"}, {"name": "y", "type": "STRING"})
    rows: tuple[tuple[Any, ...], ...] = ((1, "a"), (2, "b"))
    default_location = "US"

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.tables: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}

    def reset_state(self) -> None:
        self.jobs.clear()
        self.tables.clear()

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> BigQueryFake:
        super().serve(host, port)
        # The toolkit's handler writes the headers and the body separately; without TCP_NODELAY every answer
        # waits ~40 ms for the client's delayed ACK (Nagle). The handler class is this server's own.
        if self._server is not None:
            self._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        return self

    def inject_fault(self, status: int | None = 500, **kwargs: Any) -> Fault:
        """A fault whose body, unless given, is BigQuery's error envelope (the SDK cannot parse anything else)."""
        if status is not None and kwargs.get("body") is None:
            kwargs["body"] = error_body(status)
        return super().inject_fault(status, **kwargs)

    # ------------------------------------------------------------------------------------ inspection
    def job(self, job_id: str, project: str | None = None) -> dict[str, Any]:
        """The stored job resource (tests read its configuration and labels)."""
        with self.lock:
            for (proj, jid), job in self.jobs.items():
                if jid == job_id and project in (None, proj):
                    return job["resource"]
        raise KeyError(job_id)

    def job_count(self) -> int:
        with self.lock:
            return len(self.jobs)

    def cancelled_count(self) -> int:
        """How many jobs received at least one cancel request."""
        with self.lock:
            return sum(1 for job in self.jobs.values() if job["cancel_requests"])

    # ------------------------------------------------------------------------------------ auth
    @route("POST", "/token")
    def token(self, request: FakeRequest) -> Any:
        """OAuth token endpoint for service-account credentials (``token_uri`` in the key)."""
        return {"access_token": "ya29.fake-token", "expires_in": 3600, "token_type": "Bearer"}

    # ------------------------------------------------------------------------------------ jobs
    @route("POST", API + "/jobs")
    def insert_job(self, request: FakeRequest, project: str) -> Any:
        body = request.json()
        ref = dict(body.get("jobReference") or {})
        configuration = body.get("configuration") or {}
        query_cfg = dict(configuration.get("query") or {})
        if "query" not in query_cfg:
            raise _error(400, "invalid", "Only query jobs are supported by the fake: configuration.query is missing")
        statement_type = self._validate(query_cfg)
        location = ref.get("location") or self.default_location
        now = time.time()
        if configuration.get("dryRun"):
            return {
                "kind": "bigquery#job",
                "jobReference": {"projectId": project, "location": location},
                "configuration": configuration,
                "status": {"state": "DONE"},
                "statistics": {"creationTime": _ms(now), "totalBytesProcessed": str(self.bytes_processed),
                               "query": {"totalBytesProcessed": str(self.bytes_processed),
                                         "statementType": statement_type}},
            }
        job_id = ref.get("jobId") or f"job_{self.next_id()}"
        with self.lock:
            if (project, job_id) in self.jobs:
                raise _error(409, "duplicate", f"Already Exists: Job {project}:{location}.{job_id}")
            if statement_type == "SELECT" and "destinationTable" not in query_cfg:
                anon = hashlib.sha1(f"{project}/{job_id}".encode()).hexdigest()
                query_cfg["destinationTable"] = {"projectId": project, "datasetId": f"_{anon[:32]}",
                                                 "tableId": f"anon{anon[8:40]}"}
            resource = {
                "kind": "bigquery#job",
                "id": f"{project}:{location}.{job_id}",
                "jobReference": {"projectId": project, "jobId": job_id, "location": location},
                "configuration": {**configuration, "jobType": "QUERY", "query": query_cfg},
                "status": {"state": "PENDING"},
                "statistics": {"creationTime": _ms(now)},
                "user_email": "fake@example.iam.gserviceaccount.com",
            }
            job = {"resource": resource, "outcome": self._outcome(project, query_cfg), "written": False,
                   "statement_type": statement_type, "cancel_requests": 0}
            self.jobs[(project, job_id)] = job
            script = self.new_job_script(job_id)
            self._apply(job, script.current)
            return resource

    @route("GET", API + "/jobs/(?P<job_id>[^/]+)")
    def get_job(self, request: FakeRequest, project: str, job_id: str) -> Any:
        with self.lock:
            job = self._find(project, job_id, request.query.get("location"))
            self._apply(job, self.scripts[job_id].advance())
            return job["resource"]

    @route("POST", API + "/jobs/(?P<job_id>[^/]+)/cancel")
    def cancel_job(self, request: FakeRequest, project: str, job_id: str) -> Any:
        with self.lock:
            job = self._find(project, job_id, request.query.get("location"))
            job["cancel_requests"] += 1
            if job["resource"]["status"]["state"] != "DONE":
                # Cancellation is asynchronous at BigQuery: the job reports DONE/stopped on a later read.
                self.scripts[job_id].jump_to_end({"state": "DONE", "errorResult": {
                    "reason": "stopped", "message": "Job execution was cancelled: User requested cancellation"}})
            return {"kind": "bigquery#jobCancelResponse", "job": job["resource"]}

    @route("GET", API + "/jobs")
    def list_jobs(self, request: FakeRequest, project: str) -> Any:
        with self.lock:
            jobs = [j["resource"] for (p, _), j in self.jobs.items() if p == project]
        return {"kind": "bigquery#jobList", "jobs": jobs}

    @route("GET", API + "/queries/(?P<job_id>[^/]+)")
    def query_results(self, request: FakeRequest, project: str, job_id: str) -> Any:
        with self.lock:
            job = self._find(project, job_id, request.query.get("location"))
            self._apply(job, self.scripts[job_id].advance())
            resource = job["resource"]
            error = resource["status"].get("errorResult")
            if error:
                raise _error(400, error.get("reason", "invalid"), error.get("message", "job failed"))
            done = resource["status"]["state"] == "DONE"
            answer: dict[str, Any] = {"kind": "bigquery#getQueryResultsResponse",
                                      "jobReference": resource["jobReference"], "jobComplete": done}
            if done:
                rows = self._result_rows(job)
                answer.update({"schema": {"fields": list(self.schema)}, "totalRows": str(len(rows)),
                               "rows": [self._row(r) for r in rows]})
            return answer

    # ------------------------------------------------------------------------------------ tables
    @route("GET", API + "/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)")
    def get_table(self, request: FakeRequest, project: str, dataset: str, table: str) -> Any:
        rows = self._table(project, dataset, table)
        return {"kind": "bigquery#table", "id": f"{project}:{dataset}.{table}", "type": "TABLE",
                "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
                "schema": {"fields": list(self.schema)}, "numRows": str(len(rows))}

    @route("GET", API + "/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)/data")
    def list_rows(self, request: FakeRequest, project: str, dataset: str, table: str) -> Any:
        rows = self._table(project, dataset, table)
        return {"kind": "bigquery#tableDataList", "totalRows": str(len(rows)), "rows": [self._row(r) for r in rows]}

    # ------------------------------------------------------------------------------------ control API
    def _control(self, request: FakeRequest) -> FakeResponse:
        if request.path.rstrip("/") == "/_fake/jobs":
            with self.lock:
                return FakeResponse(200, [j["resource"] for j in self.jobs.values()])
        return super()._control(request)

    # ------------------------------------------------------------------------------------ internals
    def _find(self, project: str, job_id: str, location: str | None) -> dict[str, Any]:
        job = self.jobs.get((project, job_id))
        if job is None or (location and job["resource"]["jobReference"]["location"].upper() != location.upper()):
            where = f"{location}." if location else ""
            raise _error(404, "notFound", f"Not found: Job {project}:{where}{job_id}")
        return job

    def _table(self, project: str, dataset: str, table: str) -> list[tuple[Any, ...]]:
        with self.lock:
            rows = self.tables.get((project, dataset, table))
        if rows is None:
            raise _error(404, "notFound", f"Not found: Table {project}:{dataset}.{table}")
        return rows

    @staticmethod
    def _row(row: tuple[Any, ...]) -> dict[str, Any]:
        return {"f": [{"v": None if v is None else str(v)} for v in row]}

    def _result_rows(self, job: dict[str, Any]) -> list[tuple[Any, ...]]:
        dest = job["resource"]["configuration"]["query"].get("destinationTable")
        if dest is None:
            return []
        return self.tables.get((dest["projectId"], dest["datasetId"], dest["tableId"]), [])

    def _apply(self, job: dict[str, Any], step: Any) -> None:
        """Put the job in the state of ``step``; reaching DONE runs the query's effect once."""
        step = {"state": step} if isinstance(step, str) else dict(step)
        resource = job["resource"]
        stats = resource["statistics"]
        state = str(step.get("state", "RUNNING"))
        status: dict[str, Any] = {"state": state}
        if state in ("RUNNING", "DONE"):
            stats.setdefault("startTime", _ms(time.time()))
        if state == "DONE":
            error = step.get("errorResult") or job["outcome"]
            if error:
                status["errorResult"] = error
                status["errors"] = step.get("errors") or [error]
            elif not job["written"]:
                self._write(job)
            stats.setdefault("endTime", _ms(time.time()))
            if not error or error.get("reason") == "stopped":
                billed = 0 if error else self.bytes_processed
                stats.update({"totalBytesProcessed": str(billed)})
                stats["query"] = {"totalBytesProcessed": str(billed), "totalBytesBilled": str(billed),
                                  "cacheHit": False, "statementType": job["statement_type"]}
        elif step.get("errorResult"):
            status["errorResult"] = step["errorResult"]
        resource["status"] = status

    def _write(self, job: dict[str, Any]) -> None:
        job["written"] = True
        query_cfg = job["resource"]["configuration"]["query"]
        dest = query_cfg.get("destinationTable")
        if dest is None:
            return
        key = (dest["projectId"], dest["datasetId"], dest["tableId"])
        if query_cfg.get("writeDisposition") == "WRITE_APPEND":
            self.tables[key] = [*self.tables.get(key, []), *self.rows]
        else:
            self.tables[key] = list(self.rows)

    def _outcome(self, project: str, query_cfg: dict[str, Any]) -> dict[str, str] | None:
        """The error the job will finish with, decided at insert as BigQuery decides it while running."""
        limit = query_cfg.get("maximumBytesBilled")
        if limit is not None and int(limit) < self.bytes_processed:
            return {"reason": "bytesBilledLimitExceeded",
                    "message": f"Query exceeded limit for bytes billed: {limit}. {self.bytes_processed} or higher "
                               "required."}
        dest = query_cfg.get("destinationTable")
        if dest is not None:
            key = (dest["projectId"], dest["datasetId"], dest["tableId"])
            name = f"{key[0]}:{key[1]}.{key[2]}"
            if query_cfg.get("createDisposition") == "CREATE_NEVER" and key not in self.tables:
                return {"reason": "notFound", "message": f"Not found: Table {name}"}
            if query_cfg.get("writeDisposition") == "WRITE_EMPTY" and self.tables.get(key):
                return {"reason": "duplicate", "message": f"Already Exists: Table {name}"}
        return None

    def _validate(self, query_cfg: dict[str, Any]) -> str:
        """400 invalidQuery for what BigQuery would refuse before running; returns the statement type."""
        sql = query_cfg["query"]
        text = _COMMENT.sub(" ", sql).strip().lstrip("(").strip()
        first = (text.split(None, 1) or [""])[0].upper()
        if first not in KEYWORDS:
            raise _error(400, "invalidQuery", f"Syntax error: Unexpected identifier \"{first[:40]}\" at [1:1]")
        if query_cfg.get("useLegacySql") and query_cfg.get("queryParameters"):
            raise _error(400, "invalid", "Query parameters cannot be used in legacy SQL queries.")
        defined: dict[str, dict[str, Any]] = {}
        for param in query_cfg.get("queryParameters") or []:
            name = param.get("name")
            if not name:
                raise _error(400, "invalid", "Positional parameters are not used by this fake; name every parameter")
            defined[name] = param
            self._check_parameter(name, param.get("parameterType") or {}, param.get("parameterValue") or {})
        for match in _PARAM_REF.finditer(sql):
            if match.group(1) not in defined:
                line = sql[: match.start()].count("\n") + 1
                col = match.start() - (sql.rfind("\n", 0, match.start()) + 1) + 1
                raise _error(400, "invalidQuery", f"Query parameter '{match.group(1)}' not found at [{line}:{col}]")
        return KEYWORDS[first]

    def _check_parameter(self, name: str, ptype: dict[str, Any], pvalue: dict[str, Any]) -> None:
        kind = ptype.get("type")
        if kind == "ARRAY":
            inner = (ptype.get("arrayType") or {}).get("type")
            if inner not in SCALARS:
                raise _error(400, "invalidQuery", f"Invalid query parameter type for {name}: ARRAY<{inner}>")
            for i, item in enumerate(pvalue.get("arrayValues") or []):
                self._check_value(f"{name}[{i}]", inner, item.get("value"))
            return
        if kind not in SCALARS:
            raise _error(400, "invalidQuery", f"Invalid query parameter type for {name}: {kind}")
        self._check_value(name, kind, pvalue.get("value"))

    @staticmethod
    def _check_value(name: str, kind: str, value: Any) -> None:
        if value is None:
            return
        ok = True
        try:
            if kind == "INT64":
                ok = -(2**63) <= int(value) < 2**63
            elif kind == "FLOAT64":
                float(value)
            elif kind in ("NUMERIC", "BIGNUMERIC"):
                decimal.Decimal(value)
            elif kind == "BOOL":
                ok = str(value).lower() in ("true", "false")
            elif kind == "BYTES":
                base64.b64decode(value, validate=True)
            elif kind == "DATE":
                dt.date.fromisoformat(value)
            elif kind == "DATETIME":
                ok = bool(_DATETIME.match(value))
            elif kind == "TIMESTAMP":
                ok = bool(_TIMESTAMP.match(value))
            elif kind == "STRING":
                ok = isinstance(value, str)
        except (ValueError, TypeError, decimal.InvalidOperation):
            ok = False
        if not ok:
            raise _error(400, "invalidQuery", f"Invalid {kind} value {value!r} for query parameter {name}")
