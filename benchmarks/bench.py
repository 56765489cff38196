"""The benchmark harness: our host against flytekit's, side by side, on this machine, in one invocation.

    python benchmarks/bench.py --flytekit-venv .nox/bench-flytekit            # the full run (nox -s bench)
    python benchmarks/bench.py --flytekit-venv .nox/bench-flytekit --quick    # a few seconds per scenario
    python benchmarks/bench.py ... --only startup,trivial                     # some scenarios
    python benchmarks/report.py benchmarks/results/<file>.json               # regenerate docs/benchmarks.md

Scenarios (issue 14), each run against our host (``flyteconnectors serve``, this interpreter's venv) and
flytekit's (``pyflyte serve connector`` from ``--flytekit-venv``), alternating:

1. ``startup``: spawn to the first ListAgents answer, every connector installed, 10-20 ms reconnect backoff;
2. ``trivial``: RPC/s of a trivial connector on both hosts and of a bare grpc.aio server answering constants;
3. ``blocking``: a connector doing a 20 ms blocking call in plain ``def`` and inside ``async def``;
4. ``services``: per service, the real connectors against the fakes (50 ms per service call, jobs finishing on
   the third status read, 256 in flight): capacity, deadline errors, orphaned remote jobs, descriptor growth;
5. ``local``: per-task overhead of local execution (benchmarks/local/bench_local.py);
6. ``memory``: host RSS with every connector loaded, idle and under scenario 4.

Writes ``benchmarks/results/<UTC time>.json`` (one file per run) and prints its path. The load generator runs
in this process and shares the machine with the host under test, as Propeller would not; that costs both
hosts alike, and only ratios measured in the same run are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "startup"))

import loadgen  # noqa: E402
import services  # noqa: E402

RESULTS = HERE / "results"
BENCH_CONNECTORS = HERE / "bench_connectors"
BARE_SERVER = HERE / "startup" / "bare_server.py"
LOCAL_BENCH = HERE / "local" / "bench_local.py"
SCENARIOS = ("startup", "trivial", "blocking", "services", "local", "memory")
FLYTEKIT_PLUGINS = ("flytekit", "flytekitplugins-bigquery", "flytekitplugins-snowflake", "flytekitplugins-spark",
                    "flytekitplugins-awssagemaker", "flytekitplugins-openai")
GOALS = {
    "startup": "ours / flytekit <= 0.25",
    "trivial": "ours / bare grpc.aio >= 0.9",
    "blocking": "ours / flytekit RPC/s >= 10 at equal or better p99",
    "services": ">= 10x flytekit's capacity where flytekit blocks (SageMaker, OpenAI, BigQuery, Snowflake), "
                ">= 2x on Databricks; zero deadline errors, zero orphaned remote jobs, no descriptor growth",
    "local": "ours / flytekit per-task overhead <= 0.05",
}
CAPACITY_GOAL = {"databricks": 2.0, "bigquery": 10.0, "snowflake": 10.0, "openai": 10.0, "sagemaker": 10.0}


@dataclass
class Config:
    quick: bool
    repeats: int
    startup_runs: int
    throughput_seconds: float
    throughput_in_flight: int
    service_seconds: float
    service_in_flight: int
    service_repeats: int
    service_latency: float
    poll_interval: float
    warmup: float
    settle: float
    local_n: int
    local_repeats: int
    profile_seconds: float
    second_load_seconds: float = 3.0
    #: Our host's client_idle_timeout (None: its default, what a user gets). After the loads, both hosts' fds are
    #: sampled until they are back to the pre-load count or this + idle_close_margin seconds have passed.
    idle_close_timeout: float | None = None
    idle_close_margin: float = 15.0


def make_config(args: argparse.Namespace) -> Config:
    if args.quick:
        return Config(quick=True, repeats=1, startup_runs=1, throughput_seconds=1.5, throughput_in_flight=32,
                      service_seconds=2.0, service_in_flight=32, service_repeats=1, service_latency=0.05,
                      poll_interval=0.0, warmup=1.0, settle=0.5, local_n=2, local_repeats=1, profile_seconds=0,
                      second_load_seconds=0.5, idle_close_timeout=1.0, idle_close_margin=3.0)
    return Config(quick=False, repeats=args.repeats, startup_runs=args.startup_runs,
                  throughput_seconds=args.throughput_seconds, throughput_in_flight=64,
                  service_seconds=args.service_seconds, service_in_flight=256, service_repeats=args.service_repeats,
                  service_latency=0.05, poll_interval=args.poll_interval, warmup=2.0, settle=2.0,
                  local_n=args.local_n, local_repeats=args.local_repeats, profile_seconds=args.profile_seconds)


# ============================================================================================ processes
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def proc_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def harness_connections(port: int) -> int:
    """TCP connections this (the benchmark's) process holds open to ``port``: the other end of each is one of the
    host's descriptors. grpc.aio may keep a load's connection open for a while after its channel closed (a shared
    subchannel), which is the harness's doing, not the host's."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes and fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def proc_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def proc_threads(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None


class Proc:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path, cwd: Path | None = None):
        self.name = name
        self.argv = argv
        self.log_path = logdir / f"{name}-{int(time.time() * 1000)}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      cwd=str(cwd) if cwd else None, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait()
        self._log.close()


