"""BigQuery query jobs: typed query parameters, every job option honoured, an idempotent create.

The SDK (google-cloud-bigquery) is imported lazily, in ``_sdk``, so that loading this module at host start-up
stays fast. Everything the task author controls is validated here, before any call to the service.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from flyteconnectors.core import (
    AsyncConnector,
    CallContext,
    ConnectorSettings,
    ExecutionIdentity,
    InvalidTaskConfig,
    JobMeta,
    LogLink,
    Phase,
    Resource,
    StateMap,
    TaskConfig,
    TaskContext,
    fingerprint,
)
from flyteconnectors.core.sql import replace_input_placeholders

if TYPE_CHECKING:
    from google.cloud import bigquery

#: The secret holding a service-account key (JSON). Without it the host's Application Default Credentials are used.
SERVICE_ACCOUNT_SECRET = "bigquery_service_account_json"

SCALAR_TYPES = ("INT64", "FLOAT64", "NUMERIC", "BOOL", "STRING", "BYTES", "DATE", "DATETIME", "TIMESTAMP")
#: Legacy names BigQuery also accepts, normalised to the standard ones.
TYPE_ALIASES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "DECIMAL": "NUMERIC"}
_ARRAY = re.compile(r"^ARRAY\s*<\s*(\w+)\s*>$")
# "project.dataset.table", "dataset.table", or the legacy "project:dataset.table". Project ids may hold a
# domain ("example.com:proj").
_TABLE = re.compile(r"^(?:(?P<project>[a-z0-9.:-]+?)[.:])?(?P<dataset>\w+)\.(?P<table>[\w$-]+)$", re.IGNORECASE)
_DATASET = re.compile(r"^(?:(?P<project>[a-z0-9.:-]+?)[.:])?(?P<dataset>\w+)$", re.IGNORECASE)
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
#: BigQuery allows 64 labels per job; these are the ones that carry the Flyte identity.
IDENTITY_LABELS = ("flyte-project", "flyte-domain", "flyte-execution", "flyte-node", "flyte-attempt")


# ============================================================================================ 1. config
class WriteDisposition(str, Enum):
    WRITE_TRUNCATE = "WRITE_TRUNCATE"
    WRITE_APPEND = "WRITE_APPEND"
    WRITE_EMPTY = "WRITE_EMPTY"


class CreateDisposition(str, Enum):
    CREATE_IF_NEEDED = "CREATE_IF_NEEDED"
    CREATE_NEVER = "CREATE_NEVER"


class Priority(str, Enum):
    INTERACTIVE = "INTERACTIVE"
    BATCH = "BATCH"


class BigQueryQueryConfig(TaskConfig):
    """A query job. Every input of the task is passed as the named query parameter ``@<input name>``."""

    sql_field = "query"

    #: The SQL; a SQL task carries it in ``TaskTemplate.sql``, so it is empty when the config is built.
    query: str = ""
    #: Project the job runs (and is billed) in. Default: the host's setting, else the credentials' project.
    project: str | None = None
    #: Where the job runs (``US``, ``EU``, ``europe-west1``...). Default: BigQuery infers it from the tables.
    location: str | None = None
    #: ``project.dataset.table`` or ``dataset.table``. Without it BigQuery writes an anonymous table.
    destination_table: str | None = None
    write_disposition: WriteDisposition | None = None
    create_disposition: CreateDisposition | None = None
    #: Dataset for unqualified table names in the query: ``project.dataset`` or ``dataset``.
    default_dataset: str | None = None
    #: Job labels; the Flyte execution identity is added as ``flyte-*`` labels.
    labels: dict[str, str] = Field(default_factory=dict)
    maximum_bytes_billed: int | None = Field(default=None, gt=0)
    priority: Priority | None = None
    #: Validate the query and report the bytes it would process, without running it.
    dry_run: bool = False
    use_query_cache: bool | None = None
    #: BigQuery types of inputs whose Flyte type is ambiguous: ``{"day": "DATE", "ids": "ARRAY<INT64>"}``.
    #: Inputs not listed get the type of their value (int: INT64, float: FLOAT64, str: STRING, bool: BOOL,
    #: datetime: TIMESTAMP, bytes: BYTES, Decimal: NUMERIC, date: DATE, list: ARRAY of its elements).
    parameter_types: dict[str, str] = Field(default_factory=dict)

    @field_validator("destination_table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None and not _TABLE.match(value):
            raise ValueError(f"{value!r} is not 'project.dataset.table' or 'dataset.table'")
        return value

    @field_validator("default_dataset")
    @classmethod
    def _dataset(cls, value: str | None) -> str | None:
        if value is not None and not _DATASET.match(value):
            raise ValueError(f"{value!r} is not 'project.dataset' or 'dataset'")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not _LABEL_KEY.match(key):
                raise ValueError(f"label key {key!r} must be 1-63 lowercase letters, digits, '_' or '-', "
                                 "starting with a letter")
            if key in IDENTITY_LABELS:
                raise ValueError(f"label key {key!r} is reserved for the Flyte execution identity")
            if not _LABEL_VALUE.match(value):
                raise ValueError(f"label {key!r}: value {value!r} must be at most 63 lowercase letters, digits, "
                                 "'_' or '-'")
        if len(labels) + len(IDENTITY_LABELS) > 64:
            raise ValueError(f"at most {64 - len(IDENTITY_LABELS)} labels (BigQuery allows 64 per job, "
                             f"{len(IDENTITY_LABELS)} carry the Flyte identity)")
        return labels

    @field_validator("parameter_types")
    @classmethod
    def _parameter_types(cls, types: dict[str, str]) -> dict[str, str]:
        return {name: parse_type(name, declared) for name, declared in types.items()}

    @model_validator(mode="after")
    def _dispositions_need_a_destination(self) -> BigQueryQueryConfig:
        if self.destination_table is None:
            for name in ("write_disposition", "create_disposition"):
                if getattr(self, name) is not None:
                    raise InvalidTaskConfig(name, "only applies to a destination_table; set one or drop it")
        return self


# ============================================================================================ 2. job metadata
class BigQueryJobMeta(JobMeta):
    """Enough to find the job again. Credentials come from the secret on every call, never from here."""

    #: BigQuery's id formats; anything else is refused as a malformed handle before the SDK builds a URL from it.
    job_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,1024}$")
    project: str = Field(pattern=r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{0,62}$")
    location: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    #: A dry run creates no job: its result is known at create time and kept here.
    dry_run: bool = False
    dry_run_bytes: int | None = None
    dry_run_destination: str | None = None


class BigQuerySettings(ConnectorSettings):
    """Set by whoever runs the host: ``FLYTECONNECTORS_BIGQUERY_<FIELD>``."""

    #: API endpoint override (``client_options.api_endpoint``), e.g. the fake's ``http://127.0.0.1:PORT``.
    endpoint: str | None = None
    #: Anonymous credentials, for the fake only.
    anonymous: bool = False
    #: Project for tasks that name none (before falling back to the credentials' project).
    project: str | None = None
    #: Location for tasks that name none.
    location: str | None = None
    console_url: str = "https://console.cloud.google.com/bigquery"
    #: Upper bound on one HTTP request to BigQuery, in seconds.
    request_timeout: float = 30.0
    #: Upper bound on the SDK's own retries of one call when the call has no deadline (local runs).
    retry_budget: float = 120.0
    #: First pause of the SDK's exponential backoff.
    retry_initial_delay: float = 1.0


# ============================================================================================ 3. states
#: BigQuery reports PENDING, RUNNING and DONE (google-cloud-bigquery 3.x ``job.state``). DONE is split by
#: ``status.errorResult``: none is success, reason ``stopped`` is a cancellation, a retryable reason (the
#: SDK's ``job_retry_reasons`` and ``_RETRYABLE_REASONS``) is worth another attempt, anything else failed.
STATES = StateMap(
    {
        "PENDING": Phase.QUEUED,
        "RUNNING": Phase.RUNNING,
        "DONE": Phase.SUCCEEDED,
        "DONE_STOPPED": Phase.ABORTED,
        "DONE_RETRYABLE": Phase.RETRYABLE_FAILED,
        "DONE_FAILED": Phase.FAILED,
    },
    service="bigquery",
)
RETRYABLE_REASONS = frozenset({
    "backendError", "internalError", "badGateway", "rateLimitExceeded",
    "jobBackendError", "jobInternalError", "jobRateLimitExceeded",
})


def job_state(state: str | None, error_result: dict[str, Any] | None) -> str:
    """The state-map key of a job: its state, with DONE split by the kind of ``errorResult``."""
    state = (state or "").upper()
    if state != "DONE" or not error_result:
        return state
    reason = error_result.get("reason", "")
    if reason == "stopped":
        return "DONE_STOPPED"
    return "DONE_RETRYABLE" if reason in RETRYABLE_REASONS else "DONE_FAILED"


def error_message(error_result: dict[str, Any] | None, errors: list[dict[str, Any]] | None = None) -> str:
    """``reason: message`` of the job's error, plus any further distinct errors BigQuery listed."""
    if not error_result:
        return ""
    first = f"{error_result.get('reason', 'error')}: {error_result.get('message', '')}".strip()
    more = [
        f"{e.get('reason', 'error')}: {e.get('message', '')}"
        for e in errors or []
        if e.get("message") and e.get("message") != error_result.get("message")
    ]
    return "; ".join([first, *more[:3]])


