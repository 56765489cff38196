"""The connector host: a grpc.aio server with the Flyte services, health and reflection."""

from __future__ import annotations

import asyncio
import logging
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
    grace: float = 30.0
    #: PEM bytes; with cert and key the port serves TLS, with a client CA too it requires client certs (mTLS).
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    tls_client_ca: bytes | None = None
    max_message_bytes: int = 4 * 1024 * 1024
    reuse_port: bool = False
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
        await server.start()
        self.server = server
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self.watchdog.start()
        log.info("serving %d task types on port %d", len(self.dispatcher.registry.categories()), self.port)
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
        """Drain: report NOT_SERVING, refuse new RPCs, finish in-flight ones within the grace period."""
        if self.server is None:
            return
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(self.options.grace if grace is None else grace)
        self.watchdog.stop()
        await self.dispatcher.aclose()
        self.server = None
        self._stopped.set()

    async def wait(self) -> None:
        if self.server is not None:
            await self.server.wait_for_termination()


def enabled_set(values: Iterable[str] | None) -> set[str] | None:
    items = {v.strip() for v in values or () if v and v.strip()}
    return items or None