def wait_serving(port: int, proc: Proc, timeout: float = 90.0) -> None:
    """Wait until grpc.health.v1 reports SERVING (a host may warm up its SDKs between ListAgents and ready)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    end = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited before serving:\n{proc.tail()}")
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{proc.name} did not report SERVING within {timeout:.0f}s:\n{proc.tail()}")


def wait_list_agents(port: int, proc: Proc, timeout: float = 90.0) -> int:
    """Wait until the server answers ListAgents; returns the number of task types listed."""
    import grpc
    from flyteidl.admin import agent_pb2
    from flyteidl.service import agent_pb2_grpc

    end = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = agent_pb2_grpc.AgentMetadataServiceStub(channel)
        while time.monotonic() < end:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited before serving:\n{proc.tail()}")
            try:
                answer = stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=1.0, wait_for_ready=True)
                return sum(len(a.supported_task_categories) for a in answer.agents)
            except grpc.RpcError:
                time.sleep(0.05)
    raise TimeoutError(f"{proc.name} did not answer ListAgents within {timeout:.0f}s:\n{proc.tail()}")


class Rig:
    """Where the two venvs are and how to start each kind of server."""

    def __init__(self, flytekit_venv: Path, workdir: Path, log: Callable[[str], None]) -> None:
        self.ours_bin = Path(sys.executable).parent
        self.flytekit_bin = flytekit_venv / "bin"
        self.workdir = workdir
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.log = log
        # flytekit's host imports every --modules entry and the working directory: run it from an empty one.
        self.neutral_cwd = workdir / "cwd"
        self.neutral_cwd.mkdir(exist_ok=True)
        if not (self.flytekit_bin / "pyflyte").exists():
            raise SystemExit(f"no pyflyte in {self.flytekit_bin}: create the flytekit venv first (nox -s bench)")

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FLYTECONNECTORS_", "VIRTUAL_ENV", "PYTHONPATH", "AWS_", "GOOGLE_", "OPENAI_",
                                    "DATABRICKS_", "SNOWFLAKE_", "BIGQUERY_", "FLYTE_"))}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # both venvs run from their compiled bytecode
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # ---------------------------------------------------------------- commands
    def ours_command(self, port: str, metrics_port: str) -> list[str]:
        return [str(self.ours_bin / "flyteconnectors"), "serve", "--bind", "127.0.0.1", "--port", port,
                "--metrics-port", metrics_port, "--log-level", "WARNING"]

    def theirs_command(self, port: str, metrics_port: str, modules: list[str] = ()) -> list[str]:  # type: ignore[assignment]
        argv = [str(self.flytekit_bin / "pyflyte"), "serve", "connector", "--port", port,
                "--prometheus_port", metrics_port]
        for module in modules:
            argv += ["--modules", module]
        return argv

    def bare_command(self, port: str, tuned: bool = False) -> list[str]:
        return [sys.executable, str(BARE_SERVER), port, *(["--tuned"] if tuned else [])]

    # ---------------------------------------------------------------- servers
    def start(self, kind: str, env_extra: dict[str, str] | None = None, modules: list[str] | None = None,
              bench_connectors: bool = False) -> tuple[Proc, int]:
        port, metrics = free_port(), free_port()
        env = self.base_env()
        env.update(env_extra or {})
        cwd = self.neutral_cwd
        if kind == "ours":
            argv = self.ours_command(str(port), str(metrics))
            if bench_connectors:
                env["PYTHONPATH"] = str(BENCH_CONNECTORS)
                env["FLYTECONNECTORS_MODULES"] = "bench=fc_bench_connectors:CONNECTORS"
        elif kind == "flytekit":
            mods = list(modules or [])
            if bench_connectors:
                mods.append("fk_bench_connectors")
            if mods:
                env["PYTHONPATH"] = str(BENCH_CONNECTORS)
            argv = self.theirs_command(str(port), str(metrics), mods)
        elif kind in ("bare", "bare-tuned"):
            argv = self.bare_command(str(port), tuned=kind == "bare-tuned")
        else:
            raise ValueError(kind)
        proc = Proc(kind, argv, env, self.logdir, cwd)
        try:
            wait_list_agents(port, proc)
            if not kind.startswith("bare"):
                wait_serving(port, proc)
        except Exception:
            proc.stop()
            raise
        return proc, port

    def versions(self) -> dict[str, Any]:
        ours = {}
        for dist in metadata.distributions():
            name = dist.metadata["Name"] or ""
            if name.startswith("flyteconnectors") or name in ("grpcio", "flytekit", "flyteidl", "protobuf"):
                ours[name] = dist.version
        names = [*FLYTEKIT_PLUGINS, "grpcio", "flyteidl", "protobuf", "snowflake-connector-python", "aioboto3",
                 "openai", "google-cloud-bigquery", "aiohttp"]
        code = (
            "import json, platform\nfrom importlib import metadata as m\nout = {}\n"
            f"for n in {names!r}:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "out['python'] = platform.python_version()\nprint(json.dumps(out))"
        )
        theirs = json.loads(subprocess.run([str(self.flytekit_bin / "python"), "-c", code], capture_output=True,
                                           text=True, check=True).stdout)
        sdks = {}
        for name in ("databricks-sdk", "google-cloud-bigquery", "snowflake-connector-python", "openai", "boto3",
                     "botocore", "moto"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                sdks[name] = metadata.version(name)
        return {"ours": dict(sorted(ours.items())), "ours_sdks": sdks, "ours_python": platform.python_version(),
                "flytekit": theirs, "git": git_state()}


def git_state() -> dict[str, Any]:
    """The commit measured, and which measured files differed from it (editable installs run the work tree)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "core", "connectors").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_measured_files": dirty[:50]}


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"nproc": usable, "cpu_count": os.cpu_count(), "cpu_model": model, "memory_gb": mem_gb,
            "platform": platform.platform(), "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


# ============================================================================================ statistics
def summary(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"min": round(min(values), 4), "median": round(statistics.median(values), 4),
            "max": round(max(values), 4), "n": len(values)}


def ratios(ours: list[float | None], theirs: list[float | None]) -> dict[str, float] | None:
    """min-median-max of ours_i / theirs_i over paired repeats."""
    pairs = [o / t for o, t in zip(ours, theirs, strict=False) if o is not None and t]
    return summary(pairs)


def wait_idle(pid: int, limit: float = 20.0) -> float:
    """Wait until the process uses under 5% of a core over half a second (start-up work such as our host's SDK
    warm-up imports is done), at most ``limit`` seconds. Returns the seconds waited."""
    start = time.monotonic()
    previous = proc_cpu_s(pid)
    while time.monotonic() - start < limit:
        time.sleep(0.5)
        now = proc_cpu_s(pid)
        if now is None or previous is None or now - previous < 0.025:
            break
        previous = now
    return round(time.monotonic() - start, 2)