# ============================================================================================ parameters
def parse_type(name: str, declared: str) -> str:
    """Normalise a declared parameter type (``int64``, ``ARRAY<DATE>``); an unsupported one names the input."""
    text = declared.strip().upper()
    inner = _ARRAY.match(text)
    scalar = TYPE_ALIASES.get(inner.group(1) if inner else text, inner.group(1) if inner else text)
    if scalar not in SCALAR_TYPES:
        raise ValueError(f"{name}: BigQuery parameter type {declared!r} is not supported; use one of "
                         f"{', '.join(SCALAR_TYPES)} or ARRAY<one of them>")
    return f"ARRAY<{scalar}>" if inner else scalar


def _infer_scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, decimal.Decimal):
        return "NUMERIC"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, (bytes, bytearray)):
        return "BYTES"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP" if value.tzinfo is not None else "DATETIME"
    if isinstance(value, dt.date):
        return "DATE"
    return None


def _unsupported(name: str, value: Any) -> InvalidTaskConfig:
    return InvalidTaskConfig(
        f"inputs.{name}",
        f"a {type(value).__name__} cannot be a BigQuery query parameter; supported are "
        f"{', '.join(SCALAR_TYPES)} and arrays of them (declare ambiguous ones in parameter_types)",
    )


def _coerce(name: str, kind: str, value: Any) -> Any:
    """``value`` as the Python type the SDK serialises for ``kind``, or InvalidTaskConfig naming the input."""
    if value is None:
        return None
    try:
        if kind == "INT64":
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise TypeError
            number = int(value)
            if not -(2**63) <= number < 2**63:
                raise ValueError("out of the INT64 range")
            return number
        if kind == "FLOAT64":
            if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal, str)):
                raise TypeError
            return float(value)
        if kind == "NUMERIC":
            if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal, str)):
                raise TypeError
            numeric = decimal.Decimal(str(value))
            if not numeric.is_finite():
                raise ValueError("NUMERIC must be finite")
            return numeric
        if kind == "BOOL":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == "STRING":
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind == "BYTES":
            if isinstance(value, str):
                return value.encode()
            if not isinstance(value, (bytes, bytearray)):
                raise TypeError
            return bytes(value)
        if kind == "DATE":
            if isinstance(value, dt.datetime):
                return value.date()
            if isinstance(value, dt.date):
                return value
            if isinstance(value, str):
                return dt.date.fromisoformat(value)
            raise TypeError
        if kind in ("DATETIME", "TIMESTAMP"):
            if isinstance(value, str):
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
                value = dt.datetime.combine(value, dt.time())
            if not isinstance(value, dt.datetime):
                raise TypeError
            if kind == "DATETIME":
                # A DATETIME is civil time; Flyte datetimes are instants in UTC, so take the UTC wall clock.
                return value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value.tzinfo else value
            return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    except TypeError:
        raise InvalidTaskConfig(f"inputs.{name}", f"a {type(value).__name__} cannot be a {kind} parameter") from None
    except (ValueError, decimal.InvalidOperation, OverflowError) as err:
        raise InvalidTaskConfig(f"inputs.{name}", f"{value!r} is not a valid {kind}: {err}") from None
    raise InvalidTaskConfig(f"inputs.{name}", f"unsupported parameter type {kind}")


