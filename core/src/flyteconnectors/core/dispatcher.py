"""The one place every job goes through, whichever door it came in by (Flyte 1, Flyte 2, local run).

For each call the dispatcher finds the connector, validates its config, converts inputs to Python values,
runs the connector (on the loop for ``async def``, in the connector's own thread pool for ``def``) under the
call's deadline, retries transient failures of idempotent calls, maps errors, enforces the phase rules,
converts outputs with the interface's types, and encodes job metadata in a versioned envelope.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import hashlib
import inspect
import logging
import random
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flyteidl.core import literals_pb2, types_pb2

from flyteconnectors.core import literals, metrics
from flyteconnectors.core.clients import begin_call
from flyteconnectors.core.config import TaskConfig
from flyteconnectors.core.connector import AsyncConnector, Connector, SyncConnector
from flyteconnectors.core.context import CallContext, TaskContext
from flyteconnectors.core.errors import (
    ConnectorError,
    DeadlineTooShort,
    InvalidResourceMeta,
    InvalidTaskConfig,
    JobNotFound,
    JobRejected,
    TransientServiceError,
)
from flyteconnectors.core.identity import ExecutionIdentity
from flyteconnectors.core.loops import ON_MAIN_LOOP, isolate
from flyteconnectors.core.meta import Envelope, MetaCodec, parse_meta
from flyteconnectors.core.registry import Registry
from flyteconnectors.core.resource import LogLink, Phase, Resource
from flyteconnectors.core.secrets import Secrets, redact

log = logging.getLogger("flyteconnectors.dispatcher")
T = TypeVar("T")


@dataclass
class TaskRequest:
    """A create or do request in plain Python, built by a wire adapter or the local runner."""

    task_type: str
    task_version: int = 0
    custom: dict[str, Any] | None = None
    config: dict[str, str] = field(default_factory=dict)
    sql: str | None = None
    inputs: Mapping[str, literals_pb2.Literal] = field(default_factory=dict)
    input_types: Mapping[str, types_pb2.LiteralType] = field(default_factory=dict)
    output_types: Mapping[str, types_pb2.LiteralType] = field(default_factory=dict)
    output_prefix: str = ""
    identity: ExecutionIdentity = field(default_factory=ExecutionIdentity)
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    container_image: str = ""
    container_args: tuple[str, ...] = ()
    container_env: Mapping[str, str] = field(default_factory=dict)
    #: Absolute ``time.monotonic()`` deadline of the RPC (None: unbounded, e.g. local runs).
    deadline: float | None = None
    #: Per-call secret values (Flyte 2 ``Connection``); never persisted.
    secrets: Mapping[str, str] | None = None


@dataclass
class WireResource:
    """A Resource whose outputs are literals: what adapters put on the wire."""

    phase: Phase
    message: str = ""
    outputs: dict[str, literals_pb2.Literal] | None = None
    log_links: list[LogLink] = field(default_factory=list)
    custom_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RetryPolicy:
    """Backoff for transient failures of idempotent calls, always inside the call's deadline."""

    attempts: int = 4
    base: float = 0.05
    cap: float = 2.0

    def delay(self, attempt: int, hint: float | None) -> float:
        if hint is not None:
            return min(max(hint, 0.0), self.cap)
        return min(self.cap, self.base * (2**attempt)) * (0.5 + random.random() / 2)


@dataclass
class DispatcherOptions:
    #: Seconds kept back from every RPC deadline so an answer goes out before the client gives up.
    deadline_margin: float = 0.5
    #: Upper bound on one call when the request carries no deadline.
    default_timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: How long a job's status may stay unavailable before GetTask answers RETRYABLE_FAILED.
    unavailable_grace: float = 900.0


class CallFailed(Exception):
    """An unexpected failure, as one line for the wire. The traceback stays in the server log."""

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        super().__init__(message)
        self.code = code


