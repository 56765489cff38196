"""google-cloud-bigquery glue, imported only on the first call so that host start-up stays fast.

SDK exceptions are translated here into the core's errors: throttling, 5xx and timeouts are transient, a
missing job is JobNotFound, a query BigQuery refuses is JobRejected with its reason and message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import google.auth
import google.auth.exceptions
import requests
import requests.adapters
from google.api_core import exceptions as gexc
from google.api_core.client_info import ClientInfo
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from flyteconnectors.core import (
    CallContext,
    ConnectorError,
    InvalidTaskConfig,
    JobNotFound,
    JobRejected,
    TransientServiceError,
)
from flyteconnectors.core.secrets import REDACTOR

from .connector import (
    SERVICE_ACCOUNT_SECRET,
    BigQueryJobMeta,
    BigQueryQueryConfig,
    BigQuerySettings,
    qualify_dataset,
    qualify_table,
)

T = TypeVar("T")
SCOPES = ("https://www.googleapis.com/auth/bigquery", "https://www.googleapis.com/auth/cloud-platform")
TRANSIENT_REASONS = frozenset({"backendError", "internalError", "badGateway", "rateLimitExceeded", "quotaExceeded"})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flyteconnectors-bigquery")
    except PackageNotFoundError:
        return "0"


# ------------------------------------------------------------------------------------------- client
@dataclass(frozen=True)
class LoadedCredentials:
    credentials: Any
    #: The project the credentials belong to (a key's ``project_id``, ADC's project), if any.
    project: str | None


def load_credentials(settings: BigQuerySettings, key_json: str | None) -> LoadedCredentials:
    """A service-account key, anonymous credentials (the fake), or Application Default Credentials."""
    if key_json:
        try:
            info = json.loads(key_json)
            # The secret as a whole is masked; its private key must be too, should it ever appear on its own.
            REDACTOR.add(info.get("private_key"))
            credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            # The message of a parse error may quote the key, so it is not repeated here.
            raise InvalidTaskConfig(f"secret:{SERVICE_ACCOUNT_SECRET}",
                                    f"is not a service-account key in JSON ({type(err).__name__})") from None
        return LoadedCredentials(credentials, info.get("project_id"))
    if settings.anonymous:
        return LoadedCredentials(AnonymousCredentials(), None)
    try:
        credentials, project = google.auth.default(scopes=SCOPES)
    except google.auth.exceptions.DefaultCredentialsError:
        raise InvalidTaskConfig(
            f"secret:{SERVICE_ACCOUNT_SECRET}",
            "no Google credentials: mount a service-account key as this secret or give the host Application "
            "Default Credentials",
        ) from None
    return LoadedCredentials(credentials, project)


def make_client(settings: BigQuerySettings, project: str, credentials: Any) -> bigquery.Client:
    options = ClientOptions(api_endpoint=settings.endpoint) if settings.endpoint else None
    client = bigquery.Client(
        project=project, credentials=credentials, location=settings.location, client_options=options,
        client_info=ClientInfo(user_agent=f"flyteconnectors-bigquery/{_version()}"),
    )
    session = client._http
    if not getattr(session, "is_mtls", False):
        # One client serves every thread of the package's pool; requests' default pool keeps 10 connections per
        # host and would drop (and reopen) the rest under load.
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(settings.executor_threads, 10))
        session.mount("https://", adapter)
        session.mount("http://", adapter)
    return client


def retry(settings: BigQuerySettings, ctx: CallContext) -> Any:
    """The SDK's retry of one call, kept inside the call's deadline so the answer reaches Propeller in time."""
    left = ctx.timeout(settings.retry_budget)
    budget = settings.retry_budget if left is None else left
    policy = DEFAULT_RETRY.with_delay(initial=settings.retry_initial_delay, maximum=8.0, multiplier=2.0)
    # google-api-core < 2.17 only has with_deadline (since deprecated in favour of with_timeout).
    bounded = getattr(policy, "with_timeout", None) or policy.with_deadline
    return bounded(max(budget * 0.8, 0.0))


# ------------------------------------------------------------------------------------------- job config
def job_config(
    cfg: BigQueryQueryConfig, project: str, params: list[tuple[str, str, Any]], labels: dict[str, str]
) -> bigquery.QueryJobConfig:
    """Every option of the task config, set on the job (flytekit's connector dropped them)."""
    config = bigquery.QueryJobConfig(
        query_parameters=[_parameter(name, kind, value) for name, kind, value in params],
        labels=labels,
        dry_run=cfg.dry_run,
        use_legacy_sql=False,
    )
    if cfg.destination_table:
        config.destination = qualify_table(cfg.destination_table, project)
    if cfg.write_disposition:
        config.write_disposition = cfg.write_disposition.value
    if cfg.create_disposition:
        config.create_disposition = cfg.create_disposition.value
    if cfg.default_dataset:
        config.default_dataset = qualify_dataset(cfg.default_dataset, project)
    if cfg.maximum_bytes_billed is not None:
        config.maximum_bytes_billed = cfg.maximum_bytes_billed
    if cfg.priority:
        config.priority = cfg.priority.value
    if cfg.use_query_cache is not None:
        config.use_query_cache = cfg.use_query_cache
    return config


def _parameter(name: str, kind: str, value: Any) -> Any:
    if kind.startswith("ARRAY<"):
        return bigquery.ArrayQueryParameter(name, kind[len("ARRAY<"):-1], value)
    return bigquery.ScalarQueryParameter(name, kind, value)


# ------------------------------------------------------------------------------------------- calls
def insert_or_adopt(
    client: bigquery.Client, query: str, config: bigquery.QueryJobConfig, *, job_id: str, project: str,
    location: str | None, retry: Any, timeout: float | None,
) -> bigquery.QueryJob:
    """Insert the job under ``job_id``; on 409 (a retry after a lost response) adopt the job that exists.

    With an explicit job id the SDK raises Conflict instead of recovering (cloud-fakes.md §4); ``job_retry``
    must be None with an explicit id, or the SDK warns that it will refuse the combination.
    """
    try:
        return client.query(query, job_config=config, job_id=job_id, project=project, location=location,
                            retry=retry, timeout=timeout, job_retry=None)
    except gexc.Conflict:
        pass
    except Exception as err:
        raise service_error(err, "create") from None
    existing = _call(lambda: client.get_job(job_id, project=project, location=location, retry=retry,
                                            timeout=timeout), "create")
    existing_query = getattr(existing, "query", None)
    if existing_query is not None and existing_query != query:
        raise JobRejected(f"BigQuery job {job_id} already exists with a different query; refusing to adopt it")
    return existing  # type: ignore[return-value]


def get_job(client: bigquery.Client, job: BigQueryJobMeta, retry: Any, timeout: float | None) -> bigquery.QueryJob:
    return _call(lambda: client.get_job(job.job_id, project=job.project, location=job.location, retry=retry,
                                        timeout=timeout), "get")  # type: ignore[return-value]


def cancel_job(client: bigquery.Client, job: BigQueryJobMeta, retry: Any, timeout: float | None) -> None:
    _call(lambda: client.cancel_job(job.job_id, project=job.project, location=job.location, retry=retry,
                                    timeout=timeout), "delete")


def _call(fn: Callable[[], T], action: str) -> T:
    try:
        return fn()
    except Exception as err:
        raise service_error(err, action) from None


# ------------------------------------------------------------------------------------------- errors
def _reason(err: gexc.GoogleAPICallError) -> tuple[str, str]:
    errors = getattr(err, "errors", None) or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    return str(first.get("reason") or getattr(err, "reason", None) or ""), str(
        first.get("message") or err.message or ""
    )


def service_error(err: BaseException, action: str) -> ConnectorError | BaseException:
    """The core error for an SDK exception raised while doing ``action`` (create, get or delete)."""
    if isinstance(err, ConnectorError):
        return err
    if isinstance(err, gexc.RetryError):
        cause = err.cause
        detail = service_error(cause, action) if cause is not None else None
        text = str(detail) if detail is not None else str(err)
        return TransientServiceError(f"BigQuery kept failing until the retry budget ran out: {text}")
    if isinstance(err, gexc.GoogleAPICallError):
        reason, message = _reason(err)
        text = f"{err.code} {reason}: {message}" if reason else f"{err.code}: {message}"
        if reason in TRANSIENT_REASONS or isinstance(err, (gexc.TooManyRequests, gexc.ServerError)):
            retry_after = None
            response = getattr(err, "response", None)
            if response is not None and getattr(response, "headers", None):
                try:
                    retry_after = float(response.headers.get("Retry-After"))
                except (TypeError, ValueError):
                    retry_after = None
            return TransientServiceError(f"BigQuery is unavailable: {text}", retry_after)
        if isinstance(err, gexc.NotFound) and action != "create":
            return JobNotFound(f"BigQuery has no such job: {message}")
        if isinstance(err, gexc.Unauthorized):
            return JobRejected(f"BigQuery refused the credentials: {text}", "unauthorized")
        return JobRejected(f"BigQuery refused the job: {text}", reason)
    if isinstance(err, google.auth.exceptions.RefreshError):
        if getattr(err, "retryable", False):
            return TransientServiceError(f"could not refresh the Google credentials: {err}")
        return JobRejected(f"the Google credentials were refused: {err}", "unauthorized")
    if isinstance(err, (requests.ConnectionError, requests.Timeout, google.auth.exceptions.TransportError,
                        ConnectionError, TimeoutError)):
        return TransientServiceError(f"could not reach BigQuery: {type(err).__name__}: {err}")
    if isinstance(err, (ValueError, TypeError)) and action == "create":
        return InvalidTaskConfig("", f"the BigQuery client refused the job config: {err}")
    return err
