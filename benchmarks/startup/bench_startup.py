"""Start-up time of a connector host: spawn to the first successful ListAgents answer.

The command to time is an argument, so one harness times ``flyteconnectors serve`` and ``pyflyte serve
connector`` alike. ``{port}`` and ``{metrics_port}`` in the command are replaced by free ports for each run.
The client polls with a short reconnect backoff (gRPC's default 1 s backoff would hide anything faster).
Each run ends with SIGTERM (SIGKILL after 10 s). Prints one JSON document.

    # our host with every installed connector (the default command)
    python benchmarks/startup/bench_startup.py --runs 10
    # flytekit's host, in a venv with flytekit and its plugins
    python benchmarks/startup/bench_startup.py --runs 10 -- \\
        /path/to/venv/bin/pyflyte serve connector --port {port} --prometheus_port {metrics_port}
    # the floor: a bare grpc.aio server answering a constant ListAgents
    python benchmarks/startup/bench_startup.py --runs 10 -- python benchmarks/startup/bare_server.py {port}

For a fair comparison run both hosts from venvs with compiled bytecode (``UV_COMPILE_BYTECODE=1`` at install
time) and ``PYTHONDONTWRITEBYTECODE`` unset; ``--warmup`` runs are not counted.
The client needs ``grpcio`` and ``flyteidl`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc

DEFAULT_COMMAND = "flyteconnectors serve --bind 127.0.0.1 --port {port} --metrics-port {metrics_port}"
# Reconnect quickly while the server is not listening yet.
CLIENT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 10),
    ("grpc.min_reconnect_backoff_ms", 10),
    ("grpc.max_reconnect_backoff_ms", 20),
    ("grpc.enable_retries", 0),
]


@dataclass
class Sample:
    seconds: float
    agents: int
    task_types: int


@dataclass
class Result:
    command: list[str]
    runs: int
    min_s: float
    median_s: float
    max_s: float
    mean_s: float
    samples_s: list[float]
    agents: int
    task_types: int
    machine: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_list_agents(port: int, proc: subprocess.Popen[bytes], timeout: float) -> agent_pb2.ListAgentsResponse:
    """Poll ListAgents until it answers; raise if the process exits or ``timeout`` passes."""
    end = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=CLIENT_OPTIONS) as channel:
        stub = agent_pb2_grpc.AgentMetadataServiceStub(channel)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no ListAgents answer within {timeout}s")
            if proc.poll() is not None:
                raise RuntimeError(f"the host exited with {proc.returncode} before answering")
            try:
                # wait_for_ready rides the channel's fast reconnects; the short per-try timeout lets us notice
                # a crashed process.
                return stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=min(left, 0.5), wait_for_ready=True)
            except grpc.RpcError as err:
                if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_once(command: list[str], *, timeout: float, env: dict[str, str] | None, quiet: bool) -> Sample:
    port, metrics_port = free_port(), free_port()
    argv = [part.replace("{port}", str(port)).replace("{metrics_port}", str(metrics_port)) for part in command]
    out = subprocess.DEVNULL if quiet else None
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
    try:
        response = first_list_agents(port, proc, timeout)
        elapsed = time.perf_counter() - start
    finally:
        stop(proc)
    types = {(c.name, c.version) for a in response.agents for c in a.supported_task_categories}
    types |= {(t, 0) for a in response.agents for t in a.supported_task_types}
    return Sample(elapsed, len(response.agents), len(types))


def measure(command: list[str], runs: int = 10, warmup: int = 1, timeout: float = 60.0,
            env: dict[str, str] | None = None, quiet: bool = True) -> Result:
    """Time ``runs`` start-ups of ``command`` (after ``warmup`` uncounted ones)."""
    if not any("{port}" in part for part in command):
        raise ValueError("the command must contain {port} where the gRPC port goes")
    for _ in range(warmup):
        run_once(command, timeout=timeout, env=env, quiet=quiet)
    samples = [run_once(command, timeout=timeout, env=env, quiet=quiet) for _ in range(runs)]
    seconds = [round(s.seconds, 4) for s in samples]
    return Result(
        command=command,
        runs=runs,
        min_s=min(seconds),
        median_s=round(statistics.median(seconds), 4),
        max_s=max(seconds),
        mean_s=round(statistics.fmean(seconds), 4),
        samples_s=seconds,
        agents=samples[-1].agents,
        task_types=samples[-1].task_types,
        machine={"python": platform.python_version(), "platform": platform.platform(),
                 "cpus": str(os.cpu_count())},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs first (fills OS caches)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one start-up")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment")
    parser.add_argument("--show-output", action="store_true", help="let the host's stdout/stderr through")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help=f"command to time, after '--' (default: {DEFAULT_COMMAND})")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        command = shlex.split(DEFAULT_COMMAND)
        if os.path.dirname(sys.executable) not in os.environ.get("PATH", "").split(os.pathsep):
            command[0] = os.path.join(os.path.dirname(sys.executable), command[0])
    env = dict(os.environ)
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    result = measure(command, args.runs, args.warmup, args.timeout, env, quiet=not args.show_output)
    print(json.dumps(asdict(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
