"""async_mode: a package's ``async def`` methods on the host's loop, on its own loops, or moved there by auto."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client import REGISTRY

from flyteconnectors.core import (
    AsyncConnector,
    CallContext,
    ConnectorSettings,
    InvalidTaskConfig,
    JobMeta,
    Phase,
    Resource,
    TaskConfig,
    TaskContext,
    loops,
)
from flyteconnectors.core.dispatcher import Dispatcher
from flyteconnectors.core.host.settings import load_settings
from flyteconnectors.core.host.watchdog import LoopWatchdog
from flyteconnectors.core.host.wire_v1 import request_from_template
from flyteconnectors.core.registry import Registry
from flyteconnectors.core.secrets import Secrets
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient


class Cfg(TaskConfig):
    seconds: float = 0.0


class Meta(JobMeta):
    job_id: str


class Blocky(AsyncConnector[Cfg, Meta]):
    """The mistake: a blocking call inside ``async def``. Records where and when each call ran."""

    name = "Blocky"
    task_type = "blocky"
    spans: list[tuple[float, float, str]] = []

    async def create(self, task: TaskContext[Cfg]) -> Meta:
        start = time.monotonic()
        time.sleep(task.config.seconds)
        Blocky.spans.append((start, time.monotonic(), threading.current_thread().name))
        return Meta(job_id=task.idempotency_key)

    async def get(self, job: Meta, ctx: CallContext) -> Resource:
        return Resource.succeeded()

    async def delete(self, job: Meta, ctx: CallContext) -> None:
        return None


class Polite(AsyncConnector[Cfg, Meta]):
    """A well-behaved native-async connector: it only awaits."""

    name = "Polite"
    task_type = "polite"

    async def create(self, task: TaskContext[Cfg]) -> Meta:
        await asyncio.sleep(task.config.seconds)
        return Meta(job_id=task.idempotency_key)

    async def get(self, job: Meta, ctx: CallContext) -> Resource:
        await asyncio.sleep(0.01)
        return Resource.running()

    async def delete(self, job: Meta, ctx: CallContext) -> None:
        return None


def registry(**packages: tuple[type[AsyncConnector[Any, Any]], dict[str, Any]]) -> Registry:
    settings = {name: values for name, (_, values) in packages.items()}
    reg = Registry(lambda pkg: settings.get(pkg, {}))
    for name, (klass, _) in packages.items():
        reg.register(klass, package=name)
    return reg


def timed_create(client: PropellerClient, task_type: str, seconds: float) -> float:
    started = time.monotonic()
    client.create(builders.task_template(task_type, {"seconds": seconds}))
    return time.monotonic() - started


def gauge(package: str) -> float | None:
    return REGISTRY.get_sample_value("flyteconnectors_async_isolated", {"package": package})


def test_isolated_blocking_connector_does_not_delay_another_package_and_its_calls_overlap() -> None:
    Blocky.spans = []
    reg = registry(**{"iso-blocky": (Blocky, {"async_mode": "isolated"}), "iso-quick": (Polite, {})})
    with HostThread(registry=reg) as host, ThreadPoolExecutor(4) as pool:
        client = PropellerClient(host.channel)
        blocking = [pool.submit(timed_create, client, "blocky", 0.4) for _ in range(3)]
        time.sleep(0.1)
        quick = [timed_create(client, "polite", 0) for _ in range(5)]
        assert max(quick) < 0.2, f"another package's calls waited for the blocking one: {quick}"
        for future in blocking:
            future.result(10)
        assert not host.host.watchdog.attributed, "the package's code stalled the host's event loop"
    starts = [s for s, _, _ in Blocky.spans]
    ends = [e for _, e, _ in Blocky.spans]
    assert max(starts) < min(ends), f"the package's own blocking calls ran one after another: {Blocky.spans}"
    assert all(name.startswith("fc-iso-blocky-loop-") for _, _, name in Blocky.spans)
    assert gauge("iso-blocky") == 1 and gauge("iso-quick") == 0


def test_auto_moves_a_connector_after_three_stalls_and_not_before(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    Blocky.spans = []
    reg = Registry(lambda pkg: {})
    reg.register(Blocky, Polite, package="auto-blocky")  # a package with a bad and a well-behaved connector
    with HostThread(registry=reg) as host:
        client = PropellerClient(host.channel)
        watchdog = host.host.watchdog
        connector = host.registry.get("blocky", 0)
        timed_create(client, "polite", 0)
        for stall in (1, 2):
            stall_until_attributed(client, watchdog, "auto-blocky/blocky", stall)
            assert not loops.runs_isolated(connector), f"moved after {stall} stall(s)"
        assert Blocky.spans[-1][2] == "host-loop"
        stall_until_attributed(client, watchdog, "auto-blocky/blocky", 3)
        _wait_until(lambda: loops.runs_isolated(connector))
        assert gauge("auto-blocky") == 1

        stalls = watchdog.stalls
        with ThreadPoolExecutor(4) as pool:
            blocking = [pool.submit(timed_create, client, "blocky", 0.3) for _ in range(3)]
            time.sleep(0.1)
            quick = timed_create(client, "polite", 0)
            [f.result(10) for f in blocking]
        assert quick < 0.2, "after the move the blocking connector still held up the host's loop"
        assert watchdog.stalls == stalls
        assert Blocky.spans[-1][2].startswith("fc-auto-blocky-loop-")
        assert not loops.runs_isolated(host.registry.get("polite", 0))
    moves = [r.getMessage() for r in caplog.records if "on the package's own event loops" in r.getMessage()]
    assert len(moves) == 1 and "auto-blocky" in moves[0] and "3 times" in moves[0]


def test_loop_mode_keeps_a_package_on_the_host_loop_whatever_it_does() -> None:
    reg = registry(**{"loop-blocky": (Blocky, {"async_mode": "loop"})})
    with HostThread(registry=reg) as host:
        client = PropellerClient(host.channel)
        for n in range(1, 5):
            stall_until_attributed(client, host.host.watchdog, "loop-blocky/blocky", n)
        assert not loops.runs_isolated(host.registry.get("blocky", 0))
        assert gauge("loop-blocky") == 0


@pytest.fixture
def cpu_burners() -> Iterator[None]:
    """The machine's cores busy with other processes, as on a loaded CI runner."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_auto_does_not_move_a_well_behaved_connector_under_cpu_load(
    cpu_burners: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    reg = registry(**{"busy-polite": (Polite, {})})
    with HostThread(registry=reg) as host:
        client = PropellerClient(host.channel, timeout=60)
        watchdog = host.host.watchdog
        template = builders.task_template("polite", {"seconds": 0.02})
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                meta = client.create(template)
                client.get(template, meta)

        started = time.perf_counter()
        sum(range(1_000_000))
        size = int(1_000_000 * 0.15 / max(time.perf_counter() - started, 1e-4))  # about 150 ms right now

        def hog(size: int) -> None:  # holds the GIL in one C call: the host's loop cannot run, whatever it did
            sum(range(size))

        with ThreadPoolExecutor(9) as pool:
            calls = [pool.submit(traffic) for _ in range(8)]
            deadline = time.monotonic() + 15
            while watchdog.stalls < 4 and time.monotonic() < deadline:
                stalls = watchdog.stalls
                time.sleep(0.05)
                pool.submit(hog, size).result()
                time.sleep(0.1)
                if watchdog.stalls == stalls:  # the machine got faster: hold the GIL longer
                    size = min(int(size * 1.5), 50_000_000)
            stop.set()
            [c.result(10) for c in calls]
        assert watchdog.stalls >= 4, "the test did not manage to stall the loop"
        stalled_in_flight = [r.getMessage() for r in caplog.records
                             if "event loop blocked" in r.getMessage() and "polite" in r.getMessage()]
        assert stalled_in_flight, "the connector was never in flight during a stall: the test proves nothing"
        assert not loops.runs_isolated(host.registry.get("polite", 0))
        assert watchdog.attributed.get("busy-polite/polite", 0) < watchdog.move_after


