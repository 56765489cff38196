"""Runs connector jobs in-process for local executions, through the same dispatcher the host uses.

One event loop per process, on a daemon thread, serves every task of every workflow the process runs, so a
workflow of many connector tasks does not pay for a new loop or thread pool per task. The calling (main)
thread only waits; a Ctrl-C or flytekit's SIGINT handler (which calls ``exit(1)``) interrupts that wait and the
runner deletes the remote job before the exception goes on.

Polling is adaptive: the first status check is made right after create, then the pause doubles from
``PollPolicy.initial`` up to ``PollPolicy.cap``. flytekit's local path sleeps a blocking second before every
check (wire reference §3.3).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from flyteconnectors.core.connector import Connector
from flyteconnectors.core.dispatcher import Dispatcher, DispatcherOptions, TaskRequest, WireResource
from flyteconnectors.core.local.display import Display, NoDisplay
from flyteconnectors.core.registry import Registry, TaskCategory, package_of, register_modules
from flyteconnectors.core.resource import Phase

T = TypeVar("T")

#: Extra connector modules for local runs (and the host): ``[package=]module[:attribute],...``.
MODULES_ENV = "FLYTECONNECTORS_MODULES"
#: Longest pause between two status checks, in seconds.
POLL_CAP_ENV = "FLYTECONNECTORS_LOCAL_POLL_CAP"


class LocalTimeout(Exception):
    """The task's timeout passed; the remote job was deleted."""

    def __init__(self, timeout: float, cancelled: bool, detail: str = "", *, outcome: str = "") -> None:
        self.timeout = timeout
        self.cancelled = cancelled
        outcome = outcome or ("the remote job was cancelled" if cancelled else "the remote job could not be cancelled")
        super().__init__(f"timed out after {timeout:g}s; {outcome}{' (' + detail + ')' if detail else ''}")


class LocalCallFailed(Exception):
    """A connector call failed outright (not a job that reported FAILED)."""


@dataclass(frozen=True)
class PollPolicy:
    #: Pause after the first (immediate) status check; doubles on every check up to ``cap``.
    initial: float = 0.015
    factor: float = 2.0
    cap: float = 3.0

    def pauses(self) -> Iterator[float]:
        pause = self.initial
        while True:
            yield pause
            pause = min(self.cap, pause * self.factor)

    @classmethod
    def from_env(cls) -> PollPolicy:
        cap = os.environ.get(POLL_CAP_ENV)
        return cls(cap=float(cap)) if cap else cls()


class _Job:
    """One local job: what the waiting thread and the loop share."""

    def __init__(self, req: TaskRequest, timeout: float | None, display: Display) -> None:
        self.req = req
        self.timeout = timeout
        self.display = display
        self.meta: bytes | None = None
        self.cleaned = threading.Event()