def query_parameters(inputs: dict[str, Any], declared: dict[str, str]) -> list[tuple[str, str, Any]]:
    """Every input as ``(name, type, value)``: ``type`` is a scalar type or ``ARRAY<scalar>``.

    Declared types win; otherwise the value's Python type decides. Anything else is an InvalidTaskConfig that
    names the input (flytekit's connector raised a bare KeyError here).
    """
    unknown = sorted(set(declared) - set(inputs))
    if unknown:
        raise InvalidTaskConfig(f"parameter_types.{unknown[0]}", "names no input of the task")
    params = []
    for name, value in inputs.items():
        kind = declared.get(name)
        if kind is None:
            kind = _infer_type(name, value)
        array = _ARRAY.match(kind)
        if array:
            if not isinstance(value, (list, tuple)):
                raise InvalidTaskConfig(f"inputs.{name}", f"declared {kind} but got a {type(value).__name__}")
            if any(v is None for v in value):
                raise InvalidTaskConfig(f"inputs.{name}", "BigQuery arrays cannot hold NULL elements")
            params.append((name, kind, [_coerce(f"{name}[{i}]", array.group(1), v) for i, v in enumerate(value)]))
        else:
            if isinstance(value, (list, tuple)):
                raise InvalidTaskConfig(f"inputs.{name}", f"declared {kind} but got a list; declare ARRAY<{kind}>")
            params.append((name, kind, _coerce(name, kind, value)))
    return params