class RssSampler:
    """Peak and mean RSS of a process while a load runs (sampled every 0.25 s)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = proc_rss_mb(self.pid)
            if rss is not None:
                self.samples.append(rss)
            self._stop.wait(0.25)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float | None:
        return max(self.samples) if self.samples else None


_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    """One event loop for every load of the run: grpc.aio keeps callbacks on the loop it first ran on."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP


def run_load(port: int, template: Any, *, in_flight: int, duration: float, warmup: float, poll_interval: float,
             run_id: str, inputs: Any = None, inputs_for: Any = None, pid: int | None = None,
             drain_limit: float | None = None) -> dict[str, Any]:
    spec = loadgen.LoadSpec(f"127.0.0.1:{port}", template, in_flight=in_flight, duration=duration, warmup=warmup,
                            poll_interval=poll_interval, run_id=run_id, inputs_for=inputs_for,
                            drain_limit=drain_limit)
    if inputs is not None:
        spec.inputs = inputs
    cpu_before = proc_cpu_s(pid) if pid else None
    started = time.monotonic()
    result = _loop().run_until_complete(loadgen.run_load(spec)).to_dict()
    wall = time.monotonic() - started
    result["wall_s"] = round(wall, 2)
    if pid:
        cpu_after = proc_cpu_s(pid)
        if cpu_before is not None and cpu_after is not None:
            result["host_cpu_s"] = round(cpu_after - cpu_before, 2)
            result["host_cpu_share"] = round((cpu_after - cpu_before) / wall, 3)
            if result["total_rpcs"]:
                result["host_cpu_ms_per_rpc"] = round((cpu_after - cpu_before) * 1000 / result["total_rpcs"], 3)
            result["host_threads"] = proc_threads(pid)
    # grpc.aio finishes closing the load's channel on this loop, which runs only during a load: without a turn
    # now, a cut-off load's connection stays open and counts as one of the host's descriptors afterwards.
    _loop().run_until_complete(asyncio.sleep(0.2))
    return result


# ============================================================================================ scenario 1
def scenario_startup(rig: Rig, cfg: Config, log: Callable[[str], None]) -> dict[str, Any]:
    from bench_startup import run_once

    env = rig.base_env()
    commands = {
        "ours": rig.ours_command("{port}", "{metrics_port}"),
        "flytekit": rig.theirs_command("{port}", "{metrics_port}"),
        "bare": rig.bare_command("{port}"),
    }
    samples: dict[str, list[float]] = {k: [] for k in commands}
    listed: dict[str, int] = {}
    order = list(commands)
    for kind in order if not cfg.quick else ():  # warm-up: page cache, bytecode already compiled
        run_once(commands[kind], timeout=90, env=env, quiet=True)
    for r in range(cfg.repeats * cfg.startup_runs):
        for kind in order[r % 3:] + order[:r % 3]:
            sample = run_once(commands[kind], timeout=90, env=env, quiet=True)
            samples[kind].append(round(sample.seconds, 4))
            listed[kind] = sample.task_types
    log("  startup medians: " + ", ".join(f"{k} {statistics.median(v):.3f}s" for k, v in samples.items()))
    ratio = ratios(samples["ours"], samples["flytekit"])
    return {
        "goal": GOALS["startup"], "samples_s": samples, "summary_s": {k: summary(v) for k, v in samples.items()},
        "task_types_listed": listed, "ratio_ours_flytekit": ratio,
        "ratio_bare_flytekit": ratios(samples["bare"], samples["flytekit"]),
        "met": bool(ratio and ratio["median"] <= 0.25),
        "commands": {k: " ".join(v) for k, v in commands.items()},
    }


