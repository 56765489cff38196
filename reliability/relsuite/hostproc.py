"""`flyteconnectors serve` as a real subprocess on 127.0.0.1, with its logs captured to files."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVE = [sys.executable, "-m", "flyteconnectors.core", "serve"]
#: Environment a host must not inherit from the developer's shell (real cloud credentials and endpoints).
_SCRUB = ("AWS_", "OPENAI_", "AZURE_OPENAI_", "DATABRICKS_", "GOOGLE_", "SNOWFLAKE_", "FLYTECONNECTORS_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update({k: v for k, v in extra.items() if v != ""})
    return env


@dataclass
class Stats:
    rss_kb: int
    fds: int
    threads: int


def proc_stats(pid: int) -> Stats:
    """RSS, open file descriptors and threads of a process, from /proc (Linux)."""
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Stats(rss, fds, threads)


class HostProcess:
    """One host process. ``start()`` returns once health answers SERVING."""

    def __init__(self, name: str, logdir: Path, env: Mapping[str, str], args: Sequence[str] = (),
                 *, tls_root: bytes | None = None, client_cert: tuple[bytes, bytes] | None = None,
                 command: Sequence[str] | None = None) -> None:
        """``client_cert``: (certificate PEM, key PEM) for mTLS. ``command``: another server to run (its args
        are then taken as given, with ``{port}`` replaced)."""
        self.name = name
        self.port = free_port()
        if command is None:
            self.command = SERVE
            self.args = ["--bind", "127.0.0.1", "--port", str(self.port), "--metrics-port", "0",
                         "--log-format", "json", *args]
        else:
            self.command = list(command)
            self.args = [a.replace("{port}", str(self.port)) for a in args]
        self.env = dict(env)
        self.stdout_path = logdir / f"{name}.stdout.log"
        self.stderr_path = logdir / f"{name}.stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls_root = tls_root
        self.client_cert = client_cert
        self.started_at = 0.0
        self.ready_after = 0.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def channel(self, **options: object) -> grpc.Channel:
        opts = [("grpc.enable_retries", 0), *options.items()]
        if self.tls_root is not None:
            cert, key = self.client_cert or (None, None)
            creds = grpc.ssl_channel_credentials(self.tls_root, key, cert)
            return grpc.secure_channel(self.address, creds, options=opts)
        return grpc.insecure_channel(self.address, options=opts)

    def start(self, timeout: float = 60.0) -> HostProcess:
        out = open(self.stdout_path, "ab")  # noqa: SIM115 (closed in stop)
        err = open(self.stderr_path, "ab")  # noqa: SIM115
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([*self.command, *self.args], env=self.env, stdout=out, stderr=err,
                                     stdin=subprocess.DEVNULL)
        self._files = (out, err)
        end = time.monotonic() + timeout
        with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"host {self.name} exited with {self.proc.returncode} before serving:\n"
                                       f"{self.stderr_tail()}")
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1, wait_for_ready=True)
                    if status.status == health_pb2.HealthCheckResponse.SERVING:
                        self.ready_after = time.monotonic() - self.started_at
                        return self
                except grpc.RpcError:
                    time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"host {self.name} did not report SERVING within {timeout:.0f}s:\n{self.stderr_tail()}")

    def health(self, timeout: float = 2.0) -> str:
        """SERVING, NOT_SERVING, or the gRPC error code name."""
        with self.channel() as channel:
            try:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            except grpc.RpcError as err:
                return str(err.code().name)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status.status))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> Stats:
        return proc_stats(self.pid)

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it did not leave. Returns the exit code."""
        if self.proc is None:
            return None
        if self.alive():
            self.terminate()
            if self.wait(timeout) is None:
                self.kill()
                self.wait(5)
        for handle in getattr(self, "_files", ()):
            with contextlib.suppress(OSError):
                handle.close()
        return self.proc.returncode

    def stderr_tail(self, chars: int = 3000) -> str:
        for handle in getattr(self, "_files", ()):
            with contextlib.suppress(OSError, ValueError):
                handle.flush()
        try:
            return self.stderr_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def log_text(self) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)
