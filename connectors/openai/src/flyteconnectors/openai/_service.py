"""What the OpenAI connectors share: the SDK client, error mapping, message templates and result files.

This module imports the ``openai`` SDK, so ``connector.py`` imports it lazily (host start-up stays fast).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tempfile
import weakref
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import openai
from flyteconnectors.core import (
    CallContext,
    ConnectorError,
    InvalidTaskConfig,
    JobRejected,
    TransientServiceError,
    fingerprint,
)

if TYPE_CHECKING:
    from flyteconnectors.core import Connector

T = TypeVar("T")
log = logging.getLogger("flyteconnectors.openai")

API_KEY_SECRET = "openai_api_key"
ORGANIZATION_SECRET = "openai_organization"
PROJECT_SECRET = "openai_project"


# ---------------------------------------------------------------------------------------------- endpoint
def endpoint(settings: Any, base_url: str | None, api_version: str | None, field: str = "base_url") -> tuple[str, str]:
    """The (base URL, API version) a call goes to: the task's choice if the host operator allows it.

    A task that could name any URL could make the host send its API key to a server of the task author's
    choosing, so a URL other than the connector setting must be listed in ``allowed_base_urls``.
    """
    default = _norm(settings.base_url)
    chosen = _norm(base_url) if base_url else default
    if chosen != default:
        allowed = [_norm(u) for u in str(settings.allowed_base_urls).split(",") if u.strip()]
        if "*" not in allowed and chosen not in allowed:
            raise InvalidTaskConfig(
                field,
                f"{chosen} is not an endpoint this host may send its OpenAI credentials to; the host operator "
                "allows it with FLYTECONNECTORS_OPENAI_ALLOWED_BASE_URLS (comma-separated) or points the "
                "connector at it with FLYTECONNECTORS_OPENAI_BASE_URL",
            )
    return chosen, (api_version if api_version is not None else settings.api_version) or ""


def _norm(url: str) -> str:
    return url.strip().rstrip("/")


class _ClientHolder:
    """A client and the event loop it belongs to: httpx2 connections cannot move between loops."""

    def __init__(self, client: openai.AsyncOpenAI, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = weakref.ref(loop)

    async def aclose(self) -> None:
        if self.loop() is asyncio.get_running_loop():
            await self.client.close()


def client(connector: Connector[Any], ctx: CallContext, base_url: str, api_version: str) -> openai.AsyncOpenAI:
    """One AsyncOpenAI per (endpoint, credentials, event loop), reused and closed when the host drains."""
    api_key = ctx.secrets.require(API_KEY_SECRET)
    organization = ctx.secrets.get(ORGANIZATION_SECRET)
    project = ctx.secrets.get(PROJECT_SECRET)
    loop = asyncio.get_running_loop()
    key = ("openai", base_url, api_version, fingerprint(api_key, organization, project), id(loop))

    def build() -> _ClientHolder:
        # max_retries=0: the core retries transient failures inside the call's deadline. The SDK's own
        # retries would overrun a sync task's deadline and re-send batches.create after a lost response,
        # which makes a second batch (cloud-fakes §5: the SDK sends no idempotency key).
        common: dict[str, Any] = {"api_key": api_key, "organization": organization, "project": project,
                                  "max_retries": 0}
        if api_version:
            made: openai.AsyncOpenAI = openai.AsyncAzureOpenAI(
                azure_endpoint=base_url, api_version=api_version, **common
            )
        else:
            made = openai.AsyncOpenAI(base_url=base_url, **common)
        return _ClientHolder(made, loop)

    holder = connector.clients.get(key, build)
    if holder.loop() is not loop:  # an id reused by a newer loop (local runs start one per call)
        connector.clients.discard(key)
        holder = connector.clients.get(key, build)
    return holder.client


# ---------------------------------------------------------------------------------------------- errors
def service_error(err: Exception, action: str, *, not_found: type[ConnectorError] = JobRejected) -> Exception:
    """The core error for an SDK error: what Flyte should do about it, with the service's own words."""
    if isinstance(err, openai.APITimeoutError):
        return TransientServiceError(f"OpenAI did not answer in time to {action}")
    if isinstance(err, openai.APIConnectionError):
        return TransientServiceError(f"could not reach OpenAI to {action}: {err.message}")
    if isinstance(err, openai.APIStatusError):
        text = describe(err)
        if isinstance(err, openai.RateLimitError) and err.code != "insufficient_quota":
            return TransientServiceError(f"OpenAI is rate limiting requests to {action}: {text}",
                                         retry_after=_retry_after(err))
        if err.status_code >= 500 or err.status_code == 408:
            return TransientServiceError(f"OpenAI failed to {action}: {text}")
        if isinstance(err, openai.NotFoundError):
            return not_found(f"OpenAI could not {action}: {text}")
        if isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return JobRejected(f"OpenAI refused the credentials to {action}: {text}; check the "
                               f"{API_KEY_SECRET} secret (and {ORGANIZATION_SECRET} / {PROJECT_SECRET})")
        return JobRejected(f"OpenAI refused to {action}: {text}", code=err.code or "")
    if isinstance(err, openai.OpenAIError):
        return JobRejected(f"could not {action}: {err}")
    return err


