"""Snowflake queries as Flyte tasks: submitted asynchronously, inputs bound server-side, results by reference.

Blocking driver (snowflake-connector-python 5.x, HTTP in a Rust core): every method is a plain ``def``, so the
core runs it in this package's thread pool. The driver is imported inside the methods that use it, so loading
this module (host start-up, ``flyteconnectors list``) does not load the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import Field

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
    Secrets,
    StateMap,
    TaskConfig,
    TaskContext,
    TransientServiceError,
    fingerprint,
)
from flyteconnectors.snowflake.sql import render

if TYPE_CHECKING:
    from snowflake.connector import SnowflakeConnection

log = logging.getLogger("flyteconnectors.snowflake")

TASK_TYPE = "snowflake-query"
#: The output that receives the query id; any other (single) output receives the result as a structured dataset.
QUERY_ID_OUTPUT = "query_id"


# ================================================================================================ 1. config
class SnowflakeQueryConfig(TaskConfig):
    """What a Snowflake query task may ask for. Unset connection fields fall back to the host's defaults."""

    sql_field = "query"

    #: The SQL template (``TaskTemplate.sql``). Inputs are named ``:name`` and bound server-side.
    query: str = ""
    account: str | None = None
    user: str | None = None
    role: str | None = None
    warehouse: str | None = None
    database: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    #: Tag shown in Snowflake's query history; the connector appends the attempt's idempotency key.
    query_tag: str | None = Field(default=None, max_length=1900)
    #: STATEMENT_TIMEOUT_IN_SECONDS for this query.
    statement_timeout: int | None = Field(default=None, gt=0, le=604800)
    #: Allow several ``;``-separated statements. Off by default: a second statement fails the task clearly.
    multi_statement: bool = False
    #: How to log in: a key pair, a password or an OAuth token from secrets. ``auto`` takes the first one set.
    auth: Literal["auto", "key_pair", "password", "oauth"] = "auto"
    #: Secret names are ``<prefix>_private_key`` (+ ``_private_key_passphrase``), ``<prefix>_password``,
    #: ``<prefix>_oauth_token``, so tasks can log in as different users.
    secret_prefix: str = Field(default="snowflake", pattern=r"^[a-z][a-z0-9_]*$")


class SnowflakeSettings(ConnectorSettings):
    """Host-level settings: ``FLYTECONNECTORS_SNOWFLAKE_<FIELD>``."""

    #: Endpoint override (private link, a proxy, or the local fake: ``127.0.0.1``, its port, ``http``).
    host: str | None = None
    port: int | None = None
    protocol: Literal["https", "http"] = "https"
    #: Defaults for tasks that do not set these.
    default_account: str | None = None
    default_user: str | None = None
    default_role: str | None = None
    default_warehouse: str | None = None
    default_database: str | None = None
    default_schema: str | None = None
    #: Snowsight, for the link to each query's detail page ("" for no link).
    console_url: str = "https://app.snowflake.com"
    login_timeout: int = 30
    #: Seconds for one HTTP request to Snowflake.
    request_timeout: int = 30
    #: HTTP attempts per driver call (the driver retries 429/5xx and lost responses with the same requestId).
    retry_max_attempts: int = 3
    retry_backoff_base_ms: int = 250
    #: How long Snowflake may answer NO_DATA for a submitted query before the task fails as not found. The
    #: driver treats NO_DATA as "still running" forever; right after submission it is briefly normal.
    not_found_grace: float = 300.0
    #: How far back (newest first) to look for a query submitted by an earlier try of the same create.
    history_limit: int = 10000


