"""Per-package event loops for ``async def`` connector methods (the ``async_mode`` connector setting).

An ``async def`` connector method runs on the host's one event loop, so a blocking call inside it (a
synchronous SDK call, a ``time.sleep``) stalls every call of every package. ``async_mode`` decides where a
package's ``async def`` methods run:

* ``loop``: on the host's event loop, always (the fastest path for well-behaved native-async connectors);
* ``isolated``: on the package's own pool of event loops, each on a daemon thread (at most
  ``executor_threads`` loops, created when calls need them, closed when the host drains). A blocking call then
  stalls one of the package's loops only; its other calls go to the least-busy loop and run meanwhile;
* ``auto`` (default): on the host's loop until the loop watchdog sees a connector's own code blocking the loop
  through several stalls (:mod:`flyteconnectors.core.host.watchdog`); from then on that connector's calls run
  on its package's loops, with one warning in the log and the ``flyteconnectors_async_isolated`` gauge (the
  package's isolated connectors) raised. The package's well-behaved connectors stay on the host's loop.

The dispatcher asks :data:`ON_MAIN_LOOP` first: a connector decided for the host's loop costs one set lookup
per call. Clients a connector caches in ``self.clients`` while it runs on a pool loop are cached per loop
(clients such as ``httpx.AsyncClient`` or ``AsyncOpenAI`` belong to the loop that created them) and closed on
that loop when the pool closes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import threading
import types
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge

if TYPE_CHECKING:
    from flyteconnectors.core.clients import ClientCache
    from flyteconnectors.core.connector import Connector

log = logging.getLogger("flyteconnectors.loops")

MODES = ("loop", "isolated", "auto")

ISOLATED_GAUGE = Gauge(
    "flyteconnectors_async_isolated",
    "A package's connectors whose async def methods run on its own event loops (async_mode isolated, or moved "
    "there by auto).",
    ["package"], multiprocess_mode="livemax",
)
LOOPS_GAUGE = Gauge("flyteconnectors_async_loops", "Event loops a package's isolated async calls run on.",
                    ["package"], multiprocess_mode="livesum")

#: Connectors whose ``async def`` methods run on the host's loop (decided on their first call).
ON_MAIN_LOOP: set[Connector[Any]] = set()
#: Connectors whose ``async def`` methods run on their package's loops, with their key (:func:`key_of`).
_ISOLATED: dict[Connector[Any], str] = {}
#: Code objects of connector methods (and the functions nested in them) -> keys of the connectors using them:
#: the watchdog looks for them on the loop thread's stack to tell whose code was running while the loop stalled.
CODE_OWNER: dict[types.CodeType, str] = {}
#: True once a pool loop was started in this process (ClientCache keys clients per loop only then).
ACTIVE = False
_POOLS: dict[str, LoopPool] = {}
_POOLS_LOCK = threading.Lock()
_THREAD = threading.local()
_MOVED_LOGGED: set[str] = set()
_CORE_MODULES = ("flyteconnectors.core.connector",)


def package_of(connector: Connector[Any]) -> str:
    return connector.package or type(connector).__name__


def key_of(connector: Connector[Any]) -> str:
    """``package/task_type``: how the watchdog names a connector."""
    return f"{package_of(connector)}/{connector.task_type}"


def mode_of(connector: Connector[Any]) -> str:
    mode = str(getattr(connector.settings, "async_mode", "auto")).lower()
    return mode if mode in MODES else "auto"


def runs_isolated(connector: Connector[Any]) -> bool:
    """Whether the connector's ``async def`` methods run (from now on) on its package's own loops."""
    return connector in _ISOLATED


def isolated_keys() -> set[str]:
    return set(_ISOLATED.values())


def isolate(connector: Connector[Any], coro: Awaitable[Any]) -> Awaitable[Any]:
    """The awaitable the dispatcher awaits for an ``async def`` method's coroutine ``coro``.

    Either ``coro`` itself (the host's loop) or a future of the same coroutine running on a pool loop.
    """
    key = _ISOLATED.get(connector)
    if key is None:
        key = key_of(connector)
        _register(connector, key)
        if mode_of(connector) != "isolated":
            ON_MAIN_LOOP.add(connector)
            _count(connector)
            return coro
        _ISOLATED[connector] = key
        _count(connector)
    return _pool(connector, package_of(connector)).submit(coro)


def move(keys: str, reason: str) -> bool:
    """``auto``: run these connectors' ``async def`` methods on their package's loops from the next call on.

    ``keys``: as :func:`running_connector` names them (comma-separated :func:`key_of` values).
    """
    wanted = set(keys.split(","))
    moved = [c for c in ON_MAIN_LOOP if key_of(c) in wanted and mode_of(c) == "auto"]
    for connector in moved:
        ON_MAIN_LOOP.discard(connector)
        _ISOLATED[connector] = key_of(connector)
        _count(connector)
        key = key_of(connector)
        if key not in _MOVED_LOGGED:
            _MOVED_LOGGED.add(key)
            package = package_of(connector)
            log.warning(
                "package %s: connector %s now runs its async def calls on the package's own event loops "
                "(async_mode=auto), because %s. The rest of the host is no longer held up by it. Make its blocking "
                "methods plain 'def', or set async_mode=isolated (FLYTECONNECTORS_%s_ASYNC_MODE) to start there.",
                package, connector.task_type, reason, package.upper().replace("-", "_"),
            )
    return bool(moved)


def _count(connector: Connector[Any]) -> None:
    package = package_of(connector)
    ISOLATED_GAUGE.labels(package=package).set(sum(1 for c in _ISOLATED if package_of(c) == package))


def running_connector(frame: types.FrameType | None, depth: int = 200) -> str | None:
    """The connectors (comma-separated keys) whose code is on this stack (innermost first), if any."""
    while frame is not None and depth > 0:
        owner = CODE_OWNER.get(frame.f_code)
        if owner is not None:
            return owner
        frame = frame.f_back
        depth -= 1
    return None


def _register(connector: Connector[Any], key: str) -> None:
    for klass in type(connector).__mro__:
        module = getattr(klass, "__module__", "")
        if klass is object or module in _CORE_MODULES or module == "typing":
            continue
        for value in vars(klass).values():
            fn = getattr(value, "__func__", value)
            try:
                fn = inspect.unwrap(fn)
            except ValueError:
                continue
            code = getattr(fn, "__code__", None)
            if isinstance(code, types.CodeType):
                _add_code(code, key)


def _add_code(code: types.CodeType, key: str) -> None:
    # A base class's method may serve several connectors; a task type belongs to one package (the latest
    # registry's: tests build several).
    task_type = key.rsplit("/", 1)[-1]
    owners = [k for k in CODE_OWNER.get(code, "").split(",") if k and k.rsplit("/", 1)[-1] != task_type]
    CODE_OWNER[code] = ",".join([*owners, key])
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _add_code(const, key)


def _pool(connector: Connector[Any], package: str) -> LoopPool:
    pool = _POOLS.get(package)
    if pool is None or pool.closed:
        with _POOLS_LOCK:
            pool = _POOLS.get(package)
            if pool is None or pool.closed:
                pool = LoopPool(package, max(1, int(getattr(connector.settings, "executor_threads", 64))))
                _POOLS[package] = pool
    return pool


def pools() -> list[LoopPool]:
    return list(_POOLS.values())


def close_pools(main: asyncio.AbstractEventLoop | None = None, timeout: float = 5.0) -> None:
    """Close the pools used from ``main`` (every pool when None): clients they cached first, on their own loops.

    Blocking (at most ``timeout`` seconds): called when the host drains, after in-flight calls ended.
    """
    with _POOLS_LOCK:
        closing = []
        for package, pool in list(_POOLS.items()):
            pool.users.discard(main)
            if main is None or not pool.users:
                closing.append(pool)
                del _POOLS[package]
    for pool in closing:
        pool.close(timeout)


class PoolLoop:
    """One event loop on its own daemon thread."""

    def __init__(self, pool: LoopPool, index: int) -> None:
        self.pool = pool
        self.busy = 0
        self.loop = asyncio.new_event_loop()
        #: ClientCache -> its per-loop child cache (clients built on this loop).
        self.caches: dict[ClientCache, ClientCache] = {}
        self._children: set[ClientCache] = set()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"fc-{pool.package}-loop-{index}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        _THREAD.owner = self
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    def cache_for(self, parent: ClientCache) -> ClientCache | None:
        """The per-loop child of ``parent`` (None when ``parent`` is already a child of this loop)."""
        child = self.caches.get(parent)
        if child is not None:
            return child
        if parent in self._children:
            return None
        from flyteconnectors.core.clients import ClientCache

        with self._lock:
            child = self.caches.get(parent)
            if child is None:
                child = ClientCache()
                self._children.add(child)
                self.caches[parent] = child
        return child

    async def aclose_caches(self, parent: ClientCache | None = None) -> None:
        """Close (on this loop) the clients cached here, for ``parent`` only or for every cache."""
        for owner, child in list(self.caches.items()):
            if parent is None or owner is parent:
                self.caches.pop(owner, None)
                await child.aclose()

    async def _shutdown(self) -> None:
        await self.aclose_caches()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        await self.loop.shutdown_default_executor()


class LoopPool:
    """A package's event loops: at most ``size``, started as calls need them."""

    def __init__(self, package: str, size: int) -> None:
        self.package = package
        self.size = size
        self.loops: list[PoolLoop] = []
        self.closed = False
        #: Host loops that submitted calls (the pool closes when the last of them drains).
        self.users: set[asyncio.AbstractEventLoop | None] = set()
        self._lock = threading.Lock()

    def _least_busy(self) -> PoolLoop:
        best: PoolLoop | None = None
        for slot in self.loops:
            if slot.busy == 0:
                return slot
            if best is None or slot.busy < best.busy:
                best = slot
        if best is None or len(self.loops) < self.size:
            global ACTIVE
            with self._lock:
                slot = PoolLoop(self, len(self.loops))
                self.loops.append(slot)
            ACTIVE = True
            LOOPS_GAUGE.labels(package=self.package).set(len(self.loops))
            return slot
        return best

    def submit(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run ``coro`` on the least-busy loop; the returned future (on the calling loop) settles with it, and
        cancelling it (deadline, client gone) cancels the coroutine."""
        main = asyncio.get_running_loop()
        if main not in self.users:
            self.users.add(main)
        slot = self._least_busy()
        slot.busy += 1
        if not asyncio.iscoroutine(coro):
            coro = _awaiting(coro)
        handle = asyncio.run_coroutine_threadsafe(coro, slot.loop)
        result: asyncio.Future[Any] = main.create_future()

        def finished(done: concurrent.futures.Future[Any]) -> None:  # on the pool loop's thread
            try:
                main.call_soon_threadsafe(_settle, result, done, slot)
            except RuntimeError:  # the calling loop is closed: nobody waits for the result
                slot.busy -= 1

        def abandoned(fut: asyncio.Future[Any]) -> None:  # on the calling loop
            if fut.cancelled():
                handle.cancel()  # cancels the task on its loop (asyncio.run_coroutine_threadsafe's chaining)

        handle.add_done_callback(finished)
        result.add_done_callback(abandoned)
        return result

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True
        with self._lock:
            slots, self.loops = list(self.loops), []
        shutdowns = []
        for slot in slots:
            with contextlib.suppress(RuntimeError):  # already closed
                shutdowns.append(asyncio.run_coroutine_threadsafe(slot._shutdown(), slot.loop))
        done, pending = concurrent.futures.wait(shutdowns, timeout=timeout)
        for fut in done:
            if fut.exception() is not None:
                log.warning("closing an event loop of %s failed: %s", self.package, fut.exception())
        if pending:
            log.warning("%d event loop(s) of %s did not close within %.0fs (a call still blocks them)",
                        len(pending), self.package, timeout)
        for slot in slots:
            if not slot.loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    slot.loop.call_soon_threadsafe(slot.loop.stop)
        for slot in slots:
            slot.thread.join(0.5)
        LOOPS_GAUGE.labels(package=self.package).set(0)


def _settle(result: asyncio.Future[Any], done: concurrent.futures.Future[Any], slot: PoolLoop) -> None:
    slot.busy -= 1
    if result.done():
        return
    if done.cancelled():
        result.cancel()
        return
    error = done.exception()
    if error is not None:
        result.set_exception(error)
    else:
        result.set_result(done.result())


async def _awaiting(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def owner() -> PoolLoop | None:
    """The pool loop running on this thread, if any."""
    return getattr(_THREAD, "owner", None)


def loop_cache(parent: ClientCache) -> ClientCache | None:
    """On a pool loop: the per-loop child of ``parent`` that ``ClientCache.get`` delegates to; else None."""
    slot: PoolLoop | None = getattr(_THREAD, "owner", None)
    return None if slot is None else slot.cache_for(parent)


async def aclose_loop_caches(parent: ClientCache, timeout: float = 5.0) -> None:
    """Close the per-loop children of ``parent`` on the loops that own them (``ClientCache.aclose``)."""
    if not ACTIVE:
        return
    waits: list[Awaitable[Any]] = []
    here = asyncio.get_running_loop()
    for pool in list(_POOLS.values()):
        for slot in list(pool.loops):
            if parent not in slot.caches:
                continue
            if slot.loop is here:
                waits.append(slot.aclose_caches(parent))
            elif not slot.loop.is_closed():
                try:
                    cf = asyncio.run_coroutine_threadsafe(slot.aclose_caches(parent), slot.loop)
                except RuntimeError:
                    continue
                waits.append(asyncio.wrap_future(cf))
    if waits:
        await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=timeout)


__all__ = [
    "MODES", "ON_MAIN_LOOP", "LoopPool", "PoolLoop", "close_pools", "isolate", "isolated_keys", "key_of",
    "loop_cache", "mode_of", "move", "pools", "running_connector", "runs_isolated",
]