def describe(err: openai.APIStatusError) -> str:
    body = err.body if isinstance(err.body, Mapping) else {}
    message = body.get("message") or (err.body if isinstance(err.body, str) else "") or err.message
    code = f" {err.code}" if err.code else ""
    return f"HTTP {err.status_code}{code}: {message}"


def _retry_after(err: openai.APIStatusError) -> float | None:
    headers = err.response.headers
    with contextlib.suppress(TypeError, ValueError):
        if headers.get("retry-after-ms") is not None:
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after") is not None:
            return float(headers["retry-after"])
    return None


async def call(action: str, make: Callable[[], Awaitable[T]], *,
               not_found: type[ConnectorError] = JobRejected) -> T:
    """Await one SDK call, mapping its errors."""
    try:
        return await make()
    except openai.OpenAIError as err:
        raise service_error(err, action, not_found=not_found) from None


async def optional_listing(action: str, make: Callable[[], Awaitable[T]]) -> T | None:
    """A listing that some OpenAI-compatible servers do not offer: None when the server has no such endpoint."""
    try:
        return await make()
    except openai.APIStatusError as err:
        if err.status_code in (404, 405, 501):
            log.warning("the server cannot %s (%s); a retried create cannot adopt what a lost response made",
                        action, describe(err))
            return None
        raise service_error(err, action) from None
    except openai.OpenAIError as err:
        raise service_error(err, action) from None


# ---------------------------------------------------------------------------------------------- templates
_PLACEHOLDER = re.compile(r"\{\{\s*\.(inputs\.([A-Za-z_][A-Za-z0-9_]*)|prompt)\s*\}\}")


def render(template: str, inputs: Mapping[str, Any], field: str, prompt: str | None = None) -> str:
    """Fill ``{{ .inputs.name }}`` (and ``{{ .prompt }}`` in batches) the way Flyte's SQL templates do.

    Only whole placeholders are replaced, so JSON braces in a prompt are left alone, and nothing is evaluated.
    """

    def fill(match: re.Match[str]) -> str:
        if match.group(1) == "prompt":
            if prompt is None:
                raise InvalidTaskConfig(field, "{{ .prompt }} is only available in batches built from prompts")
            return prompt
        name = match.group(2)
        if name not in inputs:
            known = ", ".join(sorted(inputs)) or "none"
            raise InvalidTaskConfig(field, f"refers to input {name!r}, which the task does not have (inputs: {known})")
        value = inputs[name]
        return value if isinstance(value, str) else json.dumps(value, default=str)

    return _PLACEHOLDER.sub(fill, template)