def _infer_type(name: str, value: Any) -> str:
    if value is None:
        raise InvalidTaskConfig(f"inputs.{name}", "is None; declare its type in parameter_types to pass a NULL")
    if isinstance(value, (list, tuple)):
        kinds = {_infer_scalar(v) for v in value if v is not None}
        if not kinds:
            raise InvalidTaskConfig(f"inputs.{name}", "is an empty list; declare its type in parameter_types "
                                                      "(e.g. ARRAY<INT64>)")
        if None in kinds:
            bad = next(v for v in value if v is not None and _infer_scalar(v) is None)
            raise _unsupported(f"{name}[]", bad)
        if kinds == {"INT64", "FLOAT64"}:
            kinds = {"FLOAT64"}
        if len(kinds) > 1:
            raise InvalidTaskConfig(f"inputs.{name}", f"mixes {', '.join(sorted(str(k) for k in kinds))}; an array "
                                                      "has one type")
        return f"ARRAY<{kinds.pop()}>"
    kind = _infer_scalar(value)
    if kind is None:
        raise _unsupported(name, value)
    return kind


def bind_placeholders(query: str) -> str:
    """flytekit's ``{{ .inputs.name }}`` placeholders as the query parameter ``@name``, never as pasted text."""
    return replace_input_placeholders(query, lambda name: f"@{name}")


def job_labels(user: dict[str, str], identity: ExecutionIdentity) -> dict[str, str]:
    """The user's labels plus the Flyte execution identity (``flyte-project``, ``flyte-execution``, ...)."""
    return {**user, **identity.labels()}


def table_uri(project: str, dataset: str, table: str) -> str:
    """A BigQuery table as a Flyte structured-dataset URI (flytekit's ``bq://`` form)."""
    return f"bq://{project}:{dataset}.{table}"


def qualify_table(spec: str, project: str) -> str:
    """``dataset.table`` or ``project:dataset.table`` as ``project.dataset.table``."""
    match = _TABLE.match(spec)
    if match is None:  # validated in the config model
        raise InvalidTaskConfig("destination_table", f"{spec!r} is not 'project.dataset.table'")
    return f"{match['project'] or project}.{match['dataset']}.{match['table']}"


def qualify_dataset(spec: str, project: str) -> str:
    match = _DATASET.match(spec)
    if match is None:
        raise InvalidTaskConfig("default_dataset", f"{spec!r} is not 'project.dataset'")
    return f"{match['project'] or project}.{match['dataset']}"


def bytes_text(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{count} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} bytes"


