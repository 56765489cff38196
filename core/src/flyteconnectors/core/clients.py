"""A per-process cache of service clients keyed by (credentials, endpoint, region), closed on shutdown."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("flyteconnectors.clients")


def fingerprint(*parts: object) -> str:
    """A cache key part for credentials: a hash, so the key itself never holds a secret."""
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()[:24]


class ClientCache:
    """Build a client once per key and reuse it; ``close()`` closes every client it built.

    Keys must not contain secrets: pass credentials through :func:`fingerprint`.
    """

    def __init__(self) -> None:
        self._clients: dict[Hashable, Any] = {}
        self._lock = threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, factory: Callable[[], T]) -> T:
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

    def discard(self, key: Hashable) -> None:
        client = self._clients.pop(key, None)
        if client is not None:
            _close_sync(client)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                async_closer = getattr(client, "aclose", None)
                if async_closer is not None and inspect.iscoroutinefunction(async_closer):
                    await async_closer()
                    continue
                closer = getattr(client, "close", None)
                if closer is None:
                    continue
                if inspect.iscoroutinefunction(closer):
                    await closer()
                else:  # a blocking close (an HTTP logout, a pool shutdown) must not stall the loop
                    result = await asyncio.to_thread(closer)
                    if inspect.isawaitable(result):
                        await result
            except Exception as err:  # closing must not stop the drain
                log.warning("closing %s failed: %s", type(client).__name__, err)

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
