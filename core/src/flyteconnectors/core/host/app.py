"""Assemble and run one host process from :class:`HostSettings`: registry, dispatcher, server, metrics, signals.

Start-up stays fast: nothing here imports a service SDK; connector modules import theirs on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flyteconnectors.core.host.settings import HostSettings, SettingsError

if TYPE_CHECKING:
    from flyteconnectors.core.dispatcher import Dispatcher
    from flyteconnectors.core.host.server import Host, ServerOptions
    from flyteconnectors.core.registry import Registry

log = logging.getLogger("flyteconnectors.host")

#: Exit code of a host that could not start serving (the supervisor does not restart such a worker).
EXIT_CANNOT_START = 2


# ---------------------------------------------------------------------------------------------- registry
def load_modules(registry: Registry, specs: list[str]) -> None:
    """Register the connectors of extra modules (for authors: no installed distribution needed).

    A module that fails to import is reported like a broken package: ``list`` shows its error, it is logged,
    and the host serves everything else. The working directory is importable, as with ``pyflyte serve``.
    """
    from flyteconnectors.core.registry import register_modules

    if specs and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    register_modules(registry, ",".join(specs))


def build_registry(settings: HostSettings) -> Registry:
    from flyteconnectors.core.registry import Registry, parse_module_spec

    source = settings.settings_source()
    module_names = set()
    for spec in settings.modules:
        with contextlib.suppress(ValueError):
            module_names.add(parse_module_spec(spec)[0])
    # Packages named by --module are served whatever ``enabled`` says; the rest of ``enabled`` filters the
    # installed ones. Enabling only module packages serves no installed package.
    wanted = set(settings.enabled) - module_names
    only_modules = bool(settings.enabled) and not wanted
    registry = Registry(source) if only_modules else Registry.discover(wanted or None, source)
    load_modules(registry, settings.modules)
    return registry


# ---------------------------------------------------------------------------------------------- host
def build_dispatcher(settings: HostSettings, registry: Registry) -> Dispatcher:
    from flyteconnectors.core.dispatcher import Dispatcher, DispatcherOptions
    from flyteconnectors.core.meta import MetaCodec
    from flyteconnectors.core.secrets import REDACTOR, Secrets

    keys = settings.keys()
    for key in keys:
        REDACTOR.add(key.decode())
    return Dispatcher(
        registry,
        codec=MetaCodec(keys),
        secrets=Secrets(dirs=settings.secrets_dirs) if settings.secrets_dirs is not None else Secrets(),
        options=DispatcherOptions(
            deadline_margin=settings.deadline_margin, unavailable_grace=settings.unavailable_grace
        ),
    )


def server_options(settings: HostSettings, *, reuse_port: bool = False) -> ServerOptions:
    from flyteconnectors.core.host.server import ServerOptions

    cert, key, client_ca = settings.tls_material()
    return ServerOptions(
        host=settings.bind,
        port=settings.port,
        grace=settings.grace_period,
        drain_delay=settings.drain_delay,
        tls_cert=cert,
        tls_key=key,
        tls_client_ca=client_ca,
        max_message_bytes=settings.max_message_bytes,
        reuse_port=reuse_port,
        warm_up=settings.warm_up == "on",
    )


def build_host(settings: HostSettings, registry: Registry | None = None, *, reuse_port: bool = False) -> Host:
    from flyteconnectors.core.host.server import Host

    registry = registry if registry is not None else build_registry(settings)
    return Host(build_dispatcher(settings, registry), server_options(settings, reuse_port=reuse_port))


def start_metrics_server(settings: HostSettings, registry: Any = None) -> Any:
    """Serve Prometheus /metrics on ``metrics_port``; None when disabled or the port is taken."""
    if not settings.metrics_port:
        return None
    from prometheus_client import REGISTRY, start_http_server

    try:
        result = start_http_server(settings.metrics_port, addr=settings.metrics_bind, registry=registry or REGISTRY)
    except OSError as err:
        log.error("metrics endpoint not started on %s:%d: %s", settings.metrics_bind, settings.metrics_port, err)
        return None
    log.info("metrics on http://%s:%d/metrics", settings.metrics_bind, settings.metrics_port)
    return result[0] if isinstance(result, tuple) else None


# ---------------------------------------------------------------------------------------------- run
async def serve_async(
    settings: HostSettings,
    *,
    worker: bool = False,
    on_ready: Callable[[Host], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT, then drain. ``worker``: one of ``--workers N`` processes."""
    registry = build_registry(settings)
    for entry in registry.packages.values():
        if not entry.loaded:
            log.error("connector package %s not served: %s", entry.package, entry.error)
    host = build_host(settings, registry, reuse_port=worker)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0
    cancels: list[asyncio.Task[None]] = []

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("received %s: draining", signal.Signals(signum).name)
            stop.set()
        else:  # a second signal: stop waiting for in-flight calls
            log.warning("received %s again: cancelling in-flight calls", signal.Signals(signum).name)
            cancels.append(loop.create_task(host.stop(0)))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await host.start()
    except RuntimeError as err:  # grpc refuses to bind: port taken, bad address
        log.error("cannot serve on %s:%d: %s", settings.bind, settings.port, err)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        return EXIT_CANNOT_START
    metrics_server = None if worker else start_metrics_server(settings)
    served = registry.categories()
    security = "insecure"
    if settings.tls_cert:
        security = "TLS + client certificates" if settings.tls_client_ca else "TLS"
    log.info(
        "flyteconnectors host listening on %s:%d (%s, %s event loop, %d task types: %s)",
        settings.bind, host.port, security, type(loop).__module__.split(".")[0], len(served),
        ", ".join(c.name + (f" v{c.version}" if c.version else "") for c, _ in served) or "none",
    )
    if on_ready is not None:
        on_ready(host)
    watcher = loop.create_task(_watch_parent(stop)) if worker else None
    # One timer closes every package's idle service clients (and their keep-alive connections).
    from flyteconnectors.core.clients import start_idle_sweep

    sweep = start_idle_sweep(registry.client_caches, settings.client_idle_timeout)
    await stop.wait()
    if sweep is not None:
        sweep.cancel()
    await host.stop()
    if watcher is not None:
        watcher.cancel()
    if metrics_server is not None:
        metrics_server.shutdown()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)
    return 0


async def _watch_parent(stop: asyncio.Event) -> None:
    """A worker drains when its supervisor is gone (killed without forwarding SIGTERM)."""
    parent = os.getppid()
    while not stop.is_set():
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            log.warning("supervisor process %d is gone: draining", parent)
            stop.set()


def run(settings: HostSettings, *, worker: bool = False, on_ready: Callable[[Host], None] | None = None) -> int:
    """Run one host process to completion on the configured event loop; returns its exit code."""
    factory = loop_factory(settings.event_loop)
    coro = serve_async(settings, worker=worker, on_ready=on_ready)
    if factory is None:
        return asyncio.run(coro)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)
    loop = factory()  # Python 3.10 has no Runner
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        asyncio.set_event_loop(None)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop constructor for ``event_loop`` (None: the standard library's).

    uvloop (libuv) runs grpc.aio's callbacks for less CPU than the standard loop: about 9 % more trivial RPCs per
    second on the same machine (docs/benchmarks.md). ``auto`` uses it when it is installed (a dependency on
    Linux and macOS), ``uvloop`` requires it.
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SettingsError("event_loop = 'uvloop' but uvloop is not installed: pip install uvloop") from None
        return None
    return uvloop.new_event_loop