class _Executors:
    """One bounded thread pool per connector package, for blocking SDK calls."""

    def __init__(self) -> None:
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._busy: dict[str, int] = {}
        #: Per package: the (busy, queued) gauge children, looked up once.
        self._gauges: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def pool(self, connector: Connector[Any]) -> ThreadPoolExecutor:
        package = connector.package or type(connector).__name__
        pool = self._pools.get(package)
        if pool is None:
            with self._lock:
                pool = self._pools.get(package)
                if pool is None:
                    size = int(getattr(connector.settings, "executor_threads", 64))
                    pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"fc-{package}")
                    self._gauges[package] = (
                        metrics.EXECUTOR_BUSY.labels(connector=package),
                        metrics.EXECUTOR_QUEUED.labels(connector=package),
                    )
                    self._pools[package] = pool
                    self._busy[package] = 0
                    metrics.EXECUTOR_SIZE.labels(connector=package).set(size)
        return pool

    def run(
        self, connector: Connector[Any], fn: Callable[..., T], *args: Any, start_by: float | None = None,
        operation: str = "call",
    ) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in the package's pool; the returned loop future settles with its outcome.

        Cheaper than ``loop.run_in_executor``: the thread settles the loop future with one
        ``call_soon_threadsafe`` (no chained concurrent future and its extra loop callbacks). A loop future
        cancelled while the call still waits for a thread (the caller's deadline passed) is not run.

        ``start_by`` (``time.monotonic()``): a call still waiting for a thread then is not started at all and
        fails with DeadlineTooShort. Checked by the thread itself, so it holds even when the loop is too busy to
        run the caller's timeout in time: a create started after its client gave up would leave an orphan job.
        """
        package = connector.package or type(connector).__name__
        pool = self.pool(connector)
        gauge_busy, gauge_queued = self._gauges[package]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        ctx = contextvars.copy_context()
        queued_at = time.monotonic()

        def job() -> None:
            gauge_queued.dec()
            if future.cancelled():  # nobody waits for it any more
                return
            if start_by is not None and time.monotonic() >= start_by:
                waited = time.monotonic() - queued_at
                log.warning("%s %s not started: it waited %.2fs for a free thread in the %s pool (%d threads) and "
                            "its deadline passed", connector.task_type, operation, waited, package,
                            pool._max_workers)
                _settle_threadsafe(loop, future, None, DeadlineTooShort(
                    f"the {operation} call waited {waited:.1f}s for a free thread (all {pool._max_workers} of "
                    f"the {package} connector's threads were busy) and its deadline passed; it was not started, "
                    "retry it"
                ))
                return
            gauge_busy.inc()
            call = ctx.run(begin_call)
            try:
                result = ctx.run(fn, *args)
            except BaseException as err:  # handed to the awaiting coroutine, as run_in_executor does
                _settle_threadsafe(loop, future, None, err)
            else:
                _settle_threadsafe(loop, future, result, None)
            finally:
                call.done = True
                gauge_busy.dec()

        gauge_queued.inc()
        try:
            submitted = pool.submit(job)
        except BaseException:
            gauge_queued.dec()
            raise
        # The pool may drop the job without running it (shut down with cancel_futures): cancel the waiter too.
        submitted.add_done_callback(functools.partial(_cancel_if_dropped, loop, future))
        return future

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self._pools.clear()


#: Async connector calls running on the loop right now; the loop watchdog names them when the loop stalls.
ON_LOOP: dict[str, int] = {}
#: Task types whose async calls started since the watchdog last looked.
ON_LOOP_SEEN: set[str] = set()


class Dispatcher:
    def __init__(
        self,
        registry: Registry,
        *,
        codec: MetaCodec | None = None,
        secrets: Secrets | None = None,
        options: DispatcherOptions | None = None,
    ) -> None:
        self.registry = registry
        self.codec = codec or MetaCodec()
        self.secrets = secrets or Secrets()
        self.options = options or DispatcherOptions()
        self.executors = _Executors()
        self._unavailable_since: OrderedDict[str, float] = OrderedDict()

    # ================================================================= public operations
    async def create(self, req: TaskRequest) -> bytes:
        """Start a job; returns the resource_meta bytes.

        An invalid config or a job the service rejects does not raise: Propeller turns any CreateTask error
        into a *retryable* failure (wire reference §2.4). The failure is recorded in the envelope instead, and
        the first GetTask answers FAILED, so no retry is burned.
        """
        connector = self._connector(req.task_type, req.task_version)
        if not isinstance(connector, AsyncConnector):
            raise CallFailed(
                f"task type {req.task_type!r} is served synchronously; call ExecuteTaskSync, not CreateTask",
                "INVALID_ARGUMENT",
            )
        packed_types = literals.pack_types(req.output_types)
        with self._observe(req.task_type, "create"):
            try:
                ctx = self._task_context(connector, req)
                meta = await self._call(connector, "create", connector.create, ctx, deadline=req.deadline, retry=True)
                if not isinstance(meta, connector.meta_model):
                    raise TypeError(
                        f"{type(connector).__name__}.create returned {type(meta).__name__}, "
                        f"expected {connector.meta_model.__name__}"
                    )
                meta_dict = meta.model_dump(mode="json")
                failure = None
            except (InvalidTaskConfig, JobRejected) as err:
                log.info("create %s refused permanently: %s", req.task_type, redact(str(err)))
                meta_dict, failure = {}, redact(str(err))
            envelope = Envelope(
                req.task_type, req.task_version, meta_dict, packed_types, failure, created_at=time.time()
            )
            try:
                return self.codec.encode(envelope)
            except ValueError as err:
                raise CallFailed(f"{type(connector).__name__}: {err}") from None

    async def get(
        self,
        task_type: str,
        task_version: int,
        resource_meta: bytes,
        *,
        output_prefix: str = "",
        deadline: float | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> WireResource:
        """Report a job. Never answers UNDEFINED; a transient failure is a non-terminal phase, not an error."""
        with self._observe(task_type, "get"):
            try:
                connector, envelope, job = self._open(task_type, task_version, resource_meta)
                output_types = _output_types(envelope)
            except InvalidResourceMeta as err:
                return WireResource(Phase.FAILED, redact(str(err)))
            if envelope.failure is not None:
                return WireResource(Phase.FAILED, envelope.failure)
            ctx = CallContext(task_type, self.secrets.with_overrides(secrets), output_prefix,
                              self._deadline(deadline))
            try:
                resource = await self._call(connector, "get", connector.get, job, ctx, deadline=deadline, retry=True)
            except TransientServiceError as err:
                return self._still_unavailable(_job_key(resource_meta), err)
            except JobNotFound as err:
                self._available_again(resource_meta)
                return WireResource(Phase.FAILED, f"the job no longer exists at the service: {redact(str(err))}")
            except (InvalidTaskConfig, JobRejected) as err:
                return WireResource(Phase.FAILED, redact(str(err)))
            self._available_again(resource_meta)
            return self._to_wire(connector, resource, output_types)

    async def delete(
        self,
        task_type: str,
        task_version: int,
        resource_meta: bytes,
        *,
        deadline: float | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """Stop a job. Idempotent: a job that is gone or finished is success."""
        with self._observe(task_type, "delete"):
            connector, envelope, job = self._open(task_type, task_version, resource_meta)
            if envelope.failure is not None:
                return  # nothing was started
            ctx = CallContext(task_type, self.secrets.with_overrides(secrets), "", self._deadline(deadline))
            try:
                await self._call(connector, "delete", connector.delete, job, ctx, deadline=deadline, retry=True)
            except JobNotFound:
                return
            except TransientServiceError as err:
                raise CallFailed(f"the service did not answer the cancel request: {redact(str(err))}",
                                 "UNAVAILABLE") from None

    async def do(self, req: TaskRequest) -> WireResource:
        """Run a sync request. Always answers a terminal phase inside the deadline (wire reference §2.5)."""
        with self._observe(req.task_type, "do"):
            connector = self._connector(req.task_type, req.task_version)
            if not isinstance(connector, SyncConnector):
                raise CallFailed(
                    f"task type {req.task_type!r} is asynchronous; call CreateTask, not ExecuteTaskSync",
                    "INVALID_ARGUMENT",
                )
            try:
                ctx = self._task_context(connector, req)
                resource = await self._call(connector, "do", connector.do, ctx, deadline=req.deadline, retry=True)
            except (InvalidTaskConfig, JobRejected) as err:
                return WireResource(Phase.FAILED, redact(str(err)))
            except TransientServiceError as err:
                return WireResource(Phase.RETRYABLE_FAILED, f"the service is unavailable: {redact(str(err))}")
            except DeadlineTooShort as err:
                return WireResource(Phase.RETRYABLE_FAILED, redact(str(err)))
            wire = self._to_wire(connector, resource, dict(req.output_types))
            if not wire.phase.is_terminal:
                wire = WireResource(
                    Phase.FAILED,
                    f"{type(connector).__name__}.do returned non-terminal phase {wire.phase.name}; a sync task "
                    "must finish inside the call",
                    None, wire.log_links, wire.custom_info,
                )
            return wire

    async def logs(
        self, task_type: str, task_version: int, resource_meta: bytes, *, deadline: float | None = None
    ) -> AsyncIterator[str]:
        connector, _envelope, job = self._open(task_type, task_version, resource_meta)
        if connector.get_logs is None:  # type: ignore[attr-defined]
            raise CallFailed(f"{connector.name} does not stream logs; see the task's log links", "UNIMPLEMENTED")
        ctx = CallContext(task_type, self.secrets, "", self._deadline(deadline))
        get_logs = connector.get_logs  # type: ignore[attr-defined]
        if inspect.iscoroutinefunction(get_logs) or inspect.isasyncgenfunction(get_logs):
            produced = get_logs(job, ctx)
        else:  # a plain def may block before it returns its lines: run it in the connector's threads
            produced = await self.executors.run(connector, get_logs, job, ctx)
        if inspect.isawaitable(produced):
            produced = await produced
        if hasattr(produced, "__aiter__"):
            async for line in produced:
                yield redact(str(line))
        else:
            lines: list[Any] = await self.executors.run(connector, list, produced)
            for line in lines:
                yield redact(str(line))

    async def metrics(self, task_type: str, task_version: int, resource_meta: bytes, **query: Any) -> Any:
        connector, _envelope, job = self._open(task_type, task_version, resource_meta)
        if connector.get_metrics is None:  # type: ignore[attr-defined]
            raise CallFailed(f"{connector.name} does not report metrics", "UNIMPLEMENTED")
        ctx = CallContext(task_type, self.secrets, "", None)
        return await self._call(connector, "metrics", connector.get_metrics, job, ctx, deadline=None,  # type: ignore[attr-defined]
                                retry=True)

    async def warm_up(self, timeout: float = 60.0) -> list[str]:
        """Build every registered connector and run its ``warm_up`` in its own thread pool. Returns problems."""
        problems: list[str] = []

        async def one(task_type: str, version: int) -> None:
            try:
                connector = self.registry.get(task_type, version)
                await asyncio.wait_for(_in_daemon_thread(connector.warm_up), timeout)
            except Exception as err:
                problems.append(f"{task_type} v{version}: {type(err).__name__}: {redact(str(err))}")
                log.warning("warm-up of %s failed: %s", task_type, problems[-1])

        await asyncio.gather(*(one(c.name, c.version) for c, _ in self.registry.categories()))
        # After the SDK imports a full collection walks ~250k long-lived objects (~0.5 s on the loop thread).
        # Move them out of the collector's way once; later collections only see what requests allocate.
        gc.collect()
        gc.freeze()
        return problems

    async def aclose(self) -> None:
        for connector in self.registry.instances():
            try:
                result = connector.close()
                if inspect.isawaitable(result):
                    await result
            except Exception as err:
                log.warning("closing %s failed: %s", type(connector).__name__, redact(str(err)))
        self.executors.shutdown()

    # ================================================================= internals
    def _connector(self, task_type: str, version: int) -> Connector[Any]:
        return self.registry.get(task_type, version)

    def _open(self, task_type: str, version: int, raw: bytes) -> tuple[AsyncConnector[Any, Any], Envelope, Any]:
        envelope = self.codec.decode(raw)
        if not task_type:
            task_type, version = envelope.task_type, envelope.task_version
        if (envelope.task_type, envelope.task_version) != (task_type, version):
            raise InvalidResourceMeta(
                f"resource_meta belongs to task type {envelope.task_type!r} v{envelope.task_version}, "
                f"not {task_type!r} v{version}"
            )
        connector = self._connector(task_type, version)
        if not isinstance(connector, AsyncConnector):
            raise InvalidResourceMeta(f"task type {task_type!r} is synchronous and has no jobs to look up")
        job = None if envelope.failure is not None else parse_meta(connector.meta_model, envelope.meta)
        return connector, envelope, job

    def _deadline(self, deadline: float | None) -> float | None:
        if deadline is None:
            if self.options.default_timeout is None:
                return None
            return time.monotonic() + self.options.default_timeout
        left = deadline - time.monotonic()
        # Keep a margin for the answer to travel, but never more than a fifth of a short deadline.
        return deadline - min(self.options.deadline_margin, max(left, 0) / 5)

    def _task_context(self, connector: Connector[Any], req: TaskRequest) -> TaskContext[Any]:
        model: type[TaskConfig] = connector.config_model
        config = model.from_template_parts(req.custom, req.config, req.sql)
        inputs = literals.inputs_to_python(req.inputs)
        return TaskContext(
            task_type=req.task_type,
            secrets=self.secrets.with_overrides(req.secrets),
            output_prefix=req.output_prefix,
            deadline=self._deadline(req.deadline),
            config=config,
            inputs=inputs,
            identity=req.identity,
            namespace=req.namespace,
            labels=dict(req.labels),
            annotations=dict(req.annotations),
            service_account=req.service_account,
            environment=dict(req.environment),
            output_names=tuple(req.output_types),
            container_image=req.container_image,
            container_args=tuple(req.container_args),
            container_env=dict(req.container_env),
        )

    async def _call(
        self,
        connector: Connector[Any],
        operation: str,
        fn: Callable[..., Any],
        *args: Any,
        deadline: float | None,
        retry: bool,
    ) -> Any:
        """Run one connector method under the deadline, retrying transient failures when ``retry``."""
        end = self._deadline(deadline)
        attempt = 0
        while True:
            try:
                return await self._once(connector, operation, fn, args, end)
            except TransientServiceError as err:
                if not retry or attempt + 1 >= self.options.retry.attempts:
                    raise
                pause = self.options.retry.delay(attempt, err.retry_after)
                if end is not None and time.monotonic() + pause >= end:
                    raise
                metrics.for_call(connector.task_type, operation).retries().inc()
                log.info("%s %s: transient failure, retrying in %.2fs: %s", connector.task_type, operation, pause,
                         redact(str(err)))
                await asyncio.sleep(pause)
                attempt += 1
            except ConnectorError:
                raise
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as err:
                log.error("%s.%s failed", type(connector).__name__, operation, exc_info=True)
                raise CallFailed(f"{connector.name} {operation} failed: {type(err).__name__}: "
                                 f"{_one_line(redact(str(err)))}") from None

    async def _once(
        self, connector: Connector[Any], operation: str, fn: Callable[..., Any], args: tuple[Any, ...],
        end: float | None,
    ) -> Any:
        timeout = None if end is None else end - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise DeadlineTooShort(f"the {operation} call's deadline left no time to reach the service")
        if _is_coroutine_function(fn):
            ON_LOOP[connector.task_type] = ON_LOOP.get(connector.task_type, 0) + 1
            ON_LOOP_SEEN.add(connector.task_type)
            call = begin_call()
            try:
                coro = fn(*args)  # async_mode: on the host's loop, or on the package's own loops (core/loops.py)
                return await _within(coro if connector in ON_MAIN_LOOP else isolate(connector, coro), timeout)
            except asyncio.TimeoutError:
                raise TransientServiceError(
                    f"{operation} did not finish within the call's deadline ({timeout:.1f}s)"
                ) from None
            finally:
                call.done = True
                ON_LOOP[connector.task_type] -= 1
        future = self.executors.run(connector, fn, *args, start_by=end, operation=operation)
        try:
            result = await _within(future, timeout)
        except asyncio.TimeoutError:
            raise TransientServiceError(
                f"{operation} did not finish within the call's deadline ({timeout:.1f}s)"
            ) from None
        if inspect.isawaitable(result):  # a def that returned a coroutine
            return await result
        return result

    def _available_again(self, resource_meta: bytes) -> None:
        if self._unavailable_since:  # usually empty: skip hashing the metadata
            self._unavailable_since.pop(_job_key(resource_meta), None)

    def _still_unavailable(self, key: str, err: TransientServiceError) -> WireResource:
        now = time.monotonic()
        since = self._unavailable_since.setdefault(key, now)
        self._unavailable_since.move_to_end(key)
        while len(self._unavailable_since) > 100_000:
            self._unavailable_since.popitem(last=False)
        waited = now - since
        if waited >= self.options.unavailable_grace:
            self._unavailable_since.pop(key, None)
            return WireResource(
                Phase.RETRYABLE_FAILED,
                f"the service has been unavailable for {waited:.0f}s: {redact(str(err))}",
            )
        return WireResource(
            Phase.RUNNING,
            f"status check failed transiently; will retry on the next poll: {redact(str(err))}",
        )

    def _to_wire(
        self, connector: Connector[Any], resource: Any, output_types: Mapping[str, types_pb2.LiteralType] | None
    ) -> WireResource:
        if not isinstance(resource, Resource):
            raise CallFailed(f"{type(connector).__name__} returned {type(resource).__name__}, expected a Resource")
        outputs = None
        message = redact(resource.message or "")
        phase = resource.phase
        if phase is Phase.SUCCEEDED and resource.outputs is not None:
            try:
                outputs = literals.outputs_to_literals(resource.outputs, output_types)
            except InvalidTaskConfig as err:
                phase, message = Phase.FAILED, f"the job succeeded but its outputs do not fit the interface: {err}"
        return WireResource(
            phase,
            message,
            outputs,
            [LogLink(link.name, redact(link.uri)) for link in resource.log_links],
            _redact_info(resource.custom_info),
        )

    class _Observation:
        """In-flight gauge, latency and outcome count of one dispatcher operation."""

        __slots__ = ("calls", "start")

        def __init__(self, calls: metrics.CallMetrics) -> None:
            self.calls = calls

        def __enter__(self) -> None:
            self.start = time.perf_counter()
            self.calls.in_flight.inc()

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            calls = self.calls
            calls.in_flight.dec()
            calls.latency.observe(time.perf_counter() - self.start)
            outcome = "ok" if exc_type is None else getattr(exc, "code", type(exc).__name__)
            calls.requests(str(outcome)).inc()

    def _observe(self, task_type: str, operation: str) -> Dispatcher._Observation:
        return Dispatcher._Observation(metrics.for_call(task_type, operation))


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled by a deadline while the call ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _settle_threadsafe(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, error: BaseException | None
) -> None:
    if not loop.is_closed():  # a call that outlived its host's loop has nobody to tell
        loop.call_soon_threadsafe(_settle, future, result, error)


def _cancel_if_dropped(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], submitted: Any) -> None:
    if submitted.cancelled() and not loop.is_closed():
        loop.call_soon_threadsafe(future.cancel)


def _in_daemon_thread(fn: Callable[[], Any]) -> asyncio.Future[Any]:
    """Run ``fn`` on a daemon thread: a warm-up still importing an SDK must not hold up a drained host's exit
    (executor threads are joined at interpreter exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = fn(), None
        except BaseException as err:  # handed to the awaiting coroutine
            result, error = None, err
        loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="fc-warm-up", daemon=True).start()
    return future


_COROUTINE_FUNCTIONS: dict[Any, bool] = {}


def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction`` of a connector method, remembered per function (asked on every call)."""
    key = getattr(fn, "__func__", fn)
    try:
        return _COROUTINE_FUNCTIONS[key]
    except KeyError:
        pass
    except TypeError:  # not hashable
        return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(key)
    found = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(key)
    if len(_COROUTINE_FUNCTIONS) < 10_000:
        _COROUTINE_FUNCTIONS[key] = found
    return found


def _job_key(resource_meta: bytes) -> str:
    return hashlib.sha256(resource_meta).hexdigest()


if sys.version_info >= (3, 11):

    class _Expiry:
        __slots__ = ("fired", "task")

        def __init__(self, task: asyncio.Task[Any]) -> None:
            self.task = task
            self.fired = False

        def fire(self) -> None:
            self.fired = True
            self.task.cancel()

    async def _within(awaitable: Awaitable[T], timeout: float | None) -> T:
        """``await awaitable``, raising TimeoutError after ``timeout`` seconds (None: no limit).

        What ``asyncio.timeout`` does (cancel the awaiting task in place, and tell that cancellation apart from any
        other with ``uncancel``), for half its cost: it runs around every connector call. ``wait_for`` (3.10)
        wraps a coroutine in a task.
        """
        task = asyncio.current_task() if timeout is not None else None
        if task is None:
            return await awaitable
        loop = asyncio.get_running_loop()
        cancelling = task.cancelling()
        expiry = _Expiry(task)
        handle = loop.call_at(loop.time() + timeout, expiry.fire)  # type: ignore[operator]
        try:
            return await awaitable
        except asyncio.CancelledError:
            if expiry.fired:
                expiry.fired = False
                if task.uncancel() <= cancelling:
                    raise TimeoutError from None
            raise
        finally:
            handle.cancel()
            if expiry.fired:  # the deadline passed just as the call finished: take back its cancellation
                task.uncancel()

else:

    async def _within(awaitable: Awaitable[T], timeout: float | None) -> T:
        """``await awaitable``, raising TimeoutError after ``timeout`` seconds (None: no limit)."""
        if timeout is None:
            return await awaitable
        return await asyncio.wait_for(awaitable, timeout)


def _output_types(envelope: Envelope) -> dict[str, types_pb2.LiteralType] | None:
    try:
        return literals.unpack_types(envelope.outputs)
    except Exception as err:  # base64 or protobuf garbage: refused before any call to the service
        raise InvalidResourceMeta(f"resource_meta output interface is malformed: {type(err).__name__}") from None


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _redact_info(info: Any) -> Any:
    if isinstance(info, dict):
        return {str(k): _redact_info(v) for k, v in info.items()}
    if isinstance(info, (list, tuple)):
        return [_redact_info(v) for v in info]
    if isinstance(info, str):
        return redact(info)
    return info


def run_sync(coro_fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run a dispatcher coroutine from synchronous code (local runs, scripts)."""
    return asyncio.run(_call_async(functools.partial(coro_fn, *args, **kwargs)))


async def _call_async(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()