# ============================================================================================ 4. the connector
class BigQueryQuery(AsyncConnector[BigQueryQueryConfig, BigQueryJobMeta]):
    """Runs a query job: create inserts it under a job id derived from the attempt, get polls it, delete cancels."""

    name = "BigQuery query"
    task_type = "bigquery-query"
    settings_model = BigQuerySettings
    secret_names = (SERVICE_ACCOUNT_SECRET,)

    def warm_up(self) -> None:
        from flyteconnectors.bigquery import _sdk  # noqa: F401  (google-cloud-bigquery and google-auth)

    def _client(self, ctx: CallContext, project: str | None) -> bigquery.Client:
        """One client per (endpoint, project, credentials), reused by every call and closed when the host drains.

        The credentials are cached on their own, so clients for several projects share one access token.
        """
        from flyteconnectors.bigquery import _sdk

        key_json = ctx.secrets.get(SERVICE_ACCOUNT_SECRET)
        who = "anonymous" if self.settings.anonymous and not key_json else fingerprint(key_json or "adc")
        credentials = self.clients.get(("bigquery-credentials", who),
                                       lambda: _sdk.load_credentials(self.settings, key_json))
        project = project or self.settings.project or credentials.project
        if not project:
            raise InvalidTaskConfig("project", "no project: set it in the task, in FLYTECONNECTORS_BIGQUERY_PROJECT, "
                                               "or use credentials that carry one")
        return self.clients.get(("bigquery", self.settings.endpoint, project, who),
                                lambda: _sdk.make_client(self.settings, project, credentials.credentials))

    def create(self, task: TaskContext[BigQueryQueryConfig]) -> BigQueryJobMeta:
        from flyteconnectors.bigquery import _sdk

        cfg = task.config
        if not cfg.query.strip():
            raise InvalidTaskConfig("query", "is empty: the task template carries no SQL")
        params = query_parameters(dict(task.inputs), cfg.parameter_types)
        client = self._client(task, cfg.project)
        project = cfg.project or client.project
        job_config = _sdk.job_config(cfg, project, params, job_labels(cfg.labels, task.identity))
        job = _sdk.insert_or_adopt(
            client, bind_placeholders(cfg.query), job_config, job_id=task.idempotency_key, project=project,
            location=cfg.location or self.settings.location, retry=_sdk.retry(self.settings, task),
            timeout=task.timeout(self.settings.request_timeout),
        )
        if cfg.dry_run:
            return BigQueryJobMeta(
                job_id=job.job_id or task.idempotency_key, project=project, location=job.location, dry_run=True,
                dry_run_bytes=int(job.total_bytes_processed or 0),
                dry_run_destination=qualify_table(cfg.destination_table, project) if cfg.destination_table else None,
            )
        return BigQueryJobMeta(job_id=job.job_id, project=job.project or project, location=job.location)

    def get(self, job: BigQueryJobMeta, ctx: CallContext) -> Resource:
        from flyteconnectors.bigquery import _sdk

        if job.dry_run:
            return self._dry_run_result(job)
        remote = _sdk.get_job(self._client(ctx, job.project), job, _sdk.retry(self.settings, ctx),
                              ctx.timeout(self.settings.request_timeout))
        state = job_state(remote.state, remote.error_result)
        processed = int(remote.total_bytes_processed or 0)
        outputs: dict[str, Any] = {"job_id": job.job_id, "bytes_processed": processed}
        if remote.destination is not None:
            dest = remote.destination
            outputs["results"] = table_uri(dest.project, dest.dataset_id, dest.table_id)
        if state == "DONE":
            message = f"processed {bytes_text(processed)}"
        elif state == "DONE_STOPPED":
            message = f"the job was cancelled: {error_message(remote.error_result)}"
        else:
            message = error_message(remote.error_result, remote.errors)
        return STATES.resource(
            state, message, outputs=outputs, log_links=[self._console_link(job)],
            custom_info={"job_id": job.job_id, "project": job.project, "location": job.location,
                         "bytes_processed": processed, "bytes_billed": int(remote.total_bytes_billed or 0),
                         "cache_hit": bool(remote.cache_hit), "statement_type": remote.statement_type},
        )

    def delete(self, job: BigQueryJobMeta, ctx: CallContext) -> None:
        from flyteconnectors.bigquery import _sdk

        if job.dry_run:
            return
        _sdk.cancel_job(self._client(ctx, job.project), job, _sdk.retry(self.settings, ctx),
                        ctx.timeout(self.settings.request_timeout))

    def _dry_run_result(self, job: BigQueryJobMeta) -> Resource:
        processed = job.dry_run_bytes or 0
        outputs: dict[str, Any] = {"job_id": job.job_id, "bytes_processed": processed}
        if job.dry_run_destination:
            outputs["results"] = table_uri(*_split_qualified(job.dry_run_destination))
        return Resource.succeeded(
            outputs, f"dry run: the query is valid and would process {bytes_text(processed)}",
            custom_info={"dry_run": True, "bytes_processed": processed},
        )

    def _console_link(self, job: BigQueryJobMeta) -> LogLink:
        location = f"{job.location}:" if job.location else ""
        uri = f"{self.settings.console_url}?project={job.project}&j=bq:{location}{job.job_id}&page=queryresults"
        return LogLink("BigQuery console", uri)


def _split_qualified(table: str) -> tuple[str, str, str]:
    project, dataset, name = table.rsplit(".", 2)  # project ids may hold dots ("example.com:proj")
    return project, dataset, name


def __getattr__(name: str) -> Any:
    # CONNECTORS also serves flytekit's task type (flytekit_compat.py subclasses the connector above). Built on first
    # use, so that either module may be imported first.
    if name == "CONNECTORS":
        from flyteconnectors.bigquery import flytekit_compat

        globals()[name] = (BigQueryQuery, *flytekit_compat.CONNECTORS)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
