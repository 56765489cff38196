"""boto3 plumbing: clients and error mapping. Imported lazily, so loading the connector does not load boto3."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    ReadTimeoutError,
)

from flyteconnectors.core import InvalidTaskConfig, JobNotFound, JobRejected, TransientServiceError

# botocore's DEBUG records print whole signed requests: the access key id, the session token and signatures.
# Keep them out of the host's logs unless an operator set botocore's level on purpose.
for _name in ("botocore", "boto3"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.INFO)

#: Error codes that a later call may not meet (throttling, server-side trouble, credentials being refreshed).
TRANSIENT_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "RequestThrottled", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded", "SlowDown",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalServerError",
    "InternalServerException", "InternalError", "InternalDependencyException", "ExpiredToken",
    "ExpiredTokenException", "RequestExpired", "RequestTimeout", "RequestTimeoutException",
})
NOT_FOUND_CODES = frozenset({"ResourceNotFound", "ResourceNotFoundException", "NotFound"})
#: SageMaker answers "not found" as a ValidationException on Describe*/Delete*; these are its texts.
NOT_FOUND_TEXTS = ("could not find", "not found", "does not exist")
CONFLICT_CODES = frozenset({"ResourceInUse", "ResourceInUseException", "ConflictException"})
CONFLICT_TEXTS = ("already exist",)


_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


def _shared_session() -> boto3.session.Session:
    """One boto3 session per process, used only under ``_session_lock``.

    Its loader parses each service model once: SageMaker's is megabytes of JSON, and parsing it holds the GIL
    long enough (100-300 ms) to stall the host's event loop if every client paid for it again. It also
    resolves the default credential chain once (and refreshes it), instead of once per client.
    """
    global _session
    if _session is None:
        _session = boto3.session.Session(botocore_session=botocore.session.get_session())
    return _session


_warm = False


def warm_up() -> None:
    """Build one SageMaker and one runtime client, so the service models are parsed before the host serves."""
    global _warm
    with _session_lock:
        if _warm:
            return
        session = _shared_session()
        for service in ("sagemaker", "sagemaker-runtime"):
            # Building a client makes no request; it loads the model, the endpoint rules and the partitions.
            session.client(service, region_name="us-east-1", aws_access_key_id="warm-up",
                           aws_secret_access_key="warm-up").close()
        _warm = True


def default_region() -> str | None:
    """The region of the standard AWS chain: AWS_REGION, AWS_DEFAULT_REGION, then the shared config file."""
    env = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if env:
        return env
    with _session_lock:
        return _shared_session().region_name


def make_client(service: str, region: str, endpoint_url: str | None, credentials: tuple[str, str, str | None] | None,
                *, connect_timeout: float, read_timeout: float, max_attempts: int,
                max_pool_connections: int = 10) -> Any:
    """A boto3 client. ``credentials`` None means the standard chain (env, profile, IRSA, instance role).

    ``max_pool_connections``: keep-alive connections the client pools (botocore's default is 10); more threads
    than that sharing the client open and discard a new connection per request ("Connection pool is full").
    """
    kwargs: dict[str, Any] = {}
    if credentials is not None:
        kwargs.update(aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1],
                      aws_session_token=credentials[2])
    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                    retries={"mode": "standard", "total_max_attempts": max(1, max_attempts)},
                    user_agent_extra="flyteconnectors-sagemaker", max_pool_connections=max(1, max_pool_connections))
    with _session_lock:
        return _shared_session().client(service, region_name=region, endpoint_url=endpoint_url or None,
                                        config=config, **kwargs)


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def error_message(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Message", "")) or str(err)


def is_conflict(err: BaseException) -> bool:
    if not isinstance(err, ClientError):
        return False
    return error_code(err) in CONFLICT_CODES or any(t in error_message(err).lower() for t in CONFLICT_TEXTS)


def is_not_found(err: BaseException) -> bool:
    if not isinstance(err, ClientError):
        return False
    code = error_code(err)
    if code in NOT_FOUND_CODES:
        return True
    return code in ("ValidationException", "ValidationError") and any(
        t in error_message(err).lower() for t in NOT_FOUND_TEXTS
    )


@contextlib.contextmanager
def aws_errors(operation: str, *, missing_means_gone: bool = False, field: str = "request") -> Iterator[None]:
    """Map boto3 errors to the core's: transient, not found (when ``missing_means_gone``), rejected."""
    try:
        yield
    except ClientError as err:
        raise translate(err, operation, missing_means_gone=missing_means_gone) from None
    except ParamValidationError as err:
        raise InvalidTaskConfig(field, f"SageMaker {operation} refused the request: {err}") from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError) as err:
        raise TransientServiceError(f"SageMaker {operation}: {err}") from None
    except NoCredentialsError:
        raise JobRejected(
            f"SageMaker {operation}: no AWS credentials found (environment, shared config, web identity or "
            "instance role); configure them for the connector host"
        ) from None
    except NoRegionError:
        raise InvalidTaskConfig("region", "no AWS region: set it in the task config, the connector settings "
                                          "or AWS_REGION") from None
    except BotoCoreError as err:
        raise TransientServiceError(f"SageMaker {operation}: {err}") from None


def translate(err: ClientError, operation: str, *, missing_means_gone: bool = False) -> Exception:
    code = error_code(err)
    message = error_message(err)
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    text = f"SageMaker {operation}: {code}: {message}" if code else f"SageMaker {operation}: {message}"
    if code in TRANSIENT_CODES or status >= 500 or status == 429:
        retry_after = err.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("retry-after")
        try:
            hint = float(retry_after) if retry_after is not None else None
        except ValueError:
            hint = None
        return TransientServiceError(text, retry_after=hint)
    if missing_means_gone and is_not_found(err):
        return JobNotFound(text)
    return JobRejected(text, code)
