"""What the OpenAI connectors share: the SDK client, error mapping, message templates and result files.

This module imports the ``openai`` SDK, so ``connector.py`` imports it lazily (host start-up stays fast).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import json
import logging
import os
import re
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2

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


#: One TLS context for every client, built when this module is imported (in a thread, never on the event
#: loop). Building one reads the CA bundle, tens of milliseconds of CPU, and every event loop needs its own client.
_TLS = httpx2.create_ssl_context()
#: Idle connections a client keeps open. The SDK's default (100 idle of at most 1,000) let a burst leave hundreds
#: of sockets open after the load, and httpx2 checks every pooled connection on each request it assigns.
KEEPALIVE_CONNECTIONS = 16


class _ClientHolder:
    """A client and the event loop it belongs to: httpx2 connections cannot move between loops."""

    def __init__(self, client: openai.AsyncOpenAI, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = weakref.ref(loop)

    async def aclose(self) -> None:
        if self.loop() is asyncio.get_running_loop():
            await self.client.close()


def account(ctx: CallContext, base_url: str, api_version: str) -> tuple[str, str, str]:
    """Whose objects a call sees: (endpoint, API version, fingerprint of the credentials); holds no secret."""
    api_key = ctx.secrets.require(API_KEY_SECRET)
    organization = ctx.secrets.get(ORGANIZATION_SECRET)
    project = ctx.secrets.get(PROJECT_SECRET)
    return base_url, api_version, fingerprint(api_key, organization, project)


def client(connector: Connector[Any], ctx: CallContext, base_url: str, api_version: str) -> openai.AsyncOpenAI:
    """One AsyncOpenAI per (endpoint, credentials, event loop), reused and closed when the host drains."""
    api_key = ctx.secrets.require(API_KEY_SECRET)
    organization = ctx.secrets.get(ORGANIZATION_SECRET)
    project = ctx.secrets.get(PROJECT_SECRET)
    loop = asyncio.get_running_loop()
    key = ("openai", *account(ctx, base_url, api_version), id(loop))

    def build() -> _ClientHolder:
        # max_retries=0: the core retries transient failures inside the call's deadline. The SDK's own
        # retries would overrun a sync task's deadline and re-send batches.create after a lost response,
        # which makes a second batch (cloud-fakes §5: the SDK sends no idempotency key).
        limits = httpx2.Limits(max_connections=max(1, int(getattr(connector.settings, "max_connections", 64))),
                               max_keepalive_connections=KEEPALIVE_CONNECTIONS)
        common: dict[str, Any] = {"api_key": api_key, "organization": organization, "project": project,
                                  "max_retries": 0,
                                  "http_client": openai.DefaultAsyncHttpxClient(verify=_TLS, limits=limits)}
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


# ---------------------------------------------------------------------------------------------- adoption
#: Items listed per request: the Batch API's maximum (its default is 20); the files listing allows more.
PAGE_SIZE = 100
#: Pages larger than this are parsed in a worker thread instead of on the event loop.
_PARSE_INLINE_BYTES = 256 * 1024


class _Interrupted(Exception):
    """The listing stopped because its event loop went away (local runs close a loop after each call)."""


class Recent:
    """What this host knows of one account's newest batches (or batch input files), by name.

    A create must find what an earlier try of its attempt made when that try's response was lost, and the API
    offers no lookup by name or metadata: only listings, newest first, a page of at most 100 at a time behind
    an ``after`` cursor. Listing the newest 1,000 batches on every create (and building the SDK's pydantic
    model of each) kept the event loop busy and every other call waiting. So what a listing showed is kept:

    - a name this host has seen (its own creates, or any earlier listing) is answered without a request;
    - otherwise a listing reads only what is new: it stops ``overlap`` seconds below the newest item of the
      previous complete listing (items of the same second may sort either way, and an item may appear in the
      listing a little after its ``created_at``). The first listing, and a listing that would run on, stop at
      ``limit`` items or at items older than ``window`` seconds;
    - creates that arrive while a listing runs share the next listing instead of starting their own. A
      listing that began before a create began cannot be used by it: it might miss what the create's
      earlier try made just before;
    - pages are read as raw JSON, and only the id, ``created_at`` and the name of each item are kept.

    If a server does not list newest first, the time-based stops are dropped and every listing reads up to
    ``limit`` items (the behaviour before this index).

    One index serves every event loop of the host (the core may run a package's calls on several loops, each
    on its own thread): its state is behind a lock, and a listing runs on the loop of the call that started
    it while calls on other loops wait for it through a thread-safe future.
    """

    def __init__(self, what: str, name_of: Callable[[Mapping[str, Any]], str | None],
                 keep: tuple[str, ...] = ("id", "created_at"), *, window: float, limit: int,
                 overlap: float = 10.0) -> None:
        self.what = what
        self._name_of = name_of
        self._keep = keep
        self.window = window
        self.limit = max(1, limit)
        self.overlap = overlap
        self._lock = threading.Lock()
        self._known: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._cap = max(10 * self.limit, 10_000)
        self._top: float | None = None  # created_at of the newest item the last complete listing saw
        self._ordered = True
        self._scan: tuple[concurrent.futures.Future[None], float] | None = None

    def known(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._known.get(name)

    def remember(self, name: str, item: Mapping[str, Any]) -> None:
        """Record what this host just made, so a retry on this host finds it without listing."""
        with self._lock:
            self._known[name] = {k: item.get(k) for k in self._keep}
            self._known.move_to_end(name)
            self._prune()

    def forget(self, name: str) -> None:
        with self._lock:
            self._known.pop(name, None)

    async def find(self, name: str, page: Callable[[str | None], Awaitable[bytes | None]]) -> dict[str, Any] | None:
        """The newest item called ``name`` that exists now, listing what is new since the last listing."""
        found = self.known(name)
        if found is not None:
            return found
        await self.refresh(page)
        return self.known(name)

    async def refresh(self, page: Callable[[str | None], Awaitable[bytes | None]]) -> None:
        """Wait for a listing that started after this call did (sharing one that others started)."""
        since = time.monotonic()
        while True:
            with self._lock:
                current = self._scan
                mine = current is None or current[0].done()  # a finished listing began before this call
                if mine:
                    current = self._scan = (concurrent.futures.Future(), time.monotonic())
            shared, started = current  # type: ignore[misc]
            if mine:
                # Forgotten once done (the callers that joined it hold it): a failed listing's traceback would
                # otherwise keep its frames, and the calls and clients they reference, alive for good.
                shared.add_done_callback(self._forget_listing)
                listing = detached(self._list(page))
                listing.add_done_callback(functools.partial(_settle, into=shared))
            try:
                # shield: a caller that gives up (its deadline) must not cancel the listing others wait for
                await asyncio.shield(asyncio.wrap_future(shared))
            except _Interrupted:
                continue
            except Exception:
                if started >= since:
                    raise
                continue  # a listing that began before this call: its outcome is not this call's
            if started >= since:
                return

    def _forget_listing(self, done: concurrent.futures.Future[None]) -> None:
        with self._lock:
            if self._scan is not None and self._scan[0] is done:
                self._scan = None

    async def _list(self, page: Callable[[str | None], Awaitable[bytes | None]]) -> None:
        with self._lock:
            ordered = self._ordered
            floor = self._top - self.overlap if self._top is not None and ordered else None
        horizon = time.time() - self.window
        seen = 0
        newest: float | None = None
        previous: float | None = None
        found: list[tuple[str, dict[str, Any]]] = []
        after: str | None = None
        while True:
            raw = await page(after)
            if raw is None:  # the server cannot list these: nothing is learned
                return
            body = await asyncio.to_thread(json.loads, raw) if len(raw) > _PARSE_INLINE_BYTES else json.loads(raw)
            items = (body.get("data") or []) if isinstance(body, Mapping) else []
            done = not items or not body.get("has_more")
            for item in items:
                if not isinstance(item, Mapping):
                    continue
                created = float(item.get("created_at") or 0)
                if previous is not None and created > previous + 1 and ordered:
                    ordered = False
                    floor = None
                    log.warning("the server does not list %s newest first; every create now reads the newest "
                                "%d of them", self.what, self.limit)
                previous = created
                newest = created if newest is None else max(newest, created)
                name = self._name_of(item)
                if name:
                    found.append((name, {k: item.get(k) for k in self._keep}))
                seen += 1
                if seen >= self.limit or (ordered and (created < horizon or (floor is not None and created < floor))):
                    done = True
                    break
            if done:
                break
            after = str(items[-1].get("id"))
        with self._lock:
            self._ordered = self._ordered and ordered
            for name, kept in reversed(found):  # oldest first: the newest of a name wins, pruning stays in order
                self._known[name] = kept
                self._known.move_to_end(name)
            if newest is not None:
                self._top = newest if self._top is None else max(self._top, newest)
            self._prune()

    def _prune(self) -> None:  # with the lock held
        horizon = time.time() - self.window
        while self._known:
            item = next(iter(self._known.values()))
            if len(self._known) <= self._cap and float(item.get("created_at") or 0) >= horizon:
                break
            self._known.popitem(last=False)


def _settle(task: asyncio.Future[None], into: concurrent.futures.Future[None]) -> None:
    if task.cancelled():
        into.set_exception(_Interrupted())
        return
    err = task.exception()
    if err is None:
        into.set_result(None)
    else:
        into.set_exception(err)


def detached(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task that outlives the call that started it without keeping that call's context alive.

    The core counts a cached client as in use while anything holds the context of a call that fetched it, so
    a finished download kept for the next poll (or a shared listing) would keep its client from ever being
    closed as idle, with its pooled connections.
    """
    return contextvars.Context().run(asyncio.ensure_future, coro)  # type: ignore[return-value]


async def raw_page(action: str, make: Callable[[], Awaitable[Any]]) -> bytes | None:
    """The body of one listing request, unparsed; None when the server has no such listing."""
    response = await optional_listing(action, make)
    return None if response is None else bytes(response.http_response.content)


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
            future = self._running[key] = detached(start())
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