def stall_until_attributed(client: PropellerClient, watchdog: LoopWatchdog, package: str, count: int) -> None:
    """Blocking calls until the watchdog blamed ``count`` stalls on the package (on a loaded machine the watchdog
    may rightly refuse to blame one)."""
    for _ in range(10):
        timed_create(client, "blocky", 0.25)
        end = time.monotonic() + 1
        while time.monotonic() < end:
            if watchdog.attributed.get(package, 0) >= count:
                return
            time.sleep(0.02)
    raise AssertionError(f"the watchdog never blamed {package} for {count} stalls: {watchdog.attributed}")


def _wait_until(condition: Any, limit: float = 5.0) -> None:
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------- cancellation
class Waits(AsyncConnector[Cfg, Meta]):
    name = "Waits"
    task_type = "waits"
    cancelled: list[tuple[str, asyncio.AbstractEventLoop]] = []
    started = threading.Event()
    seen = threading.Event()

    async def create(self, task: TaskContext[Cfg]) -> Meta:
        return Meta(job_id=task.idempotency_key)

    async def get(self, job: Meta, ctx: CallContext) -> Resource:
        Waits.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            Waits.cancelled.append((threading.current_thread().name, asyncio.get_running_loop()))
            Waits.seen.set()
            raise
        return Resource.succeeded()

    async def delete(self, job: Meta, ctx: CallContext) -> None:
        return None


def _request(task_type: str) -> Any:
    template = builders.task_template(task_type, {})
    return request_from_template(template, None, "/tmp/out", builders.execution_metadata(builders.identity()), None)


