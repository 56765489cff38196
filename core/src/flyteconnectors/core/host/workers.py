"""``--workers N``: N host processes on one port (SO_REUSEPORT), supervised by this process.

The host is stateless (every job's state is in its resource_meta), so the kernel may hand any connection to
any worker. The supervisor forwards SIGTERM/SIGINT, restarts a worker that dies while serving, and serves
the workers' metrics merged (prometheus_client multiprocess mode) on the metrics port.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from flyteconnectors.core.host.app import EXIT_CANNOT_START
from flyteconnectors.core.host.settings import HostSettings

log = logging.getLogger("flyteconnectors.host")

#: Marks a worker process; its resolved settings (JSON) arrive on stdin.
WORKER_ENV = "FLYTECONNECTORS__WORKER_SETTINGS"
_RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0)


def free_port(bind: str) -> int:
    """A port free on ``bind`` right now (the workers then share it)."""
    host = bind.strip("[]") or "::"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Supervisor:
    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings
        self.port = settings.port or free_port(settings.bind)
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts: dict[int, int] = {}
        self.stopping = False
        self.metrics_dir: str | None = None
        self._own_metrics_dir = False

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[WORKER_ENV] = "stdin"
        if self.metrics_dir:
            env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        return env

    def spawn(self, index: int) -> None:
        cmd = [sys.executable, "-c", "from flyteconnectors.core.host.workers import worker_main; worker_main()"]
        # The settings (signing keys included) go through a pipe, not the environment or argv, which other
        # processes can read. A session of its own: a terminal's Ctrl-C reaches the supervisor only, which
        # forwards one SIGTERM, so in-flight calls still get their grace period.
        child = subprocess.Popen(cmd, env=self._env(), stdin=subprocess.PIPE, start_new_session=True)
        assert child.stdin is not None
        child.stdin.write(dataclasses.replace(self.settings, workers=1, port=self.port).to_json().encode())
        child.stdin.close()
        self.children[index] = child
        log.info("worker %d started (pid %d)", index, child.pid)

    def _on_signal(self, signum: int, _frame: object) -> None:
        first = not self.stopping
        self.stopping = True
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM if first else signal.SIGINT)

    def _setup_metrics(self) -> None:
        if not self.settings.metrics_port:
            return
        self.metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not self.metrics_dir:
            self.metrics_dir = tempfile.mkdtemp(prefix="flyteconnectors-metrics-")
            self._own_metrics_dir = True
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        from flyteconnectors.core.host.app import start_metrics_server

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.metrics_dir)
        start_metrics_server(self.settings, registry)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self._setup_metrics()
        for index in range(self.settings.workers):
            self.spawn(index)
        log.info("%d workers serving port %d", self.settings.workers, self.port)
        code = 0
        deadline: float | None = None
        try:
            while self.children:
                if self.stopping and deadline is None:
                    deadline = time.monotonic() + self.settings.drain_delay + self.settings.grace_period + 5.0
                for index, child in list(self.children.items()):
                    status = child.poll()
                    if status is None:
                        continue
                    self._mark_dead(child.pid)
                    if self.stopping:
                        del self.children[index]
                        code = code or (status if status > 0 else 0)
                        continue
                    if status == EXIT_CANNOT_START:
                        log.error("worker %d could not start serving; stopping", index)
                        del self.children[index]
                        code = EXIT_CANNOT_START
                        self._on_signal(signal.SIGTERM, None)
                        continue
                    tries = self.restarts.get(index, 0)
                    pause = _RESTART_BACKOFF[min(tries, len(_RESTART_BACKOFF) - 1)]
                    log.error("worker %d (pid %d) exited with %s; restarting in %.0fs", index, child.pid, status, pause)
                    self.restarts[index] = tries + 1
                    del self.children[index]
                    self._sleep(pause)
                    if not self.stopping:
                        self.spawn(index)
                if deadline is not None and time.monotonic() > deadline:
                    for child in self.children.values():
                        log.error("worker pid %d did not drain in time; killing it", child.pid)
                        child.kill()
                    code = code or 1
                    deadline = float("inf")
                self._sleep(0.1)
        finally:
            if self._own_metrics_dir and self.metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        log.info("all workers stopped")
        return code

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (self.stopping and seconds > 0.1):
            time.sleep(min(0.1, seconds))

    def _mark_dead(self, pid: int) -> None:
        if not self.metrics_dir:
            return
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.metrics_dir)
        except Exception:  # metrics bookkeeping must never stop supervision
            pass


def run_workers(settings: HostSettings) -> int:
    return Supervisor(settings).run()


def worker_main() -> None:
    """Entry of a worker process: settings come from the supervisor through the environment."""
    from flyteconnectors.core.host.app import run
    from flyteconnectors.core.host.logs import configure_logging

    if os.environ.pop(WORKER_ENV, "") != "stdin":
        sys.exit("worker_main is started by 'flyteconnectors serve --workers N'")
    settings = HostSettings.from_json(sys.stdin.read())
    configure_logging(settings.log_format, settings.log_level)
    sys.exit(run(settings, worker=True))