# ================================================================================================ 2. job metadata
class SnowflakeQueryMeta(JobMeta):
    """Enough to reconnect as the same user and find the query again. No credentials: only secret names."""

    #: Snowflake query ids are UUIDs; anything else is refused as a malformed handle before reaching the driver.
    query_id: str = Field(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
    account: str
    user: str
    role: str | None = None
    warehouse: str | None = None
    database: str | None = None
    schema_name: str | None = None
    sign_in: Literal["key_pair", "password", "oauth"] = "key_pair"
    secrets_prefix: str = "snowflake"
    submitted_at: float = 0.0
    multi_statement: bool = False
    #: Output names to fill on success (the interface's).
    results_output: str | None = None
    query_id_output: str | None = None


# ================================================================================================ 3. states
#: Every ``snowflake.connector.constants.QueryStatus`` of snowflake-connector-python 5.2.
STATES = StateMap(
    {
        "QUEUED": Phase.QUEUED,
        "RESUMING_WAREHOUSE": Phase.WAITING_FOR_RESOURCES,
        "QUEUED_REPARING_WAREHOUSE": Phase.WAITING_FOR_RESOURCES,  # sic: the server's spelling
        "RUNNING": Phase.RUNNING,
        "BLOCKED": Phase.RUNNING,  # waiting on a lock held by another statement
        "RESTARTED": Phase.RUNNING,  # Snowflake retries the query itself
        "DISCONNECTED": Phase.RUNNING,  # the submitting session broke; Snowflake moves it to FAILED_WITH_ERROR
        "ABORTING": Phase.RUNNING,  # being cancelled; ABORTED follows
        "NO_DATA": Phase.RUNNING,  # not visible yet; bounded by not_found_grace in get()
        "SUCCESS": Phase.SUCCEEDED,
        "FAILED_WITH_ERROR": Phase.FAILED,
        "ABORTED": Phase.ABORTED,
        "FAILED_WITH_INCIDENT": Phase.RETRYABLE_FAILED,  # a Snowflake-side incident, not the query's fault
    },
    service="snowflake",
)


@dataclass(frozen=True)
class _Target:
    """Who to connect as, and where: one pooled connection per distinct target and credential."""

    account: str
    user: str
    role: str | None
    warehouse: str | None
    database: str | None
    schema: str | None
    sign_in: str
    secrets_prefix: str


# ================================================================================================ 4. the connector
class SnowflakeQuery(AsyncConnector[SnowflakeQueryConfig, SnowflakeQueryMeta]):
    name = "Snowflake query"
    task_type = TASK_TYPE
    settings_model = SnowflakeSettings
    secret_names = (
        "snowflake_private_key", "snowflake_private_key_passphrase", "snowflake_password", "snowflake_oauth_token",
    )

    def warm_up(self) -> None:
        import snowflake.connector  # noqa: F401  (the driver and its Rust core)

    def create(self, task: TaskContext[SnowflakeQueryConfig]) -> SnowflakeQueryMeta:
        cfg = task.config
        statement = render(cfg.query, task.inputs)
        if statement.statements == 0:
            raise InvalidTaskConfig("query", "there is no SQL statement to run")
        if statement.statements > 1 and not cfg.multi_statement:
            raise InvalidTaskConfig(
                "query", f"it holds {statement.statements} statements; set multi_statement=True to run a script"
            )
        results_output, query_id_output = _output_roles(task.output_names)
        target = self._target(cfg, task.secrets)
        tag = f"{cfg.query_tag} flyte:{task.idempotency_key}" if cfg.query_tag else f"flyte:{task.idempotency_key}"
        with self._session(target, task.secrets) as conn:
            # The driver dedupes its own retries by requestId, but a create retried after a lost answer is a new
            # request: find the query an earlier try submitted, by its tag, before running the SQL again.
            query_id = self._submitted(conn, tag)
            if query_id is None:
                parameters: dict[str, Any] = {"QUERY_TAG": tag}
                if cfg.statement_timeout:
                    parameters["STATEMENT_TIMEOUT_IN_SECONDS"] = cfg.statement_timeout
                with contextlib.closing(conn.cursor()) as cur:
                    cur.execute_async(statement.sql, statement.params or None,
                                      num_statements=0 if cfg.multi_statement else 1, _statement_params=parameters)
                    query_id = cur.sfqid
            if not query_id:
                raise TransientServiceError("Snowflake accepted the query but returned no query id")
        log.info("snowflake query %s submitted for %s", query_id, task.idempotency_key)
        return SnowflakeQueryMeta(
            query_id=query_id, account=target.account, user=target.user, role=target.role,
            warehouse=target.warehouse, database=target.database, schema_name=target.schema,
            sign_in=target.sign_in, secrets_prefix=target.secrets_prefix, submitted_at=time.time(),
            multi_statement=cfg.multi_statement, results_output=results_output, query_id_output=query_id_output,
        )

    def get(self, job: SnowflakeQueryMeta, ctx: CallContext) -> Resource:
        links = self._links(job)
        info = {"query_id": job.query_id, "warehouse": job.warehouse}
        with self._session(_target_of(job), ctx.secrets) as conn:
            status = conn.get_query_status(job.query_id)
            if status.name == "NO_DATA":
                waited = time.time() - job.submitted_at
                if waited > self.settings.not_found_grace:
                    raise JobNotFound(f"Snowflake has had no record of query {job.query_id} for {waited:.0f}s "
                                      "(expired, or not visible to this user and role)")
                # Also what the driver makes of a status name it does not know (it logs a warning).
                return STATES.resource(status.name, f"Snowflake reports no status for query {job.query_id} yet "
                                       "(NO_DATA, or a status this driver does not know); still waiting",
                                       log_links=links, custom_info=info)
            phase = STATES.phase(status.name)
            message, outputs = "", None
            if phase is Phase.SUCCEEDED:
                outputs = self._outputs(conn, job)
            elif phase.is_terminal:
                message = _failure_message(conn, job.query_id, status.name)
        return STATES.resource(status.name, message, outputs=outputs, log_links=links, custom_info=info)

    def delete(self, job: SnowflakeQueryMeta, ctx: CallContext) -> None:
        from snowflake.connector import ProgrammingError

        with self._session(_target_of(job), ctx.secrets) as conn, contextlib.closing(conn.cursor()) as cur:
            try:
                cur.execute("SELECT SYSTEM$CANCEL_QUERY(?)", (job.query_id,))
            except ProgrammingError as err:
                # Cancelling a query that already finished, or that Snowflake no longer knows, is done.
                if "not found" in str(err).lower() or "not currently executing" in str(err).lower():
                    return
                raise
            row = cur.fetchone()
        log.info("snowflake cancel %s: %s", job.query_id, row[0] if row else "")

    def close(self) -> Awaitable[None]:
        # Closing a connection logs its session out over HTTP: keep that off the event loop while the host drains.
        return asyncio.to_thread(self.clients.close)

    # ============================================================================================ internals
    def _target(self, cfg: SnowflakeQueryConfig, secrets: Secrets) -> _Target:
        s = self.settings
        account = cfg.account or s.default_account
        user = cfg.user or s.default_user
        database = cfg.database or s.default_database
        for field, value in (("account", account), ("user", user), ("database", database)):
            if not value:
                why = " (its INFORMATION_SCHEMA finds a query again after a lost answer)" if field == "database" else ""
                raise InvalidTaskConfig(field, f"required{why}: set it on the task or "
                                        f"FLYTECONNECTORS_SNOWFLAKE_DEFAULT_{field.upper()} on the host")
        assert account and user and database
        return _Target(account, user, cfg.role or s.default_role, cfg.warehouse or s.default_warehouse, database,
                       cfg.schema_ or s.default_schema, _sign_in(cfg.auth, cfg.secret_prefix, secrets),
                       cfg.secret_prefix)

    @contextlib.contextmanager
    def _session(self, target: _Target, secrets: Secrets) -> Iterator[SnowflakeConnection]:
        """The pooled connection for ``target``, with driver errors mapped to the core's errors."""
        from snowflake.connector import Error, OperationalError, ProgrammingError

        credentials = _credentials(target, secrets)
        key = (self.settings.host, self.settings.port, self.settings.protocol, target,
               fingerprint(*sorted(credentials.items())))
        conn = self.clients.get(key, lambda: self._connect(target, credentials))
        if conn.is_closed():
            self.clients.discard(key)
            conn = self.clients.get(key, lambda: self._connect(target, credentials))
        try:
            yield conn
        except OperationalError as err:
            # Network, timeouts, 429/5xx after the driver's own retries: the session is fine, try again later.
            raise TransientServiceError(f"Snowflake did not answer: {_describe(err)}") from None
        except ProgrammingError as err:
            if err.parameter:
                raise InvalidTaskConfig(err.parameter, _describe(err)) from None
            raise JobRejected(f"Snowflake refused the query: {_describe(err)}", code=str(err.errno)) from None
        except Error as err:
            # A closed connection or a session Snowflake no longer knows (tokens expired): log in again next time.
            self.clients.discard(key)
            raise TransientServiceError(f"Snowflake session lost, reconnecting: {_describe(err)}") from None

    def _connect(self, target: _Target, credentials: dict[str, str]) -> SnowflakeConnection:
        import snowflake.connector
        from snowflake.connector import DatabaseError, OperationalError, ProgrammingError

        s = self.settings
        endpoint: dict[str, Any] = {}
        if s.host:
            endpoint = {"host": s.host, "protocol": s.protocol}
            if s.port:
                endpoint["port"] = s.port
        try:
            return snowflake.connector.connect(
                account=target.account, user=target.user, role=target.role, warehouse=target.warehouse,
                database=target.database, schema=target.schema, **endpoint, **_auth_kwargs(target, credentials),
                paramstyle="qmark",  # server-side binding; the default (pyformat) formats values into the SQL
                login_timeout=s.login_timeout, request_timeout=s.request_timeout,
                retry_max_attempts=s.retry_max_attempts, retry_backoff_base_ms=s.retry_backoff_base_ms,
                client_session_keep_alive=True,
                # On close (host drain) keep the session alive while our async queries still run in it.
                enable_server_session_keep_alive_auto_detection=True,
            )
        except OperationalError as err:
            raise TransientServiceError(f"could not reach Snowflake: {_describe(err)}") from None
        except ProgrammingError as err:
            raise InvalidTaskConfig(err.parameter or "account", _describe(err)) from None
        except DatabaseError as err:
            if "after retries" in str(err) or "timed out" in str(err).lower():
                raise TransientServiceError(f"could not reach Snowflake: {_describe(err)}") from None
            raise JobRejected(f"Snowflake refused the login of {target.user} ({target.sign_in}): {_describe(err)}",
                              code=str(err.errno)) from None

    def _submitted(self, conn: SnowflakeConnection, tag: str) -> str | None:
        """The query an earlier try of this create submitted (same tag), if any."""
        with contextlib.closing(conn.cursor()) as cur:
            cur.execute(
                "SELECT QUERY_ID FROM TABLE(INFORMATION_SCHEMA.QUERY_HISTORY_BY_USER("
                f"RESULT_LIMIT => {int(self.settings.history_limit)})) WHERE QUERY_TAG = ? ORDER BY START_TIME LIMIT 1",
                (tag,),
            )
            row = cur.fetchone()
        if row:
            log.info("adopting snowflake query %s submitted earlier with tag %s", row[0], tag)
        return str(row[0]) if row else None

    def _outputs(self, conn: SnowflakeConnection, job: SnowflakeQueryMeta) -> dict[str, str]:
        outputs: dict[str, str] = {}
        if job.query_id_output:
            outputs[job.query_id_output] = job.query_id
        if job.results_output:
            result_id = _last_statement(conn, job.query_id) if job.multi_statement else job.query_id
            # flytekit's Snowflake structured-dataset decoder reads this URI (get_results_from_sfqid).
            outputs[job.results_output] = (
                f"snowflake://{job.user}:{job.account}/{job.warehouse or ''}/{job.database or ''}/"
                f"{job.schema_name or ''}/{result_id}"
            )
        return outputs

    def _links(self, job: SnowflakeQueryMeta) -> list[LogLink]:
        url = query_url(self.settings.console_url, job.account, job.query_id)
        return [LogLink("Snowflake query", url)] if url else []


def __getattr__(name: str) -> Any:
    # CONNECTORS also serves flytekit's task type (flytekit_compat.py subclasses the connector above). Built on first
    # use, so that either module may be imported first.
    if name == "CONNECTORS":
        from flyteconnectors.snowflake import flytekit_compat

        globals()[name] = (SnowflakeQuery, *flytekit_compat.CONNECTORS)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ================================================================================================ helpers
def query_url(console: str, account: str, query_id: str) -> str:
    """The Snowsight page of a query. Accounts are ``org-account`` or ``locator[.region[.cloud]]``."""
    if not console:
        return ""
    account = account.lower().removesuffix(".privatelink").removesuffix(".snowflakecomputing.com")
    if "." in account:
        locator, region = account.split(".", 1)
        path = f"{region}/{locator}"
    elif "-" in account:
        org, name = account.split("-", 1)
        path = f"{org}/{name}"
    else:  # a bare locator lives in the first deployment, AWS us-west-2
        path = f"us-west-2/{account}"
    return f"{console.rstrip('/')}/{path}/#/compute/history/queries/{quote(query_id, safe='-')}/detail"


def _target_of(job: SnowflakeQueryMeta) -> _Target:
    return _Target(job.account, job.user, job.role, job.warehouse, job.database, job.schema_name, job.sign_in,
                   job.secrets_prefix)


def _output_roles(names: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Which output gets the result reference and which gets the query id."""
    query_id_output = QUERY_ID_OUTPUT if QUERY_ID_OUTPUT in names else None
    others = [n for n in names if n != QUERY_ID_OUTPUT]
    if len(others) > 1:
        raise InvalidTaskConfig(
            "outputs", f"a query has one result: declare one structured-dataset output (and optionally "
            f"{QUERY_ID_OUTPUT!r}), not {', '.join(others)}"
        )
    return (others[0] if others else None), query_id_output


def _sign_in(auth: str, prefix: str, secrets: Secrets) -> str:
    if auth != "auto":
        return auth
    for kind, secret in (("key_pair", "private_key"), ("oauth", "oauth_token"), ("password", "password")):
        if secrets.get(f"{prefix}_{secret}"):
            return kind
    raise InvalidTaskConfig(
        f"secret:{prefix}_private_key",
        f"no Snowflake credentials: set the secret {prefix}_private_key (key pair), {prefix}_oauth_token or "
        f"{prefix}_password",
    )


def _credentials(target: _Target, secrets: Secrets) -> dict[str, str]:
    p = target.secrets_prefix
    if target.sign_in == "key_pair":
        found = {"private_key": secrets.require(f"{p}_private_key")}
        passphrase = secrets.get(f"{p}_private_key_passphrase")
        if passphrase:
            found["passphrase"] = passphrase
        return found
    if target.sign_in == "oauth":
        return {"token": secrets.require(f"{p}_oauth_token")}
    return {"password": secrets.require(f"{p}_password")}


def _auth_kwargs(target: _Target, credentials: dict[str, str]) -> dict[str, Any]:
    if target.sign_in == "oauth":
        return {"authenticator": "oauth", "token": credentials["token"]}
    if target.sign_in == "password":
        return {"password": credentials["password"]}
    return {"private_key": load_private_key(credentials["private_key"], credentials.get("passphrase"),
                                            secret=f"{target.secrets_prefix}_private_key")}


def load_private_key(pem: str, passphrase: str | None = None, *, secret: str = "snowflake_private_key") -> Any:
    """A key object from a PEM secret. The 5.x driver refuses PEM bytes (it wants DER or a key object)."""
    from cryptography.hazmat.primitives import serialization

    text = pem.strip()
    if "\\n" in text and "\n" not in text:  # a PEM pasted into a one-line env var
        text = text.replace("\\n", "\n")
    try:
        return serialization.load_pem_private_key(text.encode(), password=passphrase.encode() if passphrase else None)
    except TypeError:
        raise InvalidTaskConfig(f"secret:{secret}", "the private key is encrypted: set the passphrase secret "
                                f"{secret}_passphrase" if not passphrase else "the key is not encrypted; "
                                f"remove {secret}_passphrase") from None
    except ValueError:
        raise InvalidTaskConfig(f"secret:{secret}", "not a PEM private key, or the passphrase is wrong") from None


def _failure_message(conn: SnowflakeConnection, query_id: str, status: str) -> str:
    """The query's error code and message, as Snowflake reports them."""
    from snowflake.connector import ProgrammingError

    try:
        conn.get_query_status_throw_if_error(query_id)
    except ProgrammingError as err:
        return f"Snowflake query {query_id} {status}: {err.errno:06d}: {err.raw_msg or err.msg}"
    return f"Snowflake query {query_id} ended {status}"


def _last_statement(conn: SnowflakeConnection, query_id: str) -> str:
    """The query id of a multi-statement script's last statement: the result a downstream task wants."""
    with contextlib.closing(conn.cursor()) as cur:
        cur.query_result(query_id)
        last = cur.sfqid or query_id
        while cur.nextset() is not None:
            last = cur.sfqid or last
    return last


def _describe(err: Exception) -> str:
    errno = getattr(err, "errno", None)
    sqlstate = getattr(err, "sqlstate", None)
    text = getattr(err, "raw_msg", None) or str(err)
    code = f"{errno:06d}" if isinstance(errno, int) and errno > 0 else ""
    head = f"{code} ({sqlstate})" if code and sqlstate else code
    return " ".join(f"{head}: {text}".split()) if head else " ".join(text.split())