async def test_cancellation_reaches_the_coroutine_on_the_pool_loop() -> None:
    dispatcher = Dispatcher(registry(**{"cancel-waits": (Waits, {"async_mode": "isolated"})}),
                            secrets=Secrets({}, dirs=()))
    meta = await dispatcher.create(_request("waits"))
    here = asyncio.get_running_loop()

    # the deadline passes
    Waits.cancelled, Waits.seen = [], threading.Event()
    answer = await dispatcher.get("waits", 0, meta, deadline=time.monotonic() + 0.3)
    assert answer.phase is Phase.RUNNING and "deadline" in answer.message
    assert await asyncio.to_thread(Waits.seen.wait, 2), "the coroutine on the pool loop was not cancelled"
    thread, loop = Waits.cancelled[0]
    assert thread.startswith("fc-cancel-waits-loop-") and loop is not here

    # the client goes away (gRPC cancels the RPC's task)
    Waits.cancelled, Waits.seen, Waits.started = [], threading.Event(), threading.Event()
    call = asyncio.ensure_future(dispatcher.get("waits", 0, meta))
    assert await asyncio.to_thread(Waits.started.wait, 2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await asyncio.to_thread(Waits.seen.wait, 2), "the coroutine on the pool loop was not cancelled"
    await dispatcher.aclose()
    loops.close_pools(here)


# ---------------------------------------------------------------------------------------------- cached clients
class LoopBoundClient:
    """Like httpx.AsyncClient or AsyncOpenAI: usable only on the event loop that created it."""

    built: list[LoopBoundClient] = []

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.closed_on: asyncio.AbstractEventLoop | None = None
        LoopBoundClient.built.append(self)

    async def request(self) -> None:
        if asyncio.get_running_loop() is not self.loop:
            raise RuntimeError("this client is bound to a different event loop")
        await asyncio.sleep(0.1)

    async def aclose(self) -> None:
        if asyncio.get_running_loop() is not self.loop:
            raise RuntimeError("closed on a different event loop")
        self.closed_on = self.loop


class UsesClient(AsyncConnector[Cfg, Meta]):
    name = "UsesClient"
    task_type = "uses_client"

    async def create(self, task: TaskContext[Cfg]) -> Meta:
        return Meta(job_id=task.idempotency_key)

    async def get(self, job: Meta, ctx: CallContext) -> Resource:
        await self.clients.get(("api", "https://example.invalid"), LoopBoundClient).request()
        return Resource.succeeded()

    async def delete(self, job: Meta, ctx: CallContext) -> None:
        return None


def test_loop_bound_cached_clients_work_from_several_pool_loops_and_drain_closes_them_and_the_loops() -> None:
    LoopBoundClient.built = []
    reg = registry(**{"clients-iso": (UsesClient, {"async_mode": "isolated", "executor_threads": 3})})
    with HostThread(registry=reg) as host, ThreadPoolExecutor(6) as pool:
        client = PropellerClient(host.channel)
        template = builders.task_template("uses_client", {})
        meta = client.create(template)
        for _ in range(2):
            answers = list(pool.map(lambda _: client.get(template, meta), range(6)))
            assert [a.phase for a in answers] == [Phase.SUCCEEDED] * 6, [a.message for a in answers]
        slots = [slot for p in loops.pools() if p.package == "clients-iso" for slot in p.loops]
        assert len(slots) == 3
        assert len(host.registry.client_caches()[0]) == 0, "a loop-bound client was cached for every loop"
    built = LoopBoundClient.built
    assert {c.loop for c in built} == {s.loop for s in slots}, "one client per pool loop, reused"
    assert len(built) == 3
    assert all(c.closed_on is c.loop for c in built), "each client is closed on the loop that owns it"
    assert all(not s.thread.is_alive() and s.loop.is_closed() for s in slots), "drain closes the loops"
    assert "clients-iso" not in [p.package for p in loops.pools()]


# ---------------------------------------------------------------------------------------------- settings
def test_async_mode_comes_from_the_environment_or_the_host_config(tmp_path: Any) -> None:
    env = {"FLYTECONNECTORS_MY_PKG_ASYNC_MODE": "isolated"}
    assert ConnectorSettings.load("my-pkg", {}, env=env).async_mode == "isolated"
    assert ConnectorSettings.load("my-pkg", {}, env={}).async_mode == "auto"
    with pytest.raises(InvalidTaskConfig) as err:
        ConnectorSettings.load("my-pkg", {}, env={"FLYTECONNECTORS_MY_PKG_ASYNC_MODE": "sometimes"})
    assert "FLYTECONNECTORS_MY_PKG_ASYNC_MODE" in str(err.value)

    config = tmp_path / "host.toml"
    config.write_text('async_mode = "loop"\n[connectors.openai]\nasync_mode = "isolated"\n')
    settings = load_settings(config_file=str(config), env={})
    source = settings.settings_source()
    assert ConnectorSettings.load("openai", source("openai"), env={}).async_mode == "isolated"
    assert ConnectorSettings.load("other", source("other"), env={}).async_mode == "loop"
    env_default = load_settings(env={"FLYTECONNECTORS_ASYNC_MODE": "isolated"}).settings_source()
    assert ConnectorSettings.load("other", env_default("other"), env={}).async_mode == "isolated"
