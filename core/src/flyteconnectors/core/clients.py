"""A per-process cache of service clients keyed by (credentials, endpoint, region), closed on shutdown."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import hashlib
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from flyteconnectors.core import loops as _loops

T = TypeVar("T")
log = logging.getLogger("flyteconnectors.clients")


class _Call:
    """Marks one connector call: the clients it fetched are in use until the call is over.

    The dispatcher starts every connector call with a fresh mark in the call's own context (a copy for a plain
    ``def`` in the thread pool, the RPC's task for an ``async def``; tasks the call spawns inherit it) and sets
    ``done`` when the call returns or raises. The mark is explicit because a context can outlive its call: uvloop's
    transports keep the context they were created in, so a pooled connection would otherwise keep "its" call alive
    and the client it belongs to would never count as idle. Outside a dispatcher call (a thread's own context) the
    mark lives as long as whatever holds that context.
    """

    __slots__ = ("__weakref__", "done")

    def __init__(self) -> None:
        self.done = False


_CALL: contextvars.ContextVar[_Call] = contextvars.ContextVar("flyteconnectors_client_call")


def _current_call() -> _Call:
    call = _CALL.get(None)
    return begin_call() if call is None or call.done else call


def begin_call() -> _Call:
    """Start a connector call's mark in the current context; set its ``done`` when the call is over."""
    call = _Call()
    _CALL.set(call)
    return call


def _live(users: weakref.WeakSet[_Call] | None) -> bool:
    return users is not None and any(not call.done for call in list(users))


def fingerprint(*parts: object) -> str:
    """A cache key part for credentials: a hash, so the key itself never holds a secret."""
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()[:24]


class ClientCache:
    """Build a client once per key and reuse it; ``close()`` closes every client it built.

    Keys must not contain secrets: pass credentials through :func:`fingerprint`.

    The host also closes idle clients (``client_idle_timeout``, see :func:`sweep_idle_clients`), so their
    keep-alive connections do not stay open after a burst of work. A client is idle when get() has not handed it
    out for that long *and* no live call fetched it: a connector may hold the client from get() for the rest of
    its call, however long. A closed client is rebuilt by the next get().
    """

    def __init__(self) -> None:
        self._clients: dict[Hashable, Any] = {}
        self._lock = threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}
        #: Per key: when get() last handed the client out, and the live calls that fetched it (idle close).
        self._last_used: dict[Hashable, float] = {}
        self._users: dict[Hashable, weakref.WeakSet[_Call]] = {}
        #: When get() last handed out any client of this cache (time.monotonic()).
        self.last_get = 0.0

    def get(self, key: Hashable, factory: Callable[[], T]) -> T:
        if _loops.ACTIVE:  # on a package's own event loop, clients are cached per loop (they are bound to it)
            per_loop = _loops.loop_cache(self)
            if per_loop is not None:
                return per_loop.get(key, factory)
        # Mark the use before reading the client: close_idle() re-checks the mark after taking a client out.
        self._last_used[key] = self.last_get = time.monotonic()
        users = self._users.get(key)
        if users is None:
            users = self._users.setdefault(key, weakref.WeakSet())
        users.add(_current_call())
        client = self._clients.get(key)
        if client is not None:
            return client  # type: ignore[no-any-return]
        with self._lock:
            build_lock = self._building.setdefault(key, threading.Lock())
        with build_lock:
            client = self._clients.get(key)
            if client is None:
                client = factory()
                self._clients[key] = client
        return client  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self._clients)

    def held(self) -> bool:
        """Whether a call that fetched one of the clients is still alive."""
        return any(_live(self._users.get(key)) for key in list(self._clients))

    def discard(self, key: Hashable) -> None:
        per_loop = _loops.loop_cache(self) if _loops.ACTIVE else None
        if per_loop is not None:
            per_loop.discard(key)
            return
        client = self._clients.pop(key, None)
        if client is not None:
            _close_sync(client)

    def _idle(self, key: Hashable, now: float, max_idle: float) -> bool:
        last = self._last_used.get(key, now)
        if _live(self._users.get(key)):  # a live call holds it: it is in use now, so its idle time starts afresh
            self._last_used[key] = max(last, now)
            return False
        return now - last >= max_idle

    async def close_idle(self, max_idle: float) -> int:
        """Close the clients no live call fetched and get() has not handed out for ``max_idle`` seconds.

        Their pooled connections close with them; the next get() of such a key builds a new client. Closing
        uses the same closers as :meth:`aclose` (blocking ones in a thread). Returns how many were closed.
        """
        idle: list[Any] = []
        now = time.monotonic()
        with self._lock:  # no client is built (stored) meanwhile
            for key in [k for k in list(self._clients) if self._idle(k, now, max_idle)]:
                client = self._clients.pop(key, None)
                if client is None:
                    continue
                if not self._idle(key, now, max_idle):  # get() handed it out just now: keep it
                    self._clients[key] = client
                    continue
                self._last_used.pop(key, None)
                self._users.pop(key, None)
                idle.append(client)
        for client in idle:
            log.debug("closing %s: unused for %.0f s", type(client).__name__, max_idle)
            await _aclose_client(client)
        return len(idle)

    async def aclose(self) -> None:
        await _loops.aclose_loop_caches(self)  # clients built on a package's own loops close on those loops
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await _aclose_client(client)

    def close(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.aclose())
            return
        for key in list(self._clients):
            self.discard(key)