# ============================================================================================ scenarios 2 + 3
def scenario_throughput(rig: Rig, cfg: Config, log: Callable[[str], None], which: tuple[str, ...],
                        profile: bool) -> dict[str, Any]:
    """Scenario 2 (trivial vs bare) and 3 (blocking def / async def): one server of each kind, loads alternate."""
    servers: dict[str, tuple[Proc, int]] = {}
    out: dict[str, Any] = {}
    try:
        kinds = ["ours", "flytekit"] + (["bare", "bare-tuned"] if "trivial" in which else [])
        for kind in kinds:
            servers[kind] = rig.start(kind, bench_connectors=not kind.startswith("bare"))
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        plans: list[tuple[str, str, str]] = []  # (case, kind, task type)
        if "trivial" in which:
            plans += [("trivial", "bare", "bare"), ("trivial", "ours", "bench-trivial"),
                      ("trivial", "flytekit", "bench-trivial"), ("trivial", "bare-tuned", "bare")]
        if "blocking" in which:
            for variant in ("blocking-def", "blocking-async"):
                plans += [(variant, "ours", f"bench-{variant}"), (variant, "flytekit", f"bench-{variant}")]
        for case, kind, task_type in plans if not cfg.quick else ():  # warm-up: connections, first calls
            proc, port = servers[kind]
            run_load(port, loadgen.trivial_template(task_type), in_flight=cfg.throughput_in_flight,
                     duration=0.5, warmup=0.2, poll_interval=0, run_id=f"warm-{case}-{kind}")
        for r in range(cfg.repeats):
            rotated = plans[r % len(plans):] + plans[:r % len(plans)]
            for case, kind, task_type in rotated:
                proc, port = servers[kind]
                result = run_load(port, loadgen.trivial_template(task_type), in_flight=cfg.throughput_in_flight,
                                  duration=cfg.throughput_seconds, warmup=cfg.warmup / 2, poll_interval=0,
                                  run_id=f"t{r}-{case}-{kind}", pid=proc.pid)
                runs.setdefault(case, {}).setdefault(kind, []).append(result)
                log(f"  {case:15s} {kind:9s} {result['rpc_per_s']:8.1f} RPC/s  p99 Get "
                    f"{result['per_rpc']['GetTask']['p99_ms']} ms  errors {result['errors'] or 0}")
        if "trivial" in which:
            out["trivial"] = _throughput_case(runs["trivial"], "bare", GOALS["trivial"],
                                              lambda r: bool(r and r["median"] >= 0.9))
            out["trivial"]["ratio_flytekit_bare"] = ratios(_rate(runs["trivial"]["flytekit"]),
                                                           _rate(runs["trivial"]["bare"]))
            # Informational: against a bare server with the same registered methods and event loop as ours.
            out["trivial"]["ratio_ours_bare_tuned"] = ratios(_rate(runs["trivial"]["ours"]),
                                                             _rate(runs["trivial"]["bare-tuned"]))
        if "blocking" in which:
            out["blocking"] = {"goal": GOALS["blocking"]}
            for variant in ("blocking-def", "blocking-async"):
                case = _throughput_case(runs[variant], "flytekit", GOALS["blocking"], lambda r: bool(
                    r and r["median"] >= 10))
                p99_ours = [x["per_rpc"]["GetTask"]["p99_ms"] for x in runs[variant]["ours"]]
                p99_theirs = [x["per_rpc"]["GetTask"]["p99_ms"] for x in runs[variant]["flytekit"]]
                case["p99_ratio_ours_flytekit"] = ratios(p99_ours, p99_theirs)
                case["met"] = bool(case["met"] and case["p99_ratio_ours_flytekit"]
                                   and case["p99_ratio_ours_flytekit"]["median"] <= 1.0)
                out["blocking"][variant] = case
            out["blocking"]["met"] = all(out["blocking"][v]["met"] for v in ("blocking-def", "blocking-async"))
        if "trivial" in out:
            # The core's own per-RPC work, in-process and without the network (explains the gap to the floor).
            done = subprocess.run([sys.executable, str(HERE / "microprofile.py"),
                                   "--pairs", "300" if cfg.quick else "3000"],
                                  capture_output=True, text=True, timeout=300)
            out["trivial"]["core_microprofile"] = (json.loads(done.stdout) if done.returncode == 0
                                                   else {"error": done.stderr[-1000:]})
        if profile and cfg.profile_seconds:
            missed = [(case, "bench-" + case) for case in ("trivial",) if "trivial" in out and not out[case]["met"]]
            missed += [(v, "bench-" + v) for v in ("blocking-def", "blocking-async")
                       if "blocking" in out and not out["blocking"][v]["met"]]
            for case, task_type in missed:
                proc, port = servers["ours"]

                def load(port: int = port, task_type: str = task_type, case: str = case) -> Any:
                    return run_load(port, loadgen.trivial_template(task_type), in_flight=cfg.throughput_in_flight,
                                    duration=cfg.profile_seconds, warmup=0.5, poll_interval=0, run_id=f"prof-{case}")

                prof = profile_load(proc.pid, cfg.profile_seconds, load, rig)
                target = out["trivial"] if case == "trivial" else out["blocking"][case]
                target["profile_ours"] = prof
    finally:
        for proc, _ in servers.values():
            proc.stop()
    return out


def _rate(results: list[dict[str, Any]]) -> list[float]:
    return [r["rpc_per_s"] for r in results]


def _throughput_case(runs: dict[str, list[dict[str, Any]]], against: str, goal: str,
                     met: Callable[[dict[str, float] | None], bool]) -> dict[str, Any]:
    ratio = ratios(_rate(runs["ours"]), _rate(runs[against]))
    return {
        "goal": goal,
        "rpc_per_s": {k: summary(_rate(v)) for k, v in runs.items()},
        "get_p50_ms": {k: summary([r["per_rpc"]["GetTask"]["p50_ms"] for r in v]) for k, v in runs.items()},
        "get_p99_ms": {k: summary([r["per_rpc"]["GetTask"]["p99_ms"] for r in v]) for k, v in runs.items()},
        "create_p99_ms": {k: summary([r["per_rpc"]["CreateTask"]["p99_ms"] for r in v]) for k, v in runs.items()},
        "host_cpu_share": {k: summary([r.get("host_cpu_share") for r in v]) for k, v in runs.items()},
        "host_cpu_ms_per_rpc": {k: summary([r.get("host_cpu_ms_per_rpc") for r in v]) for k, v in runs.items()},
        "errors": {k: _sum_errors(v) for k, v in runs.items()},
        f"ratio_ours_{against}": ratio,
        "met": met(ratio),
        "runs": runs,
    }


