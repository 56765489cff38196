"""The connector host: a grpc.aio server with the Flyte services, health and reflection."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from flyteconnectors.core.dispatcher import Dispatcher
from flyteconnectors.core.host.services_v1 import SERVICE_NAMES, add_v1_services
from flyteconnectors.core.host.watchdog import LoopWatchdog

log = logging.getLogger("flyteconnectors.host")


@dataclass
class ServerOptions:
    host: str = "[::]"
    port: int = 8000
    #: Seconds in-flight RPCs get to finish once the server stops accepting new ones.
    grace: float = 25.0
    #: Seconds health reports NOT_SERVING while still accepting RPCs, before the port closes. Lets load
    #: balancers and readiness probes take the replica out first.
    drain_delay: float = 0.0
    #: PEM bytes; with cert and key the port serves TLS, with a client CA too it requires client certs (mTLS).
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    tls_client_ca: bytes | None = None
    max_message_bytes: int = 4 * 1024 * 1024
    reuse_port: bool = False
    warm_up: bool = True
    extra_service_names: list[str] = field(default_factory=list)


class Host:
    """One server process: the gRPC server, its health service and the loop watchdog."""

    def __init__(self, dispatcher: Dispatcher, options: ServerOptions | None = None) -> None:
        self.dispatcher = dispatcher
        self.options = options or ServerOptions()
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self.port: int = 0
        self.watchdog = LoopWatchdog()
        self.service_names: list[str] = list(SERVICE_NAMES)
        self._stopped = asyncio.Event()
        self.warm_up: asyncio.Task[list[str]] | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> int:
        opts = self.options
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 1 if opts.reuse_port else 0),
                ("grpc.max_receive_message_length", opts.max_message_bytes),
                ("grpc.max_send_message_length", opts.max_message_bytes),
            ]
        )
        add_v1_services(server, self.dispatcher)
        self.service_names += self._add_optional_wires(server)
        self.service_names += opts.extra_service_names
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        address = f"{opts.host}:{opts.port}"
        if opts.tls_cert and opts.tls_key:
            creds = grpc.ssl_server_credentials(
                [(opts.tls_key, opts.tls_cert)],
                root_certificates=opts.tls_client_ca,
                require_client_auth=opts.tls_client_ca is not None,
            )
            self.port = server.add_secure_port(address, creds)
        else:
            self.port = server.add_insecure_port(address)
        # Every service is SERVING from the first accepted connection (probes may ask for one by name).
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        await server.start()
        self.server = server
        await open_loop_reserve()
        self.watchdog.start()
        if opts.warm_up:
            # Heavy SDK imports happen now, in the connectors' threads, not inside the first call's deadline.
            self.warm_up = asyncio.get_running_loop().create_task(self.dispatcher.warm_up(), name="warm-up")
        log.debug("serving %d task types on port %d", len(self.dispatcher.registry.categories()), self.port)
        return self.port

    def _add_optional_wires(self, server: grpc.aio.Server) -> list[str]:
        try:
            from flyteconnectors.core.host import services_v2
        except ImportError:  # flyteidl2 is an optional extra
            return []
        return services_v2.add_v2_services(server, self.dispatcher)

    async def _set_health(self, status: int) -> None:
        for name in ["", *self.service_names]:
            result = self.health.set(name, status)
            if asyncio.iscoroutine(result):
                await result

    async def stop(self, grace: float | None = None) -> None:
        """Drain: report NOT_SERVING, refuse new RPCs, finish in-flight ones within the grace period.

        Calling it again while a drain is running waits for that drain; ``grace=0`` cancels in-flight RPCs now.
        """
        if self._stopping is not None:
            if grace == 0 and self.server is not None:
                await self.server.stop(0)
            await asyncio.shield(self._stopping)
            return
        if self.server is None:
            return
        self._stopping = asyncio.ensure_future(self._drain(self.options.grace if grace is None else grace))
        await asyncio.shield(self._stopping)

    async def _drain(self, grace: float) -> None:
        server = self.server
        assert server is not None
        log.info("draining: health NOT_SERVING, in-flight calls get %.1fs", grace)
        result = self.health.enter_graceful_shutdown()
        if asyncio.iscoroutine(result):
            await result
        if self.options.drain_delay > 0:
            await asyncio.sleep(self.options.drain_delay)
        await server.stop(grace)
        self.watchdog.stop()
        await self.dispatcher.aclose()
        self.server = None
        self._stopped.set()
        log.info("drained")

    @property
    def draining(self) -> bool:
        return self._stopping is not None

    async def wait(self) -> None:
        """Until the host has drained."""
        await self._stopped.wait()


async def open_loop_reserve() -> None:
    """Under uvloop, open the loop's one reserve descriptor now rather than with the first service connection.

    libuv keeps one descriptor per loop (``/dev/null``, opened with its first stream) to shed connections cleanly
    when the process runs out of descriptors. Opened at start-up, the host's idle descriptor count is its steady
    one, so a count above it after a burst of work is a leak, not this.
    """
    loop = asyncio.get_running_loop()
    if not type(loop).__module__.startswith("uvloop"):
        return
    ours, peer = socket.socketpair()
    try:
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        transport.close()
        for _ in range(3):  # the handle is closed in a later loop iteration
            await asyncio.sleep(0)
    except (OSError, RuntimeError, TypeError) as err:  # a uvloop without it: the reserve opens later instead
        ours.close()
        log.debug("no early loop reserve descriptor: %s", err)
    finally:
        peer.close()


def enabled_set(values: Iterable[str] | None) -> set[str] | None:
    items = {v.strip() for v in values or () if v and v.strip()}
    return items or None