class LocalRunner:
    """The process-wide local executor: one dispatcher, one loop thread."""

    def __init__(self, dispatcher: Dispatcher, poll: PollPolicy | None = None, *, cancel_grace: float = 30.0) -> None:
        self.dispatcher = dispatcher
        self.poll = poll or PollPolicy()
        self.cancel_grace = cancel_grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> LocalRunner:
        """Installed connectors (entry points) plus ``FLYTECONNECTORS_MODULES``; settings and secrets from the
        environment and ``/etc/secrets``, exactly as the host resolves them."""
        registry = Registry.discover()
        register_modules(registry, os.environ.get(MODULES_ENV, ""))
        options = DispatcherOptions(unavailable_grace=300.0)
        return cls(Dispatcher(registry, options=options), PollPolicy.from_env())

    # ------------------------------------------------------------------ the loop
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            with self._lock:
                if self._loop is None:
                    new = asyncio.new_event_loop()
                    thread = threading.Thread(target=new.run_forever, name="flyteconnectors-local", daemon=True)
                    thread.start()
                    self._loop = new
                    atexit.register(self.close)
                loop = self._loop
        return loop

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the runner's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.dispatcher.aclose(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)

    # ------------------------------------------------------------------ registry
    def ensure_served(self, connector: type[Connector[Any]]) -> None:
        """Serve a task's connector class when no installed package or configured module serves its type."""
        registry = self.dispatcher.registry
        if TaskCategory(connector.task_type, connector.task_version) in dict(registry.categories()):
            return
        with self._lock:
            if TaskCategory(connector.task_type, connector.task_version) not in dict(registry.categories()):
                # The class's own package, not one inherited from a registered base class.
                package = vars(connector).get("package") or package_of(connector.__module__)
                registry.register(connector, package=package)

    # ------------------------------------------------------------------ running a job
    def run(self, req: TaskRequest, *, timeout: float | None = None, display: Display | None = None) -> WireResource:
        """Run one task to a terminal phase. Raises LocalTimeout, LocalCallFailed, or whatever interrupted the
        wait (KeyboardInterrupt, SystemExit) after the remote job was deleted."""
        connector = self.dispatcher.registry.get(req.task_type, req.task_version)
        job = _Job(req, timeout, display or NoDisplay())
        job.display.started()
        driver = self._do(job) if connector.is_sync else self._drive(job)
        loop = self.loop
        future: concurrent.futures.Future[WireResource] | None = None
        try:
            future = asyncio.run_coroutine_threadsafe(driver, loop)
            resource = future.result()
        except BaseException as err:
            if future is not None and not future.done():  # interrupted while the job runs: cancel it first
                job.display.note("interrupted: cancelling the remote job")
                future.cancel()
                if not job.cleaned.wait(self.cancel_grace):
                    job.display.note("the remote job may still be running: cancelling it did not finish in time")
                job.display.finished(Phase.ABORTED, "interrupted")
            else:
                job.display.finished(Phase.FAILED, str(err))
            raise
        job.display.finished(resource.phase, resource.message)
        return resource

    async def _do(self, job: _Job) -> WireResource:
        try:
            if job.timeout is None:
                return await self._guard(self.dispatcher.do(job.req))
            try:
                return await asyncio.wait_for(self._guard(self.dispatcher.do(job.req)), job.timeout)
            except asyncio.TimeoutError:
                raise LocalTimeout(job.timeout, cancelled=True, outcome="the request was abandoned") from None
        finally:
            job.cleaned.set()

    async def _drive(self, job: _Job) -> WireResource:
        try:
            return await self._poll(job)
        finally:
            job.cleaned.set()

    async def _poll(self, job: _Job) -> WireResource:
        req = job.req
        end = None if job.timeout is None else time.monotonic() + job.timeout
        create = asyncio.ensure_future(self._guard(self.dispatcher.create(req)))
        try:
            job.meta = await asyncio.wait_for(asyncio.shield(create), None if end is None else end - time.monotonic())
        except asyncio.TimeoutError:
            await self._cancel_late(job, create)
            raise LocalTimeout(job.timeout or 0.0, job.meta is not None, "while the job was being created") from None
        except asyncio.CancelledError:
            await self._cancel_late(job, create)
            raise
        pauses = self.poll.pauses()
        try:
            while True:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise asyncio.TimeoutError
                get = self._guard(self.dispatcher.get(req.task_type, req.task_version, job.meta,
                                                      output_prefix=req.output_prefix, secrets=req.secrets))
                resource = await (get if left is None else asyncio.wait_for(get, left))
                job.display.update(resource.phase, resource.message, resource.log_links)
                if resource.phase.is_terminal:
                    return resource
                pause = next(pauses)
                if end is not None:
                    left = end - time.monotonic()
                    if left <= 0:
                        raise asyncio.TimeoutError
                    pause = min(pause, left)
                await asyncio.sleep(pause)
        except asyncio.TimeoutError:
            cancelled = await self._cancel(job)
            raise LocalTimeout(job.timeout or 0.0, cancelled) from None
        except (asyncio.CancelledError, LocalCallFailed):
            await self._cancel(job)
            raise

    async def _cancel_late(self, job: _Job, create: asyncio.Future[bytes]) -> None:
        """The wait ended while create was in flight: let create finish (bounded) so its job can be deleted."""
        try:
            job.meta = await asyncio.wait_for(asyncio.shield(create), self.cancel_grace)
        except BaseException:
            return
        await self._cancel(job)

    async def _cancel(self, job: _Job) -> bool:
        if job.meta is None:
            return False
        req = job.req
        try:
            await asyncio.wait_for(
                self.dispatcher.delete(req.task_type, req.task_version, job.meta, secrets=req.secrets),
                self.cancel_grace,
            )
        except BaseException as err:
            job.display.note(f"cancelling the remote job failed: {err}")
            return False
        job.display.note("remote job cancelled")
        return True

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, T]) -> T:
        """Connector failures surface as one clear exception, not the dispatcher's wire error."""
        from flyteconnectors.core.dispatcher import CallFailed
        from flyteconnectors.core.errors import ConnectorError

        try:
            return await coro
        except (CallFailed, ConnectorError) as err:
            raise LocalCallFailed(str(err)) from None


_RUNNER: LocalRunner | None = None
_RUNNER_LOCK = threading.Lock()


def local_runner() -> LocalRunner:
    """The process's runner, built from the environment on first use."""
    global _RUNNER
    if _RUNNER is None:
        with _RUNNER_LOCK:
            if _RUNNER is None:
                _RUNNER = LocalRunner.from_environment()
    return _RUNNER


def set_local_runner(runner: LocalRunner | None) -> LocalRunner | None:
    """Replace the process's runner (tests, embedding); returns the previous one."""
    global _RUNNER
    with _RUNNER_LOCK:
        previous, _RUNNER = _RUNNER, runner
    return previous