def _sum_errors(results: list[dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            total[k] = total.get(k, 0) + v
    return total


# ============================================================================================ profiles
def profile_load(pid: int, seconds: float, load: Callable[[], Any], rig: Rig) -> dict[str, Any]:
    """Run ``load`` while py-spy samples ``pid``; returns the hottest frames (self and total) or why not."""
    pyspy = shutil.which("py-spy", path=str(rig.ours_bin)) or shutil.which("py-spy")
    if pyspy is None:
        return {"error": "py-spy is not installed"}
    out = rig.workdir / f"profile-{pid}-{int(time.time())}.txt"
    cmd = [pyspy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100", "--format", "raw",
           "--output", str(out), "--nonblocking", "--threads"]
    spy = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    load()
    try:
        _, err = spy.communicate(timeout=2 * seconds + 60)
    except subprocess.TimeoutExpired:
        spy.kill()
        return {"error": "py-spy did not finish"}
    if spy.returncode != 0 or not out.exists():
        return {"error": f"py-spy failed ({spy.returncode}): {err.strip()[-500:]}"}
    return summarize_collapsed(out.read_text())


GENERIC_FRAMES = ("click/", "asyncio/runners", "asyncio/base_events", "core/cli", "host/app", "(flyteconnectors)",
                  "threading.py", "futures/thread")


def summarize_collapsed(text: str, top: int = 30) -> dict[str, Any]:
    """Self and inclusive sample shares of the hottest frames from py-spy's collapsed-stack output."""
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    threads: dict[str, int] = {}
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else ""
        if thread:
            name = thread.split("(")[0].strip()
            threads[name] = threads.get(name, 0) + count
        real = [f for f in frames if not f.startswith(("thread", "process"))]
        if not real:
            continue
        leaf = _short(real[-1])
        self_counts[leaf] = self_counts.get(leaf, 0) + count
        for frame in {_short(f) for f in real}:
            total_counts[frame] = total_counts.get(frame, 0) + count

    def share(counts: dict[str, int]) -> list[list[Any]]:
        ranked = sorted(((k, v) for k, v in counts.items() if not any(g in k for g in GENERIC_FRAMES)),
                        key=lambda kv: kv[1], reverse=True)[:top]
        return [[name, round(100 * c / samples, 1)] for name, c in ranked]

    return {"samples": samples, "self_pct": share(self_counts), "total_pct": share(total_counts)}


def _short(frame: str) -> str:
    # "function (path/to/pkg/module.py:123)" -> "function (pkg/module.py)": one entry per function
    if "(" in frame and frame.endswith(")"):
        name, _, where = frame.partition(" (")
        where = where[:-1].rsplit(":", 1)[0]
        parts = where.split("/")
        where = "/".join(parts[-2:]) if len(parts) > 1 else where
        return f"{name} ({where})"
    return frame


# ============================================================================================ scenario 4 + 6
@dataclass
class FakeProc:
    proc: Proc
    started: services.Started
    scheme: str

    def stats(self) -> dict[str, Any]:
        import ssl

        context = ssl._create_unverified_context() if self.scheme == "https" else None
        with urllib.request.urlopen(f"{self.started.url}/_fake/bench", timeout=30, context=context) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]


def start_fake(rig: Rig, case: services.ServiceCase, cfg: Config, cert: tuple[str, str] | None) -> FakeProc:
    port_file = rig.workdir / f"fake-{case.name}-{time.time_ns()}.json"
    argv = [sys.executable, str(HERE / "fake_runner.py"), case.fake, "--port-file", str(port_file),
            "--latency", str(cfg.service_latency), "--script", json.dumps(case.script),
            "--kwargs", json.dumps(case.fake_kwargs), "--setup", services.setup_json(case, rig.workdir)]
    if case.tls and cert:
        argv += ["--tls-cert", cert[0], "--tls-key", cert[1]]
    env = rig.base_env()
    env.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"})
    proc = Proc(f"fake-{case.name}", argv, env, rig.logdir)
    end = time.monotonic() + 60
    while not port_file.exists():
        if not proc.alive() or time.monotonic() > end:
            proc.stop()
            raise RuntimeError(f"the {case.name} fake did not start:\n{proc.tail()}")
        time.sleep(0.05)
    info = json.loads(port_file.read_text())
    scheme = "https" if case.tls and cert else "http"
    url = f"{scheme}://127.0.0.1:{info['port']}"
    setup = services.harness_setup(case, info["setup"], url, rig.workdir)
    return FakeProc(proc, services.Started(url, info["port"], setup, rig.workdir,
                                           cert[0] if (case.tls and cert) else None), scheme)


def idle_close_timeout(cfg: Config) -> float:
    """The client_idle_timeout our host runs with in scenario 4."""
    if cfg.idle_close_timeout is not None:
        return cfg.idle_close_timeout
    from flyteconnectors.core.host.settings import HostSettings

    return float(HostSettings().client_idle_timeout)


def wait_fds_back(pid: int, baseline: int | None, since: float, limit: float, port: int = 0) -> dict[str, Any]:
    """Sample a host's open fds (every 0.5 s) until they are back to ``baseline`` or ``limit`` seconds have passed
    since ``since`` (the end of the last load). Returns the last count, how long it took (None: not back), and a
    coarse trace of [seconds, fds] every ~5 s. Connections the harness itself still holds to the host's gRPC
    ``port`` are not counted (``harness_connections``: how many were left out at the end)."""
    trace: list[list[float]] = []
    while True:
        own = harness_connections(port) if port else 0
        fds, elapsed = proc_fds(pid), time.monotonic() - since
        fds = None if fds is None else fds - own
        if fds is None or baseline is None:
            return {"fds": fds, "seconds": None, "limit_s": limit, "trace": trace}
        back, over = fds <= baseline, elapsed >= limit
        if back or over or not trace or elapsed - trace[-1][0] >= 5:
            trace.append([round(elapsed, 1), fds])
        if back or over:
            return {"fds": fds, "seconds": round(elapsed, 1) if back else None, "limit_s": limit, "trace": trace,
                    "harness_connections": own}
        time.sleep(0.5)


def service_run(rig: Rig, case: services.ServiceCase, kind: str, cfg: Config, cert: tuple[str, str] | None,
                run_id: str, profile: bool = False) -> dict[str, Any]:
    fake = start_fake(rig, case, cfg, cert)
    host: Proc | None = None
    try:
        side = (case.ours if kind == "ours" else case.theirs)(fake.started)  # type: ignore[misc]
        env = dict(side.env)
        if kind == "ours" and cfg.idle_close_timeout is not None:
            env["FLYTECONNECTORS_CLIENT_IDLE_TIMEOUT"] = str(cfg.idle_close_timeout)
        host, port = rig.start(kind, env_extra=env, modules=side.modules)
        settled = wait_idle(host.pid)
        idle = {"settle_s": settled, "rss_mb": proc_rss_mb(host.pid), "fds": proc_fds(host.pid),
                "harness_connections": harness_connections(port),
                "threads": proc_threads(host.pid)}
        fake_cpu_before = proc_cpu_s(fake.proc.pid)

        def load() -> dict[str, Any]:
            return run_load(port, side.template, inputs=side.inputs, inputs_for=side.inputs_for,
                            in_flight=cfg.service_in_flight, duration=cfg.service_seconds, warmup=cfg.warmup,
                            poll_interval=cfg.poll_interval, run_id=run_id, pid=host.pid)  # type: ignore[union-attr]

        prof = None
        with RssSampler(host.pid) as rss:
            if profile:
                holder: dict[str, Any] = {}
                prof = profile_load(host.pid, cfg.service_seconds + cfg.warmup, lambda: holder.update(r=load()), rig)
                result = holder["r"]
            else:
                result = load()
        fake_cpu = proc_cpu_s(fake.proc.pid)
        result["load_average"] = round(os.getloadavg()[0], 2)
        # What the fake served during the main load (warm-up and drain included): is the fake the bottleneck?
        result["service_requests_per_s"] = round(fake.stats()["requests"] / result["wall_s"], 1)
        time.sleep(cfg.settle)
        after = {"rss_mb": proc_rss_mb(host.pid), "fds": proc_fds(host.pid), "threads": proc_threads(host.pid),
                 "harness_connections": harness_connections(port)}
        # Remote jobs now, against the creates the main load saw return (the second load's jobs do not count:
        # its RPCs are cut off after a second, so its cut-off creates would look like orphans).
        jobs_main = fake.stats()["jobs"]
        # The same load again, briefly: descriptors a bounded pool keeps stay level; a leak grows again.
        again = run_load(port, side.template, inputs=side.inputs, inputs_for=side.inputs_for,
                         in_flight=cfg.service_in_flight, duration=cfg.second_load_seconds, warmup=0,
                         poll_interval=cfg.poll_interval, run_id=run_id + "b", drain_limit=1.0)
        loads_ended = time.monotonic()
        time.sleep(2 * cfg.settle)
        after_again = proc_fds(host.pid)
        # A cut-off load's channel may still hold its connection to the host: the harness's descriptor, not the
        # host's (as for the idle figure below), so both counts leave the harness's connections out.
        own_again = harness_connections(port)
        stats = fake.stats()
        # Then: do the descriptors come back once the host has been idle a while? Ours closes clients unused for
        # client_idle_timeout; flytekit's host is sampled the same way, bounded by the same time.
        # Both counts leave out the harness's own connections to the host (see harness_connections).
        baseline = None if idle["fds"] is None else idle["fds"] - idle["harness_connections"]
        idle_close = None if profile else wait_fds_back(
            host.pid, baseline, loads_ended, idle_close_timeout(cfg) + cfg.idle_close_margin, port)
        result.update({
            "idle": idle, "after": after, "rss_peak_mb": rss.peak,
            "fd_growth": _diff(after["fds"], idle["fds"]),
            "fd_growth_second_load": _diff(None if after_again is None else after_again - own_again,
                                           None if after["fds"] is None else after["fds"]
                                           - after["harness_connections"]),
            "harness_connections_after_second_load": own_again,
            "idle_close": idle_close,
            "fd_growth_after_idle": _diff(idle_close["fds"], baseline) if idle_close else None,
            "second_load": {"seconds": cfg.second_load_seconds, "creates_ok": again["creates_ok"],
                            "errors": again["errors"]},
            "remote_jobs": jobs_main, "service_requests": stats["requests"],
            "service_statuses": stats["statuses"],
            "orphaned_jobs": max(0, jobs_main - result["creates_ok"]),
            "deadline_errors": sum(v for k, v in result["errors"].items() if k.endswith("DEADLINE_EXCEEDED")),
            "capacity_jobs_per_s": round(result["ok_rpc_per_s"] / 4, 2),
            "fake_cpu_s": round(fake_cpu - fake_cpu_before, 2) if fake_cpu is not None and fake_cpu_before
            is not None else None,
            "fake_cpu_share": round((fake_cpu - fake_cpu_before) / result["wall_s"], 3) if fake_cpu is not None
            and fake_cpu_before is not None else None,
        })
        if prof is not None:
            result["profile"] = prof
        return result
    finally:
        if host is not None:
            host.stop()
            with contextlib.suppress(NameError):
                result["host_log"] = log_digest(host.tail(2_000_000))
        fake.proc.stop()


def log_digest(text: str, top: int = 6) -> list[list[Any]]:
    """The most frequent WARNING/ERROR lines of a host log (timestamps, pids and numbers blanked)."""
    import re

    counts: dict[str, int] = {}
    for line in text.splitlines():
        if " WARNING " not in line and " ERROR " not in line and "Traceback" not in line:
            continue
        key = re.sub(r"^\S+ \S+ ", "", line)
        key = re.sub(r"\d+", "N", key)[:200]
        counts[key] = counts.get(key, 0) + 1
    return [[k, v] for k, v in sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:top]]


