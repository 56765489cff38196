"""Idle service clients are closed (with their keep-alive connections) and rebuilt on next use, never under a call."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import time

import pytest
from click.testing import CliRunner

from flyteconnectors.core import AsyncConnector, CallContext, JobMeta, Phase, Resource, TaskConfig, TaskContext
from flyteconnectors.core.cli import main
from flyteconnectors.core.clients import ClientCache, start_idle_sweep, sweep_idle_clients
from flyteconnectors.core.dispatcher import Dispatcher, TaskRequest
from flyteconnectors.core.host.settings import SettingsError, load_settings
from flyteconnectors.core.registry import Registry
from flyteconnectors.core.secrets import Secrets
from flyteconnectors.core.testing import builders

IDLE = 0.2


class Pool:
    """A stand-in for an SDK client: it "holds connections" until closed; using it after close fails."""

    built: list[Pool] = []

    def __init__(self, close_seconds: float = 0.0) -> None:
        self.closed_at: float | None = None
        self.close_seconds = close_seconds
        self.close_thread: str | None = None
        Pool.built.append(self)

    def call(self) -> str:
        if self.closed_at is not None:
            raise RuntimeError("the client was closed under the call")
        return "ok"

    def close(self) -> None:
        self.close_thread = threading.current_thread().name
        time.sleep(self.close_seconds)
        self.closed_at = time.monotonic()


class AsyncPool(Pool):
    """A natively async client (AsyncOpenAI-like): closed by ``await aclose()`` on the loop."""

    async def aclose(self) -> None:
        self.closed_at = time.monotonic()


class Cfg(TaskConfig):
    hold: float = 0.0


class Meta(JobMeta):
    job_id: str


class Pooled(AsyncConnector[Cfg, Meta]):
    """Plain ``def`` methods (run in the package's threads) that fetch the client and may hold it a while."""

    name = "Pooled"
    task_type = "pooled"

    def create(self, task: TaskContext[Cfg]) -> Meta:
        client = self.clients.get("service", Pool)
        time.sleep(task.config.hold)
        client.call()
        return Meta(job_id=task.idempotency_key)

    def get(self, job: Meta, ctx: CallContext) -> Resource:
        self.clients.get("service", Pool).call()
        return Resource(phase=Phase.SUCCEEDED, outputs={})


class AsyncPooled(AsyncConnector[Cfg, Meta]):
    """``async def`` methods on the loop, holding the client across an await."""

    name = "AsyncPooled"
    task_type = "async_pooled"

    async def create(self, task: TaskContext[Cfg]) -> Meta:
        client = self.clients.get("service", AsyncPool)
        await asyncio.sleep(task.config.hold)
        client.call()
        return Meta(job_id=task.idempotency_key)

    async def get(self, job: Meta, ctx: CallContext) -> Resource:
        self.clients.get("service", AsyncPool).call()
        return Resource(phase=Phase.SUCCEEDED, outputs={})


@pytest.fixture(autouse=True)
def _fresh_pools():
    Pool.built.clear()
    yield
    Pool.built.clear()


def dispatcher() -> Dispatcher:
    registry = Registry()
    registry.register(Pooled, AsyncPooled, package="idle-test")
    return Dispatcher(registry, secrets=Secrets({}, dirs=()))


def request(task_type: str = "pooled", name: str = "a", **custom: object) -> TaskRequest:
    template = builders.task_template(task_type, custom or None)
    from flyteconnectors.core.host.wire_v1 import request_from_template

    return request_from_template(template, None, "/tmp/out", builders.execution_metadata(builders.identity(name)),
                                 None)


async def rpc(coro):  # type: ignore[no-untyped-def]
    """Like the gRPC server: every RPC runs in a task of its own."""
    return await asyncio.create_task(coro)


async def wait_until(predicate, limit: float = 3.0) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < limit, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.parametrize("task_type", ["pooled", "async_pooled"])
async def test_an_unused_client_is_closed_after_the_idle_timeout_and_rebuilt_on_next_use(task_type):
    d = dispatcher()
    sweep = start_idle_sweep(d.registry.client_caches, IDLE)
    try:
        meta = await rpc(d.create(request(task_type)))
        assert len(Pool.built) == 1
        first = Pool.built[0]
        used = time.monotonic()

        await wait_until(lambda: first.closed_at is not None)
        assert first.closed_at - used >= IDLE  # type: ignore[operator]

        answer = await rpc(d.get(task_type, 0, meta))
        assert answer.phase is Phase.SUCCEEDED, answer.message
        assert len(Pool.built) == 2 and Pool.built[1].closed_at is None
    finally:
        sweep.cancel()  # type: ignore[union-attr]
        await d.aclose()
    assert Pool.built[1].closed_at is not None, "the drain closes the rebuilt client"


async def test_a_client_used_more_often_than_the_timeout_stays_open():
    d = dispatcher()
    sweep = start_idle_sweep(d.registry.client_caches, IDLE)
    try:
        meta = await rpc(d.create(request()))
        end = time.monotonic() + 4 * IDLE
        while time.monotonic() < end:
            assert (await rpc(d.get("pooled", 0, meta))).phase is Phase.SUCCEEDED
            await asyncio.sleep(IDLE / 4)
        assert len(Pool.built) == 1 and Pool.built[0].closed_at is None
    finally:
        sweep.cancel()  # type: ignore[union-attr]
        await d.aclose()


@pytest.mark.parametrize("task_type", ["pooled", "async_pooled"])
async def test_a_client_held_by_a_running_call_is_not_closed_under_it(task_type):
    d = dispatcher()
    sweep = start_idle_sweep(d.registry.client_caches, IDLE)
    try:
        # The call fetches the client once, then holds it for five idle timeouts before using it.
        meta = await rpc(d.create(request(task_type, hold=5 * IDLE)))
        ended = time.monotonic()
        assert meta  # create raised nothing: the client was still open when the call used it
        assert len(Pool.built) == 1
        # Once the call is over, the client is idle like any other.
        await wait_until(lambda: Pool.built[0].closed_at is not None)
        assert Pool.built[0].closed_at - ended >= IDLE - 0.05  # type: ignore[operator]
    finally:
        sweep.cancel()  # type: ignore[union-attr]
        await d.aclose()


async def test_the_sweep_closes_blocking_clients_off_the_loop_and_async_ones_on_it():
    cache = ClientCache()
    clients: dict[str, Pool] = {}

    async def call() -> None:  # a call of its own, which then ends
        clients["slow"] = cache.get("slow", lambda: Pool(close_seconds=0.6))
        clients["native"] = cache.get("native", AsyncPool)

    await asyncio.create_task(call())
    slow, native = clients["slow"], clients["native"]
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    sweep = asyncio.create_task(sweep_idle_clients(lambda: [cache], IDLE, interval=0.02))
    try:
        await wait_until(lambda: slow.closed_at is not None and native.closed_at is not None)
    finally:
        sweep.cancel()
        ticking.cancel()
    assert slow.close_thread != threading.current_thread().name, "a blocking close ran on the loop"
    assert max(gaps) < 0.3, f"the loop stalled {max(gaps):.2f}s while a 0.6 s close ran"
    assert len(cache) == 0
    # A closed client is simply rebuilt.
    assert cache.get("native", AsyncPool) is not native


async def test_clients_fetched_in_a_context_that_is_still_alive_are_not_closed():
    cache = ClientCache()
    held = cache.get("held", Pool)  # this test's own context lives on: it may still use the client
    await asyncio.sleep(IDLE + 0.05)
    assert await cache.close_idle(IDLE) == 0 and held.closed_at is None


async def test_zero_timeout_never_closes_clients():
    assert start_idle_sweep(lambda: [], 0) is None


def test_idle_timeout_is_a_host_setting_from_flag_environment_or_config_file(tmp_path):
    assert load_settings(env={}).client_idle_timeout == 60.0
    config = tmp_path / "host.toml"
    config.write_text("client_idle_timeout = 30\n")
    assert load_settings(config_file=str(config), env={}).client_idle_timeout == 30.0
    env = {"FLYTECONNECTORS_CLIENT_IDLE_TIMEOUT": "20"}
    assert load_settings(config_file=str(config), env=env).client_idle_timeout == 20.0
    assert load_settings({"client_idle_timeout": 10}, config_file=str(config), env=env).client_idle_timeout == 10.0
    with pytest.raises(SettingsError, match="client_idle_timeout"):
        load_settings(env={"FLYTECONNECTORS_CLIENT_IDLE_TIMEOUT": "-1"})


def test_serve_takes_the_idle_timeout_flag(monkeypatch):
    monkeypatch.delenv("FLYTECONNECTORS_CLIENT_IDLE_TIMEOUT", raising=False)
    result = CliRunner().invoke(main, ["serve", "--client-idle-timeout", "12.5", "--print-config"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["client_idle_timeout"] == 12.5


async def test_a_finished_call_left_in_a_reference_cycle_does_not_hold_its_client_forever():
    import gc

    cache = ClientCache()
    clients: dict[str, Pool] = {}

    async def call() -> None:  # a call that ends with its context caught in a cycle (as a failed task's can be)
        clients["pool"] = cache.get("pool", Pool)
        cycle: list[object] = []
        cycle.append((cycle, asyncio.current_task()))

    gc.disable()  # only the sweep may collect the cycle
    try:
        await asyncio.create_task(call())
        pool = clients.pop("pool")
        assert cache.held(), "the finished call's context is still alive in its cycle"
        sweep = asyncio.create_task(sweep_idle_clients(lambda: [cache], IDLE, interval=0.02))
        try:
            await wait_until(lambda: pool.closed_at is not None)
        finally:
            sweep.cancel()
    finally:
        gc.enable()
    assert len(cache) == 0


class KeepsItsContext(AsyncConnector[Cfg, Meta]):
    """Its client's pooled connection keeps the context it was opened in, as uvloop's transports do."""

    name = "KeepsItsContext"
    task_type = "keeps_context"
    kept: list[object] = []

    async def create(self, task: TaskContext[Cfg]) -> Meta:
        self.clients.get("service", AsyncPool)
        KeepsItsContext.kept.append(contextvars.copy_context())  # lives on after the call, with the client
        return Meta(job_id=task.idempotency_key)

    async def get(self, job: Meta, ctx: CallContext) -> Resource:
        return Resource(phase=Phase.SUCCEEDED, outputs={})


class KeepsItsContextInAThread(KeepsItsContext):
    task_type = "keeps_context_def"

    def create(self, task: TaskContext[Cfg]) -> Meta:  # type: ignore[override]
        self.clients.get("service", Pool)
        KeepsItsContext.kept.append(contextvars.copy_context())
        return Meta(job_id=task.idempotency_key)


@pytest.mark.parametrize("task_type", ["keeps_context", "keeps_context_def"])
async def test_a_client_whose_connection_outlives_the_call_context_is_closed_once_idle(task_type):
    registry = Registry()
    registry.register(KeepsItsContext, KeepsItsContextInAThread, package="idle-test")
    d = Dispatcher(registry, secrets=Secrets({}, dirs=()))
    sweep = start_idle_sweep(d.registry.client_caches, IDLE)
    try:
        await rpc(d.create(request(task_type)))
        assert KeepsItsContext.kept, "the call's context is still alive"
        await wait_until(lambda: Pool.built[0].closed_at is not None)
    finally:
        sweep.cancel()  # type: ignore[union-attr]
        await d.aclose()
        KeepsItsContext.kept.clear()


async def test_a_call_that_fetches_a_client_after_an_earlier_call_ended_in_the_same_context_holds_it():
    from flyteconnectors.core.clients import begin_call

    cache = ClientCache()
    first = begin_call()
    cache.get("pool", Pool)
    first.done = True
    assert not cache.held()
    cache.get("pool", Pool)  # a later use in this context (no dispatcher call) marks it afresh
    assert cache.held()