# ---------------------------------------------------------------------------------------------- files
def read_uri(uri: str) -> bytes:
    """Bytes of a local path, ``file://`` URI, or any URI fsspec can open (s3://, gs://, ... via flytekit)."""
    local = _local_path(uri)
    if local is not None:
        return local.read_bytes()
    try:
        fs, path = _fsspec(uri).core.url_to_fs(uri)
    except (ImportError, ValueError) as err:
        raise InvalidTaskConfig("inputs", f"the connector host cannot read {uri}: {err}") from None
    with fs.open(path, "rb") as fh:
        return fh.read()  # type: ignore[no-any-return]


def publish(source: str, uri: str) -> None:
    """Move the finished local file ``source`` to ``uri`` (whole, so a reader never sees half a file)."""
    local = _local_path(uri)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, local)
        return
    try:
        fs, path = _fsspec(uri).core.url_to_fs(uri)
    except (ImportError, ValueError) as err:
        raise InvalidTaskConfig("output_prefix", f"the connector host cannot write to {uri}: {err}") from None
    fs.put_file(source, path)
    os.unlink(source)


def join(prefix: str, *parts: str) -> str:
    if not prefix:
        prefix = str(Path(tempfile.gettempdir()) / "flyteconnectors-openai")
    return "/".join([prefix.rstrip("/"), *parts])


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if "://" not in uri:
        return Path(uri)
    return None


def _fsspec(uri: str) -> Any:
    try:
        import fsspec
    except ImportError:
        raise InvalidTaskConfig(
            "output_prefix", f"{uri} is not a local path and fsspec is not installed in the connector host"
        ) from None
    return fsspec


async def download(openai_client: openai.AsyncOpenAI, file_id: str, uri: str, timeout: float | None) -> None:
    """Stream a file's content to ``uri`` without holding it in memory or blocking the loop."""
    fd, tmp = tempfile.mkstemp(prefix="openai-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as fh:
            async with openai_client.files.with_streaming_response.content(file_id, timeout=timeout) as response:
                async for chunk in response.iter_bytes(1 << 20):
                    await asyncio.to_thread(fh.write, chunk)
        await asyncio.to_thread(publish, tmp, uri)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def write_empty(uri: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix="openai-", suffix=".jsonl")
    os.close(fd)
    await asyncio.to_thread(publish, tmp, uri)


def summarize_errors(uri: str, limit: int = 3) -> str:
    """'invalid_value (2), batch_expired (1); first: prompt-3: Invalid value...' from an error file."""
    counts: dict[str, int] = {}
    examples: list[str] = []
    for raw in read_uri(uri).decode("utf-8", "replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        error = line.get("error") or {}
        response = line.get("response") or {}
        if not error:
            body = response.get("body") or {}
            error = body.get("error") if isinstance(body, dict) else None
            error = error or {"code": f"http_{response.get('status_code')}", "message": str(body)[:200]}
        code = str(error.get("code") or error.get("type") or "error")
        counts[code] = counts.get(code, 0) + 1
        if len(examples) < limit:
            examples.append(f"{line.get('custom_id')}: {error.get('message') or code}")
    if not counts:
        return ""
    kinds = ", ".join(f"{code} ({n})" for code, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{kinds}; e.g. " + " | ".join(examples)


class Downloads:
    """Result downloads that may outlive one GetTask call (Propeller gives each call ~10 s).

    A download runs as its own task; a poll waits for it only as long as its deadline allows and answers
    "still downloading" otherwise. The next poll picks the same download up.
    """

    def __init__(self) -> None:
        self._running: dict[Any, asyncio.Future[Any]] = {}

    async def fetch(self, key: Any, start: Callable[[], Awaitable[T]], budget: float | None) -> tuple[bool, T | None]:
        loop = asyncio.get_running_loop()
        future = self._running.get(key)
        if future is None or future.cancelled() or future.get_loop() is not loop:
            future = self._running[key] = asyncio.ensure_future(start())
        try:
            if budget is None:
                result = await asyncio.shield(future)
            else:
                result = await asyncio.wait_for(asyncio.shield(future), max(budget, 0.0))
        except asyncio.TimeoutError:
            return False, None
        except BaseException:
            if future.done():
                self._running.pop(key, None)
            raise
        self._running.pop(key, None)
        return True, result
