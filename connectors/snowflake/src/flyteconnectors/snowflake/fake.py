"""A local fake of Snowflake that speaks the REST protocol snowflake-connector-python 5.x sends.

The 5.x driver does its HTTP in a Rust core, so nothing can be patched in-process: this is a real HTTP server on
127.0.0.1 (``protocol="http", host="127.0.0.1", port=<port>``). What it serves, as the 5.2.0 core uses it:

* ``POST /session/v1/login-request``: password, key-pair (the RS256 JWT is verified against a registered public
  key) and OAuth logins; ``POST /session/token-request``, ``/session/heartbeat``, ``/session?delete=true``.
* ``POST /queries/v1/query-request``: sync and async (``asyncExec``) statements with server-side bindings and
  statement parameters (``QUERY_TAG``, ``MULTI_STATEMENT_COUNT``). A retried request with the same ``requestId``
  returns the first answer instead of running the statement again, as Snowflake does.
* ``GET /monitoring/queries/<qid>``: the status of a query. Each read advances the query's scripted states.
* ``GET /queries/<qid>/result`` and ``POST /queries/<qid>/abort-request``.

Statements are answered by rules (``add_rule``) first, then by a few Snowflake built-ins the connector uses
(``SYSTEM$CANCEL_QUERY``, the ``QUERY_HISTORY`` table functions filtered by query tag), then by an in-memory
sqlite3 database, so INSERTs really insert and a doubled INSERT is visible in ``SELECT COUNT(*)``.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import json
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from flyteconnectors.core.testing.fake import FakeRequest, FakeResponse, FakeService, JobScript, route

#: Every QueryStatus of snowflake-connector-python 5.2.0 (``snowflake.connector.constants.QueryStatus``).
QUERY_STATUSES = (
    "RUNNING", "ABORTING", "SUCCESS", "FAILED_WITH_ERROR", "ABORTED", "QUEUED", "FAILED_WITH_INCIDENT",
    "DISCONNECTED", "RESUMING_WAREHOUSE", "QUEUED_REPARING_WAREHOUSE", "RESTARTED", "BLOCKED", "NO_DATA",
)
TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILED_WITH_ERROR", "ABORTED", "FAILED_WITH_INCIDENT"})

# Snowflake's codes for the answers the fake gives.
QUERY_IN_PROGRESS = "333333"
QUERY_IN_PROGRESS_ASYNC = "333334"
SESSION_EXPIRED = "390112"
BAD_CREDENTIALS = "390100"
BAD_JWT = "390144"
BAD_OAUTH = "390303"
SQL_COMPILATION_ERROR = "001003"
STATEMENT_COUNT_MISMATCH = "000008"
CANCELED = "000604"
MULTI_STATEMENT_TYPE_ID = 0xA000  # the core reads resultIds only with this statement type


@dataclass
class Rule:
    """How to answer statements whose text matches ``pattern`` (a case-insensitive regex search)."""

    pattern: re.Pattern[str]
    columns: list[str] | None = None
    rows: list[list[Any]] | None = None
    error: tuple[str, str, str] | None = None  # (code, sqlState, message): refused at submission
    script: list[Any] | None = None  # status steps for async submissions matching the rule


@dataclass
class Session:
    token: str
    master_token: str
    user: str
    account: str
    role: str
    warehouse: str
    database: str
    schema: str
    authenticator: str


@dataclass
class Query:
    id: str
    sql: str
    bindings: dict[str, Any]
    parameters: dict[str, Any]
    request_id: str
    user: str
    role: str
    warehouse: str
    database: str
    schema: str
    is_async: bool
    script: JobScript
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    error: tuple[str, str, str] | None = None
    children: list[str] = field(default_factory=list)
    parent: str | None = None
    submitted_at: float = field(default_factory=time.time)
    status: str = "RUNNING"
    status_reads: int = 0
    cancel_requests: int = 0

    @property
    def query_tag(self) -> str:
        return str(self.parameters.get("QUERY_TAG") or "")


class SnowflakeFake(FakeService):
    """Snowflake's REST protocol on 127.0.0.1 with scripted query states, users, rules and a journal.

    ``default_script`` is the status sequence of an async query with no queued script: each
    ``GET /monitoring/queries/<qid>`` returns the next step; the last step sticks. A step is a status name or a
    dict ``{"status": "FAILED_WITH_ERROR", "errorCode": "100038", "errorMessage": "..."}``.
    """

    name = "snowflake"
    default_script: tuple[Any, ...] = ("RUNNING", "SUCCESS")

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.users: dict[str, dict[str, Any]] = {}
        self.rules: list[Rule] = []
        self.sessions: dict[str, Session] = {}
        self.queries: dict[str, Query] = {}
        self._by_request_id: dict[str, dict[str, Any]] = {}
        self._lose: list[tuple[re.Pattern[str], int]] = []
        self._lost_request_ids: dict[str, int] = {}
        self._db_lock = threading.Lock()
        self.db = sqlite3.connect(":memory:", check_same_thread=False)

    def reset_state(self) -> None:
        self.users.clear()
        self.rules.clear()
        self.sessions.clear()
        self.queries.clear()
        self._by_request_id.clear()
        self._lose.clear()
        self._lost_request_ids.clear()
        with self._db_lock:
            self.db.close()
            self.db = sqlite3.connect(":memory:", check_same_thread=False)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> SnowflakeFake:
        super().serve(host, port)
        # The toolkit's handler writes headers and body in two sends; with Nagle's algorithm and the client's
        # delayed ACK every request then waits ~40 ms. The driver makes several requests per call.
        assert self._server is not None
        self._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        return self

    # ================================================================== test API
    def add_user(
        self, name: str, *, password: str | None = None, public_key: Any = None, oauth_token: str | None = None
    ) -> None:
        """Register a user; a registered user must log in with one of the credentials given here.

        ``public_key`` is a cryptography public key (or PEM bytes); the key-pair JWT is then verified. Users
        that are not registered may log in with anything (handy for ``flyteconnectors fake snowflake``).
        """
        if isinstance(public_key, (bytes, str)):
            from cryptography.hazmat.primitives import serialization

            public_key = serialization.load_pem_public_key(
                public_key.encode() if isinstance(public_key, str) else public_key
            )
        with self.lock:
            self.users[name.upper()] = {"password": password, "public_key": public_key, "oauth_token": oauth_token}

    def add_rule(
        self,
        pattern: str,
        *,
        columns: list[str] | None = None,
        rows: list[list[Any]] | None = None,
        error: tuple[str, str, str] | None = None,
        script: list[Any] | None = None,
    ) -> None:
        """Answer statements matching ``pattern`` with these rows, this error, or this status script."""
        with self.lock:
            self.rules.append(Rule(re.compile(pattern, re.IGNORECASE | re.DOTALL), columns, rows, error, script))

    def lose_answers(self, sql: str, *, status: int = 503, count: int = 1) -> None:
        """Run the next ``count`` statements matching ``sql``, then answer ``status`` instead of the result.

        The answer stays lost for the driver's retries of the same request (same ``requestId``), as when a load
        balancer keeps timing out: the statement ran once, and the client never learns its query id.
        """
        with self.lock:
            self._lose.extend([(re.compile(sql, re.IGNORECASE | re.DOTALL), status)] * count)

    def expire_sessions(self) -> None:
        """Forget every session, as Snowflake does when session and master tokens expire."""
        with self.lock:
            self.sessions.clear()

    def cancelled(self) -> list[Query]:
        """Queries that received a cancel request (SYSTEM$CANCEL_QUERY or abort-request)."""
        with self.lock:
            return [q for q in self.queries.values() if q.cancel_requests]

    def submissions(self, sql: str | None = None, *, is_async: bool | None = True) -> list[Query]:
        """Statements that ran (top-level, deduplicated by requestId), optionally filtered by a SQL regex."""
        with self.lock:
            found = [q for q in self.queries.values() if q.parent is None]
        if is_async is not None:
            found = [q for q in found if q.is_async == is_async]
        if sql is not None:
            found = [q for q in found if re.search(sql, q.sql, re.IGNORECASE)]
        return found

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run SQL directly on the fake's sqlite database (set up tables, count rows)."""
        with self._db_lock:
            cur = self.db.execute(statement, params)
            self.db.commit()
            return cur.fetchall()

    # ================================================================== protocol helpers
    @staticmethod
    def _body(request: FakeRequest) -> dict[str, Any]:
        raw = request.body
        if request.header("content-encoding", "").lower() == "gzip" or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return json.loads(raw) if raw else {}

    @staticmethod
    def _ok(data: Any, code: str | None = None, message: str | None = None) -> dict[str, Any]:
        return {"success": True, "code": code, "message": message, "data": data}

    @staticmethod
    def _fail(code: str, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"success": False, "code": code, "message": message,
                "data": {"errorCode": code, "internalError": False, **(data or {})}}

    @staticmethod
    def _expired() -> dict[str, Any]:
        # Snowflake's answer to an unknown or expired session token: HTTP 200, data null.
        return {"success": False, "code": SESSION_EXPIRED, "message": "Your session has expired. Please login again.",
                "data": None, "headers": None}

    def _session(self, request: FakeRequest) -> Session | None:
        header = request.header("authorization", "") or ""
        match = re.search(r'Token="([^"]*)"', header)
        return self.sessions.get(match.group(1)) if match else None

    # ================================================================== session
    @route("POST", r"/session/v1/login-request")
    def login(self, request: FakeRequest) -> Any:
        data = self._body(request).get("data", {})
        user = str(data.get("LOGIN_NAME") or "")
        account = str(data.get("ACCOUNT_NAME") or "")
        authenticator = str(data.get("AUTHENTICATOR") or "SNOWFLAKE").upper()
        problem = self._check_credentials(user, account, authenticator, data)
        if problem is not None:
            return self._fail(*problem)
        q = request.query
        session = Session(
            token=f"ST-{uuid.uuid4().hex}", master_token=f"MT-{uuid.uuid4().hex}", user=user.upper(),
            account=account.upper(), role=(q.get("roleName") or "PUBLIC").upper(),
            warehouse=(q.get("warehouse") or "").upper(), database=(q.get("databaseName") or "").upper(),
            schema=(q.get("schemaName") or "PUBLIC").upper(), authenticator=authenticator,
        )
        with self.lock:
            self.sessions[session.token] = session
        return self._ok({
            "token": session.token, "masterToken": session.master_token, "validityInSeconds": 3600,
            "masterValidityInSeconds": 14400, "sessionId": abs(hash(session.token)) % 10**12,
            "serverVersion": "9.0.0", "displayUserName": session.user, "healthCheckInterval": 45,
            "parameters": [{"name": "AUTOCOMMIT", "value": True}, {"name": "TIMEZONE", "value": "UTC"}],
            "sessionInfo": {"databaseName": session.database or None, "schemaName": session.schema,
                            "warehouseName": session.warehouse or None, "roleName": session.role},
        })

    def _check_credentials(
        self, user: str, account: str, authenticator: str, data: dict[str, Any]
    ) -> tuple[str, str] | None:
        registered = self.users.get(user.upper())
        if authenticator == "SNOWFLAKE_JWT":
            token = str(data.get("TOKEN") or "")
            key = registered.get("public_key") if registered else None
            if registered is not None and (key is None or not _jwt_valid(token, key, account, user)):
                return BAD_JWT, "JWT token is invalid."
            return None
        if authenticator == "OAUTH":
            token = str(data.get("TOKEN") or "")
            if registered is not None and token != registered.get("oauth_token"):
                return BAD_OAUTH, "Invalid OAuth access token."
            return None
        if registered is not None and data.get("PASSWORD") != registered.get("password"):
            return BAD_CREDENTIALS, "Incorrect username or password was specified."
        if not data.get("PASSWORD") and registered is None:
            return BAD_CREDENTIALS, "Incorrect username or password was specified."
        return None

    @route("POST", r"/session/token-request")
    def renew(self, request: FakeRequest) -> Any:
        body = self._body(request)
        old = str(body.get("oldSessionToken") or "")
        with self.lock:
            session = self.sessions.pop(old, None)
            if session is None:
                return self._expired()
            session.token = f"ST-{uuid.uuid4().hex}"
            self.sessions[session.token] = session
        return self._ok({"sessionToken": session.token, "validityInSecondsST": 3600,
                         "masterToken": session.master_token, "validityInSecondsMT": 14400})

    @route("POST", r"/session/heartbeat")
    def heartbeat(self, request: FakeRequest) -> Any:
        if self._session(request) is None:
            return self._expired()
        return self._ok({})

    @route("POST", r"/session")
    def logout(self, request: FakeRequest) -> Any:
        session = self._session(request)
        if session is not None and request.query.get("delete") == "true":
            with self.lock:
                self.sessions.pop(session.token, None)
        return self._ok(None)

    @route("POST", r"/telemetry/send")
    def telemetry(self, request: FakeRequest) -> Any:
        return self._ok(None)

    # ================================================================== queries
    @route("POST", r"/queries/v1/query-request")
    def query_request(self, request: FakeRequest) -> Any:
        session = self._session(request)
        if session is None:
            return self._expired()
        body = self._body(request)
        request_id = request.query.get("requestId") or uuid.uuid4().hex
        with self.lock:
            # Snowflake runs a statement once per requestId: a retry of a lost request gets the first answer.
            answer = self._by_request_id.get(request_id)
            if answer is None:
                answer = self._submit(session, body, request_id)
                self._by_request_id[request_id] = answer
                sql = str(body.get("sqlText") or "")
                lose = next((i for i, (pattern, _) in enumerate(self._lose) if pattern.search(sql)), None)
                if lose is not None:
                    self._lost_request_ids[request_id] = self._lose.pop(lose)[1]
            if request_id in self._lost_request_ids:
                status = self._lost_request_ids[request_id]
                return FakeResponse(status, {"error": "the answer was lost on the way back"})
            return answer

    def _submit(self, session: Session, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        sql = str(body.get("sqlText") or "")
        bindings = body.get("bindings") or {}
        parameters = {str(k).upper(): v for k, v in (body.get("parameters") or {}).items()}
        is_async = bool(body.get("asyncExec"))
        query = self._new_query(session, sql, bindings, parameters, request_id, is_async)
        statements = _split_statements(sql)
        wanted = int(parameters.get("MULTI_STATEMENT_COUNT", 1) or 0)
        if len(statements) > 1 and wanted not in (0, len(statements)):
            query.error = (STATEMENT_COUNT_MISMATCH, "0A000",
                           f"Actual statement count {len(statements)} did not match the desired statement count "
                           f"{wanted}.")
        elif len(statements) > 1:
            offset = 0
            for text in statements:
                count = _count_binds(text)
                child_bindings = {str(i + 1): bindings.get(str(offset + i + 1)) for i in range(count)}
                offset += count
                child = self._new_query(session, text, child_bindings, parameters, uuid.uuid4().hex, is_async)
                child.parent = query.id
                self._run(child)
                child.status = "FAILED_WITH_ERROR" if child.error else "SUCCESS"
                query.children.append(child.id)
                if child.error is not None:
                    query.error = child.error
                    break
            query.columns = ["multiple statement execution"]
            query.rows = [["Multiple statements executed successfully."]]
        else:
            self._run(query)
        self.queries[query.id] = query
        if query.error is not None:
            # Compilation errors, unknown objects and statement-count mismatches are refused at submission,
            # async or not. Failures while running come from a status script instead.
            code, sql_state, message = query.error
            query.script = JobScript([{"status": "FAILED_WITH_ERROR", "errorCode": code, "errorMessage": message}])
            query.status = "FAILED_WITH_ERROR"
            return self._fail(code, message, {"sqlState": sql_state, "queryId": query.id})
        if is_async:
            rule = self._rule(sql)
            query.script = JobScript(rule.script) if rule is not None and rule.script else self.new_job_script(query.id)
            query.status = "QUEUED"
            return self._ok({"queryId": query.id, "getResultUrl": f"/queries/{query.id}/result"},
                            QUERY_IN_PROGRESS_ASYNC, "Asynchronous execution in progress.")
        query.status = "SUCCESS"
        return self._result_body(query)

    def _new_query(
        self, session: Session, sql: str, bindings: dict[str, Any], parameters: dict[str, Any], request_id: str,
        is_async: bool,
    ) -> Query:
        query = Query(
            id=str(uuid.uuid4()), sql=sql, bindings=bindings, parameters=parameters, request_id=request_id,
            user=session.user, role=session.role, warehouse=session.warehouse, database=session.database,
            schema=session.schema, is_async=is_async, script=JobScript(["SUCCESS"]),
        )
        self.queries[query.id] = query
        return query

    def _rule(self, sql: str) -> Rule | None:
        return next((r for r in self.rules if r.pattern.search(sql)), None)

    def _run(self, query: Query) -> None:
        """Compute the query's answer now (the side effect happens once, at submission)."""
        rule = self._rule(query.sql)
        values = [_binding_value(query.bindings.get(str(i + 1))) for i in range(len(query.bindings))]
        if rule is not None and (rule.columns is not None or rule.error is not None):
            query.columns, query.rows = list(rule.columns or []), [list(r) for r in rule.rows or []]
            query.error = rule.error
            return
        upper = query.sql.upper()
        if "SYSTEM$CANCEL_QUERY" in upper:
            target = values[0] if values else (re.findall(r"'([^']*)'", query.sql) or [""])[0]
            query.columns, query.rows = [f"SYSTEM$CANCEL_QUERY({target!r})"], [[self._cancel(str(target))]]
            return
        if "QUERY_HISTORY" in upper and "QUERY_TAG" in upper:
            tag = str(values[-1]) if values else ""
            matches = sorted(
                (q for q in self.queries.values()
                 if q.parent is None and q.user == query.user and q.query_tag == tag and q.id != query.id),
                key=lambda q: q.submitted_at,
            )
            query.columns = ["QUERY_ID", "QUERY_TAG", "EXECUTION_STATUS", "START_TIME"]
            query.rows = [[q.id, q.query_tag, q.status, q.submitted_at] for q in matches]
            return
        try:
            with self._db_lock:
                cur = self.db.execute(_to_sqlite(query.sql), values)
                self.db.commit()
                rows = cur.fetchall()
                description = cur.description
        except sqlite3.Error as err:
            query.error = (SQL_COMPILATION_ERROR, "42000", f"SQL compilation error: {err}")
            return
        if description:
            query.columns, query.rows = [d[0].upper() for d in description], [list(r) for r in rows]
        else:
            query.columns, query.rows = ["number of rows affected"], [[cur.rowcount if cur.rowcount >= 0 else 0]]

    def _cancel(self, query_id: str) -> str:
        target = self.queries.get(query_id)
        if target is not None:
            target.cancel_requests += 1
        if target is None or target.status in TERMINAL_STATUSES:
            return "Identified SQL statement is not currently executing."
        target.script.jump_to_end({"status": "ABORTED", "errorCode": CANCELED,
                                   "errorMessage": "SQL execution canceled"})
        target.status = "ABORTED"
        return f"query [{query_id}] terminated."

    def _result_body(self, query: Query) -> dict[str, Any]:
        if query.error is not None or query.status in ("FAILED_WITH_ERROR", "ABORTED", "FAILED_WITH_INCIDENT"):
            code, sql_state, message = query.error or (CANCELED, "57014", "SQL execution canceled")
            return self._fail(code, message, {"sqlState": sql_state, "queryId": query.id})
        rowtype = [_column(name, [row[i] for row in query.rows]) for i, name in enumerate(query.columns)]
        data: dict[str, Any] = {
            "queryId": query.id, "rowtype": rowtype, "rowset": [[_cell(v) for v in row] for row in query.rows],
            "total": len(query.rows), "returned": len(query.rows), "queryResultFormat": "json",
            "statementTypeId": 4096, "parameters": [], "finalDatabaseName": query.database or None,
            "finalSchemaName": query.schema or None, "finalWarehouseName": query.warehouse or None,
            "finalRoleName": query.role,
        }
        if query.children:
            data["statementTypeId"] = MULTI_STATEMENT_TYPE_ID
            data["resultIds"] = ",".join(query.children)
            data["resultTypes"] = ",".join("4096" for _ in query.children)
        return self._ok(data)

    # ================================================================== status, results, abort
    @route("GET", r"/monitoring/queries/+(?P<qid>[^/]+)")
    def monitoring(self, request: FakeRequest, qid: str) -> Any:
        if self._session(request) is None:
            return self._expired()
        with self.lock:
            query = self.queries.get(qid)
            if query is None:
                return self._ok({"queries": []})
            step = query.script.advance()
            query.status_reads += 1
            status, code, message = _step(step)
            query.status = status
        if status == "NO_DATA":
            return self._ok({"queries": []})
        entry: dict[str, Any] = {
            "id": query.id, "status": status, "state": status, "sqlText": query.sql,
            "startTime": int(query.submitted_at * 1000), "endTime": 0, "totalDuration": 0,
            "errorCode": code, "errorMessage": message,
            "stats": {}, "warehouseName": query.warehouse, "databaseName": query.database,
            "schemaName": query.schema, "userName": query.user, "queryTag": query.query_tag,
        }
        if code:
            with self.lock:
                query.error = (code, "P0000", message or "")
        return self._ok({"queries": [entry]})

    @route("GET", r"/queries/(?P<qid>[^/]+)/result")
    def result(self, request: FakeRequest, qid: str) -> Any:
        if self._session(request) is None:
            return self._expired()
        with self.lock:
            query = self.queries.get(qid)
            if query is None:
                return self._fail("000709", f"Statement {qid} not found", {"queryId": qid})
            if query.status not in TERMINAL_STATUSES:
                return self._ok({"queryId": qid, "getResultUrl": f"/queries/{qid}/result"},
                                QUERY_IN_PROGRESS, "Query execution in progress.")
            return self._result_body(query)

    @route("POST", r"/queries/(?P<qid>[^/]+)/abort-request")
    def abort(self, request: FakeRequest, qid: str) -> Any:
        if self._session(request) is None:
            return self._expired()
        with self.lock:
            self._cancel(qid)
        return self._ok(None)

    # ================================================================== control API
    def _control(self, request: FakeRequest) -> FakeResponse:
        action = request.path[len("/_fake/"):].strip("/")
        if action == "snowflake/rule" and request.method == "POST":
            spec = request.json()
            error = spec.get("error")
            self.add_rule(spec["pattern"], columns=spec.get("columns"), rows=spec.get("rows"),
                          error=tuple(error) if error else None, script=spec.get("script"))
            return FakeResponse(200, {"ok": True})
        if action == "snowflake/user" and request.method == "POST":
            spec = request.json()
            self.add_user(spec["name"], password=spec.get("password"), public_key=spec.get("public_key"),
                          oauth_token=spec.get("oauth_token"))
            return FakeResponse(200, {"ok": True})
        if action == "snowflake/queries":
            return FakeResponse(200, [
                {"id": q.id, "sql": q.sql, "status": q.status, "query_tag": q.query_tag, "async": q.is_async,
                 "user": q.user, "status_reads": q.status_reads}
                for q in self.submissions(is_async=None)
            ])
        return super()._control(request)


# ====================================================================== helpers
def _step(step: Any) -> tuple[str, str | None, str | None]:
    if isinstance(step, dict):
        return str(step.get("status", "RUNNING")).upper(), step.get("errorCode"), step.get("errorMessage")
    status = str(step).upper()
    if status == "FAILED_WITH_ERROR":
        return status, "100038", "Numeric value 'abc' is not recognized"
    if status == "FAILED_WITH_INCIDENT":
        return status, "000603", "SQL execution internal error: Processing aborted due to error 300010:391167117"
    if status == "ABORTED":
        return status, CANCELED, "SQL execution canceled"
    return status, None, None


def _jwt_valid(token: str, public_key: Any, account: str, user: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        header_b64, payload_b64, sig_b64 = token.split(".")
        payload = json.loads(_b64decode(payload_b64))
        public_key.verify(_b64decode(sig_b64), f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(),
                          hashes.SHA256())
    except (ValueError, InvalidSignature):
        return False
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    fp = "SHA256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    who = f"{account.split('.')[0].upper()}.{user.upper()}"
    return bool(payload.get("iss") == f"{who}.{fp}" and payload.get("sub") == who
                and float(payload.get("exp", 0)) > time.time())


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _split_statements(sql: str) -> list[str]:
    """Split on top-level ``;`` (outside quotes and comments); empty statements are dropped."""
    parts, current, i, n = [], [], 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            end = i + 1
            while end < n and not (sql[end] == ch and (end + 1 >= n or sql[end + 1] != ch)):
                end += 2 if sql[end] == ch else 1
            current.append(sql[i:end + 1])
            i = end + 1
            continue
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if ch == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _count_binds(sql: str) -> int:
    return len(re.findall(r"\?|:\d+", re.sub(r"'(?:[^']|'')*'", "", sql)))


def _to_sqlite(sql: str) -> str:
    # Snowflake's numeric binds (:1) are sqlite's ?1.
    return re.sub(r"(?<![:\w]):(\d+)", r"?\1", sql)


def _binding_value(binding: Any) -> Any:
    """A bound value as sqlite stores it (the driver sends numbers as text, times as epoch units)."""
    if not isinstance(binding, dict):
        return binding
    kind = str(binding.get("type", "TEXT")).upper()
    value = binding.get("value")
    if value is None:
        return None
    if kind == "FIXED":
        return int(value) if re.fullmatch(r"-?\d+", str(value)) else float(value)
    if kind == "REAL":
        return float(value)
    if kind == "BOOLEAN":
        return str(value).lower() in ("true", "1")
    if kind.startswith("TIMESTAMP"):
        seconds = int(str(value).split()[0]) / 1e9
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None).isoformat()
    if kind == "DATE":
        return (datetime.date(1970, 1, 1) + datetime.timedelta(milliseconds=int(value))).isoformat()
    if kind == "BINARY":
        return bytes.fromhex(str(value))
    return value


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _column(name: str, values: list[Any]) -> dict[str, Any]:
    sample = next((v for v in values if v is not None), "")
    if isinstance(sample, bool):
        kind: dict[str, Any] = {"type": "boolean"}
    elif isinstance(sample, int):
        kind = {"type": "fixed", "precision": 38, "scale": 0}
    elif isinstance(sample, float):
        kind = {"type": "real"}
    else:
        kind = {"type": "text", "length": 16777216, "byteLength": 16777216}
    return {"name": name, "database": "", "schema": "", "table": "", "nullable": True, "precision": None,
            "scale": None, "length": None, "byteLength": None, "collation": None, **kind}