def _diff(a: int | None, b: int | None) -> int | None:
    return a - b if a is not None and b is not None else None


def _signed(value: int | None) -> str:
    return "?" if value is None else f"{value:+d}"


def _idle_seconds(result: dict[str, Any]) -> str:
    idle_close = result.get("idle_close") or {}
    seconds = idle_close.get("seconds")
    return f"{seconds} s" if seconds is not None else f"> {idle_close.get('limit_s')} s (not back)"


def scenario_services(rig: Rig, cfg: Config, log: Callable[[str], None], names: list[str],
                      profile: bool) -> dict[str, Any]:
    cert = services.self_signed_cert(rig.workdir)
    out: dict[str, Any] = {"goal": GOALS["services"], "latency_s": cfg.service_latency,
                           "in_flight": cfg.service_in_flight, "seconds": cfg.service_seconds,
                           "poll_interval_s": cfg.poll_interval, "client_idle_timeout_s": idle_close_timeout(cfg),
                           "idle_close_margin_s": cfg.idle_close_margin, "cases": {}}
    for name in names:
        case = services.CASES_BY_NAME[name]
        kinds = ["ours"] + (["flytekit"] if case.theirs else [])
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        failures: dict[str, str] = {}
        for r in range(cfg.service_repeats):
            for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                if kind in failures:
                    continue
                try:
                    result = service_run(rig, case, kind, cfg, cert, f"s{r}{kind[0]}{name[:3]}{int(time.time())}")
                except Exception as err:  # a pairing that cannot run is reported, not fatal
                    failures[kind] = f"{type(err).__name__}: {err}"[:2000]
                    log(f"  {name:10s} {kind:9s} FAILED: {failures[kind][:300]}")
                    continue
                runs[kind].append(result)
                log(f"  {name:10s} {kind:9s} {result['ok_rpc_per_s']:8.1f} ok RPC/s  capacity "
                    f"{result['capacity_jobs_per_s']:7.2f} jobs/s  p99 Get {result['per_rpc']['GetTask']['p99_ms']}"
                    f" ms  errors {result['errors'] or 0}  orphans {result['orphaned_jobs']}  fds "
                    f"{result['fd_growth']:+d} then {result['fd_growth_second_load']:+d}, after idle "
                    f"{_signed(result['fd_growth_after_idle'])} in {_idle_seconds(result)}  rss peak "
                    f"{result['rss_peak_mb']} MB")
        out["cases"][name] = _service_case(case, runs, failures)
        entry = out["cases"][name]
        explainable = ("capacity", "zero_deadline_errors", "zero_orphans", "all_jobs_succeeded")
        if profile and cfg.profile_seconds and runs["ours"] and any(entry["checks"][k] is False for k in explainable):
            log(f"  {name}: goal missed, profiling our host under the same load")
            short = dataclasses.replace(cfg, service_seconds=cfg.profile_seconds, second_load_seconds=0.5)
            prof_run = service_run(rig, case, "ours", short, cert, f"prof{name[:3]}{int(time.time())}", profile=True)
            entry["profile_ours"] = prof_run.get("profile")
    return out