def _close_sync(client: Any) -> None:
    closer = getattr(client, "close", None)
    if closer is None:
        return
    try:
        result = closer()
        if inspect.isawaitable(result):
            result.close()  # type: ignore[attr-defined]
    except Exception as err:
        log.warning("closing %s failed: %s", type(client).__name__, err)


async def _aclose_client(client: Any) -> None:
    """Close one client: ``aclose()`` or an async ``close()`` on the loop, a blocking ``close()`` in a thread."""
    try:
        async_closer = getattr(client, "aclose", None)
        if async_closer is not None and inspect.iscoroutinefunction(async_closer):
            await async_closer()
            return
        closer = getattr(client, "close", None)
        if closer is None:
            return
        if inspect.iscoroutinefunction(closer):
            await closer()
        else:  # a blocking close (an HTTP logout, a pool shutdown) must not stall the loop
            result = await asyncio.to_thread(closer)
            if inspect.isawaitable(result):
                await result
    except Exception as err:  # closing must not stop the drain
        log.warning("closing %s failed: %s", type(client).__name__, err)


def sweep_interval(idle_timeout: float) -> float:
    """How often the idle sweep looks: a client is closed between ``idle_timeout`` and this much later."""
    return min(5.0, max(0.05, idle_timeout / 4))


async def sweep_idle_clients(caches: Callable[[], Iterable[ClientCache]], idle_timeout: float,
                             interval: float | None = None) -> None:
    """Close idle clients of every cache ``caches()`` names, every ``interval`` seconds, until cancelled.

    One task on the host's loop serves every cache (the registry's caches appear as connectors are first used);
    a cache's clients are closed on that loop, so async clients close where they were built.
    """
    interval = sweep_interval(idle_timeout) if interval is None else interval
    collected_at = 0.0
    while True:
        await asyncio.sleep(interval)
        await _close_idle_in(list(caches()), idle_timeout)
        # A finished call that sits in a reference cycle (a cancelled task and its traceback, say) still "holds"
        # its clients until the garbage collector runs, which may never happen once the load stops. When no
        # client was handed out for a whole idle timeout yet some are still held, collect once and sweep again.
        now = time.monotonic()
        held = [c for c in caches() if c.held() and now - c.last_get >= idle_timeout and c.last_get > collected_at]
        if held:
            collected_at = now
            gc.collect()
            await _close_idle_in(held, idle_timeout)


async def _close_idle_in(caches: Iterable[ClientCache], idle_timeout: float) -> None:
    for cache in caches:
        try:
            await cache.close_idle(idle_timeout)
        except Exception as err:  # one bad cache must not stop the sweep of the others
            log.warning("idle client sweep failed: %s", err)


def start_idle_sweep(caches: Callable[[], Iterable[ClientCache]], idle_timeout: float) -> asyncio.Task[None] | None:
    """Start :func:`sweep_idle_clients` on the running loop; None when ``idle_timeout`` is 0 (never close)."""
    if idle_timeout <= 0:
        return None
    return asyncio.get_running_loop().create_task(sweep_idle_clients(caches, idle_timeout), name="client-idle-sweep")