def _service_case(case: services.ServiceCase, runs: dict[str, list[dict[str, Any]]],
                  failures: dict[str, str]) -> dict[str, Any]:
    def pick(kind: str, fn: Callable[[dict[str, Any]], Any]) -> list[Any]:
        return [fn(r) for r in runs.get(kind, [])]

    table: dict[str, Any] = {}
    for kind, results in runs.items():
        if not results:
            continue
        table[kind] = {
            "ok_rpc_per_s": summary(pick(kind, lambda r: r["ok_rpc_per_s"])),
            "capacity_jobs_per_s": summary(pick(kind, lambda r: r["capacity_jobs_per_s"])),
            "jobs_per_s": summary(pick(kind, lambda r: r["jobs_per_s"])),
            "get_p99_ms": summary(pick(kind, lambda r: r["per_rpc"]["GetTask"]["p99_ms"])),
            "create_p99_ms": summary(pick(kind, lambda r: r["per_rpc"]["CreateTask"]["p99_ms"])),
            "deadline_errors": sum(pick(kind, lambda r: r["deadline_errors"])),
            "errors": _sum_errors(results),
            "orphaned_jobs": sum(pick(kind, lambda r: r["orphaned_jobs"])),
            "fd_growth": summary(pick(kind, lambda r: r["fd_growth"])),
            "fd_growth_second_load": summary(pick(kind, lambda r: r["fd_growth_second_load"])),
            # After the loads, once the host has been idle for the client idle timeout (+ a margin).
            "fd_growth_after_idle": summary(pick(kind, lambda r: r.get("fd_growth_after_idle"))),
            "fd_idle_close_s": summary(pick(kind, lambda r: (r.get("idle_close") or {}).get("seconds"))),
            "fd_not_back": sum(1 for r in results if (r.get("idle_close") or {}).get("fds") is not None
                               and r["idle_close"]["seconds"] is None),
            "fd_idle_limit_s": max(pick(kind, lambda r: (r.get("idle_close") or {}).get("limit_s") or 0), default=0),
            "rss_idle_mb": summary(pick(kind, lambda r: r["idle"]["rss_mb"])),
            "rss_peak_mb": summary(pick(kind, lambda r: r["rss_peak_mb"])),
            "jobs_not_succeeded": sum(pick(kind, lambda r: r["jobs_not_succeeded"])),
            "host_cpu_share": summary(pick(kind, lambda r: r.get("host_cpu_share"))),
            "host_cpu_ms_per_rpc": summary(pick(kind, lambda r: r.get("host_cpu_ms_per_rpc"))),
            "service_requests_per_s": summary(pick(kind, lambda r: r.get("service_requests_per_s"))),
            "fake_cpu_share": summary(pick(kind, lambda r: r.get("fake_cpu_share"))),
            "load_average": summary(pick(kind, lambda r: r.get("load_average"))),
            "repeats": len(results),
        }
    ratio = None
    if runs.get("ours") and runs.get("flytekit"):
        ratio = ratios(pick("ours", lambda r: r["capacity_jobs_per_s"]),
                       pick("flytekit", lambda r: r["capacity_jobs_per_s"]))
    ours = table.get("ours")
    checks = {
        "capacity": bool(ratio and ratio["median"] >= CAPACITY_GOAL[case.name]) if ratio else None,
        "zero_deadline_errors": bool(ours and ours["deadline_errors"] == 0),
        "zero_orphans": bool(ours and ours["orphaned_jobs"] == 0),
        # Judged once the host has been idle for the client idle timeout: keep-alive pools may hold connections
        # between bursts, but nothing may stay open after that.
        "no_fd_growth": bool(ours and (ours["fd_growth_after_idle"] or ours["fd_growth"])
                             and (ours["fd_growth_after_idle"] or ours["fd_growth"])["max"] <= 0),
        "no_fd_growth_on_second_load": bool(ours and ours["fd_growth_second_load"]
                                            and ours["fd_growth_second_load"]["max"] <= 0),
        "all_jobs_succeeded": bool(ours and ours["jobs_not_succeeded"] == 0),
    }
    return {
        "pairing": case.pairing, "their_task_type": case.their_task_type,
        "our_task_type": None, "capacity_goal": CAPACITY_GOAL[case.name],
        "table": table, "ratio_capacity_ours_flytekit": ratio, "checks": checks, "failures": failures,
        "met": all(v for v in checks.values() if v is not None) and bool(ours),
        "runs": runs,
    }


def scenario_memory(rig: Rig, cfg: Config, services_result: dict[str, Any] | None) -> dict[str, Any]:
    idle: dict[str, list[float | None]] = {"ours": [], "flytekit": []}
    for kind in ("ours", "flytekit"):
        proc, _port = rig.start(kind)
        try:
            wait_idle(proc.pid)
            idle[kind].append(proc_rss_mb(proc.pid))
        finally:
            proc.stop()
    # Every scenario-4 host was idle with all connectors loaded before its load started: more samples.
    for case in (services_result or {}).get("cases", {}).values():
        for kind, runs in case["runs"].items():
            idle[kind] += [r["idle"]["rss_mb"] for r in runs]
    out: dict[str, Any] = {"idle_rss_mb": {k: summary(v) for k, v in idle.items()},  # type: ignore[arg-type]
                           "ratio_idle_ours_flytekit": ratios(idle["ours"], idle["flytekit"])}
    if services_result:
        peaks: dict[str, dict[str, Any]] = {}
        for name, case in services_result["cases"].items():
            peaks[name] = {k: v["rss_peak_mb"] for k, v in case["table"].items()}
        out["under_load_peak_rss_mb"] = peaks
    return out


# ============================================================================================ scenario 5
def scenario_local(cfg: Config, log: Callable[[str], None], workdir: Path) -> dict[str, Any]:
    out_file = workdir / "local.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTECONNECTORS_")}
    env["FLYTE_SDK_LOGGING_LEVEL"] = "40"
    cmd = [sys.executable, str(LOCAL_BENCH), "--n", str(cfg.local_n), "--repeats", str(cfg.local_repeats),
           "--display", "off", "--json-out", str(out_file)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=str(workdir))
    if done.returncode != 0 or not out_file.exists():
        return {"goal": GOALS["local"], "error": (done.stderr or done.stdout)[-2000:], "met": False}
    data = json.loads(out_file.read_text())
    ratio = data.get("ratio_ours_to_flytekit", {})
    log(f"  local per-task overhead ms: {data.get('per_task_overhead_ms')}  ratio {ratio}")
    return {"goal": GOALS["local"], "command": " ".join(cmd[1:]), "result": data,
            "met": bool(data.get("goal_met"))}


# ============================================================================================ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flytekit-venv", type=Path, default=ROOT / ".nox" / "bench-flytekit")
    parser.add_argument("--quick", action="store_true", help="a few seconds per scenario (smoke test)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--services", default="", help="comma-separated subset of the services (scenario 4)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of scenarios 1-3")
    parser.add_argument("--startup-runs", type=int, default=2, help="start-ups per host per repeat")
    parser.add_argument("--throughput-seconds", type=float, default=6.0)
    parser.add_argument("--service-seconds", type=float, default=20.0)
    parser.add_argument("--service-repeats", type=int, default=2)
    parser.add_argument("--poll-interval", type=float, default=0.0,
                        help="seconds between GetTask calls of one execution in scenario 4 (0: capacity)")
    parser.add_argument("--local-n", type=int, default=5)
    parser.add_argument("--local-repeats", type=int, default=3)
    parser.add_argument("--profile-seconds", type=float, default=8.0,
                        help="py-spy our host for this long where a goal is missed (0: never)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default: benchmarks/results/<time>.json)")
    parser.add_argument("--workdir", type=Path, default=None, help="logs and scratch files (default: a temp dir)")
    parser.add_argument("--report", action="store_true", help="also regenerate docs/benchmarks.md")
    args = parser.parse_args(argv)
    cfg = make_config(args)
    only = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    names = [s for s in args.services.split(",") if s] or [c.name for c in services.CASES]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    workdir_ctx: Any = (contextlib.nullcontext(str(args.workdir)) if args.workdir
                        else tempfile.TemporaryDirectory(prefix="flyteconnectors-bench-"))
    started = time.time()
    with workdir_ctx as wd:
        workdir = Path(wd)
        workdir.mkdir(parents=True, exist_ok=True)
        rig = Rig(args.flytekit_venv.resolve(), workdir, log)
        result: dict[str, Any] = {
            "schema": 1,
            "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
            "quick": cfg.quick,
            "config": cfg.__dict__,
            "machine": machine(),
            "versions": rig.versions(),
            "goals": GOALS,
            "scenarios": {},
        }
        scenarios = result["scenarios"]
        profile = not args.no_profile and not cfg.quick
        for name in only:
            t0 = time.monotonic()
            load_before = round(os.getloadavg()[0], 2)
            log(f"scenario {name} (load average {load_before})")
            try:
                if name == "startup":
                    scenarios["startup"] = scenario_startup(rig, cfg, log)
                elif name in ("trivial", "blocking"):
                    if name in scenarios:
                        continue
                    which = tuple(s for s in ("trivial", "blocking") if s in only)
                    scenarios.update(scenario_throughput(rig, cfg, log, which, profile))
                elif name == "services":
                    scenarios["services"] = scenario_services(rig, cfg, log, names, profile)
                elif name == "local":
                    scenarios["local"] = scenario_local(cfg, log, workdir)
                elif name == "memory":
                    scenarios["memory"] = scenario_memory(rig, cfg, scenarios.get("services"))
            except Exception as err:
                log(f"  scenario {name} failed: {type(err).__name__}: {err}")
                scenarios[name] = {"error": f"{type(err).__name__}: {err}"[:4000], "met": False}
            if isinstance(scenarios.get(name), dict):
                scenarios[name]["load_average_1m"] = {"before": load_before, "after": round(os.getloadavg()[0], 2)}
                scenarios[name]["scenario_seconds"] = round(time.monotonic() - t0, 1)
            log(f"  ({time.monotonic() - t0:.0f}s)")
        result["duration_s"] = round(time.time() - started, 1)
    output = args.output or RESULTS / (dt.datetime.fromtimestamp(started, dt.timezone.utc)
                                       .strftime("%Y%m%dT%H%M%SZ") + ("-quick" if cfg.quick else "") + ".json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    print(output)
    if args.report:
        import report

        report.write(result, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
