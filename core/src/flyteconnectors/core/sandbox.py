"""``flyteconnectors sandbox``: every installed connector, against its local fake, through both paths.

For each connector package that registers a sandbox spec (entry-point group ``flyteconnectors.sandbox``):

1. its fake starts on a free loopback port;
2. one host process starts with endpoint overrides and dummy secrets pointing at the fakes;
3. each case runs through the host with a Propeller-shaped client (CreateTask, GetTask until terminal), and
   one job per connector is cancelled while running (DeleteTask), checked in the fake's journal;
4. each example workflow runs locally with ``pyflyte run`` (in-process connectors, same fakes).

A table shows task type, path, final phase, duration and log link; the exit code is non-zero if anything
is not as expected. ``--keep`` leaves everything running and prints how to point Propeller or
``pyflyte run`` at it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from flyteconnectors.core.resource import Phase
from flyteconnectors.core.testing.fake import FakeService

GROUP = "flyteconnectors.sandbox"


@dataclass
class SandboxCase:
    """One job sent through the host."""

    title: str
    template: Any  # flyteidl TaskTemplate (built with flyteconnectors.core.testing.builders)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    expect: Phase = Phase.SUCCEEDED
    #: Steps scripted on the fake before the job is created (the fake's own vocabulary).
    script: Sequence[Any] | None = None
    #: Cancel the job while it runs (DeleteTask) instead of waiting for it; ``script`` should keep it running.
    cancel: bool = False
    sync: bool = False


@dataclass
class SandboxExample:
    """An example workflow run locally with ``pyflyte run``."""

    path: Path
    workflow: str
    args: Sequence[str] = ()


@dataclass
class SandboxSpec:
    """What a connector package contributes to the sandbox."""

    package: str
    fake: Callable[[], FakeService]
    #: Connector settings pointing at the started fake (become FLYTECONNECTORS_<PACKAGE>_<FIELD>).
    settings: Callable[[FakeService], Mapping[str, str]]
    secrets: Mapping[str, str] = field(default_factory=dict)
    cases: Callable[[FakeService], Sequence[SandboxCase]] = lambda fake: ()
    examples: Sequence[SandboxExample] = ()
    #: Extra environment for the host and local runs (e.g. dummy cloud credentials for an SDK's chain).
    env: Mapping[str, str] = field(default_factory=dict)
    #: How many jobs the fake received a cancel for (checks the DeleteTask case reached the service).
    cancelled: Callable[[FakeService], int] | None = None


@dataclass
class Outcome:
    package: str
    task_type: str
    path: str
    title: str
    phase: str
    ok: bool
    seconds: float
    link: str = ""
    note: str = ""


def examples_dir(module_file: str) -> Path | None:
    """``connectors/<name>/examples`` next to ``src/`` for a source checkout; None for a wheel install."""
    here = Path(module_file).resolve()
    for parent in here.parents:
        candidate = parent / "examples"
        if (parent / "src").is_dir() and candidate.is_dir():
            return candidate
    return None


def discover_specs(only: Sequence[str] | None = None) -> tuple[list[SandboxSpec], list[str]]:
    specs, problems = [], []
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        if only and ep.name not in only:
            continue
        try:
            factory = ep.load()
            specs.append(factory() if callable(factory) else factory)
        except Exception as err:
            problems.append(f"{ep.name}: cannot load its sandbox spec: {type(err).__name__}: {err}")
    return specs, problems


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env_for(specs: Sequence[SandboxSpec], fakes: Mapping[str, FakeService], secrets_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["FLYTECONNECTORS_SECRETS_DIR"] = str(secrets_dir)
    for spec in specs:
        prefix = f"FLYTECONNECTORS_{spec.package.upper().replace('-', '_')}_"
        for key, value in spec.settings(fakes[spec.package]).items():
            env[prefix + key.upper()] = str(value)
        for name, value in spec.secrets.items():
            (secrets_dir / name).write_text(value)
        env.update(spec.env)
    return env


class Sandbox:
    def __init__(self, specs: Sequence[SandboxSpec], *, say: Callable[[str], None] = print,
                 local: bool = True, host: bool = True, modules: str = "") -> None:
        self.specs = list(specs)
        self.say = say
        self.run_local = local
        self.run_host = host
        self.modules = modules
        self.fakes: dict[str, FakeService] = {}
        self.host_proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.outcomes: list[Outcome] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="flyteconnectors-sandbox-")
        self.env: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for spec in self.specs:
            fake = spec.fake()
            fake.serve()
            self.fakes[spec.package] = fake
            self.say(f"started the fake {spec.package} service at {fake.url}")
        secrets_dir = Path(self._tmp.name) / "secrets"
        secrets_dir.mkdir()
        self.env = _env_for(self.specs, self.fakes, secrets_dir)
        if self.modules:
            self.env["FLYTECONNECTORS_MODULES"] = self.modules
        if self.run_host:
            self._start_host()

    def _start_host(self) -> None:
        self.port = free_port()
        log = open(Path(self._tmp.name) / "host.log", "wb")  # noqa: SIM115 (lives as long as the host)
        cmd = [sys.executable, "-m", "flyteconnectors.core", "serve", "--port", str(self.port),
               "--metrics-port", "0"]
        self.host_proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.say(f"starting the connector host on 127.0.0.1:{self.port} (log: {log.name})")
        self._wait_for_host()

    def _wait_for_host(self, limit: float = 60.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.host_proc is not None and self.host_proc.poll() is not None:
                raise RuntimeError(f"the host exited early; see {self._tmp.name}/host.log:\n{self.host_log()[-2000:]}")
            with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
                try:
                    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if status.status == health_pb2.HealthCheckResponse.SERVING:
                        self.say("the host is serving")
                        return
                except grpc.RpcError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"the host did not become healthy within {limit:.0f}s")

    def host_log(self) -> str:
        path = Path(self._tmp.name) / "host.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.host_proc is not None and self.host_proc.poll() is None:
            self.host_proc.terminate()
            try:
                self.host_proc.wait(15)
            except subprocess.TimeoutExpired:
                self.host_proc.kill()
        for fake in self.fakes.values():
            fake.stop()
        self._tmp.cleanup()

    # ------------------------------------------------------------------ the host path
    def run_host_cases(self) -> None:
        import grpc

        from flyteconnectors.core.testing.host import PropellerClient

        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        client = PropellerClient(channel, timeout=10.0)
        served = {t.name for a in client.list_agents() for t in a.supported_task_categories}
        for spec in self.specs:
            fake = self.fakes[spec.package]
            for case in spec.cases(fake):
                self.outcomes.append(self._host_case(client, spec, fake, case, served))
        channel.close()

    def _host_case(self, client: Any, spec: SandboxSpec, fake: FakeService, case: SandboxCase,
                   served: set[str]) -> Outcome:
        import grpc

        template = case.template
        task_type = template.type
        started = time.monotonic()
        path = "host (cancel)" if case.cancel else "host"
        if task_type not in served:
            return Outcome(spec.package, task_type, path, case.title, "-", False, 0.0,
                           note="the host does not list this task type (see `flyteconnectors list`)")
        try:
            if case.script:
                fake.script_next_job(*case.script)
            from flyteconnectors.core.testing import builders

            ident = builders.identity(f"sbx{int(time.time() * 1000) % 10**9}", node_id=f"n{len(self.outcomes)}")
            if case.sync:
                resource = client.execute_sync(template, case.inputs, ident=ident)
            elif case.cancel:
                before = spec.cancelled(fake) if spec.cancelled else 0
                meta = client.create(template, case.inputs, ident=ident)
                resource = client.get(template, meta)
                client.delete(template, meta)
                after = spec.cancelled(fake) if spec.cancelled else before + 1
                ok = after == before + 1 and resource.phase not in PropellerClient_TERMINAL
                link = resource.log_links[0].uri if resource.log_links else ""
                return Outcome(spec.package, task_type, path, case.title, "CANCELLED" if ok else "NOT CANCELLED",
                               ok, time.monotonic() - started, link,
                               "" if ok else "DeleteTask did not reach the service")
            else:
                meta = client.create(template, case.inputs, ident=ident)
                resource, _ = client.poll(template, meta, interval=0.05, limit=120)
        except grpc.RpcError as err:
            return Outcome(spec.package, task_type, path, case.title, f"gRPC {err.code().name}", False,
                           time.monotonic() - started, note=str(err.details())[:200])
        except Exception as err:
            return Outcome(spec.package, task_type, path, case.title, "ERROR", False, time.monotonic() - started,
                           note=f"{type(err).__name__}: {err}"[:200])
        phase = Phase(resource.phase)
        link = resource.log_links[0].uri if resource.log_links else ""
        ok = phase is case.expect
        note = "" if ok else f"expected {case.expect.name}: {resource.message[:200]}"
        return Outcome(spec.package, task_type, path, case.title, phase.name, ok, time.monotonic() - started, link,
                       note)

    # ------------------------------------------------------------------ the local path
    def run_local_examples(self, parallel: int = 2) -> None:
        jobs = [(spec, example) for spec in self.specs for example in spec.examples]
        if not jobs:
            return
        self.say(f"running {len(jobs)} example workflow(s) locally with pyflyte run")
        with ThreadPoolExecutor(parallel) as pool:
            for outcome in pool.map(lambda job: self._local(*job), jobs):
                self.outcomes.append(outcome)

    def _local(self, spec: SandboxSpec, example: SandboxExample) -> Outcome:
        pyflyte = Path(sys.executable).with_name("pyflyte")
        cmd = [str(pyflyte) if pyflyte.exists() else "pyflyte", "run", str(example.path), example.workflow,
               *example.args]
        started = time.monotonic()
        env = dict(self.env)
        env.setdefault("FLYTE_SDK_LOGGING_LEVEL", "40")
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                                  cwd=example.path.parent)
        except (OSError, subprocess.TimeoutExpired) as err:
            return Outcome(spec.package, example.workflow, "local", example.path.name, "ERROR", False,
                           time.monotonic() - started, note=str(err)[:200])
        ok = done.returncode == 0
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return Outcome(spec.package, example.workflow, "local (pyflyte run)", example.path.name,
                       "SUCCEEDED" if ok else "FAILED", ok, time.monotonic() - started,
                       note="" if ok else " | ".join(tail)[:300])


PropellerClient_TERMINAL = {int(Phase.SUCCEEDED), int(Phase.FAILED), int(Phase.ABORTED), int(Phase.RETRYABLE_FAILED)}


def render(outcomes: Sequence[Outcome], console: Any) -> None:
    from rich.table import Table

    table = Table(title="flyteconnectors sandbox", show_lines=False)
    for column in ("connector", "task type / workflow", "what ran", "path", "final phase", "seconds", "log link"):
        table.add_column(column)
    for o in outcomes:
        style = "green" if o.ok else "red"
        phase = f"[{style}]{o.phase}[/{style}]" + (f"\n[dim]{o.note}[/dim]" if o.note else "")
        table.add_row(o.package, o.task_type, o.title, o.path, phase, f"{o.seconds:.2f}", o.link or "-")
    console.print(table)


def example_spec() -> SandboxSpec:
    """The core's own example connector (used when no connector package is installed)."""
    from flyteconnectors.core.testing import builders
    from flyteconnectors.core.testing.example import ExampleFake

    def cases(fake: FakeService) -> list[SandboxCase]:
        job = builders.task_template("example-job", {"payload": "hello"}, outputs={"result": str})
        echo = builders.task_template("example-echo", {"prefix": "> "}, inputs={"text": str}, outputs={"out": str})
        return [
            SandboxCase("a job that succeeds", job),
            SandboxCase("a job that fails", job, expect=Phase.FAILED, script=("RUNNING", "FAILED:disk full")),
            SandboxCase("a running job, cancelled", job, script=("RUNNING",), cancel=True),
            SandboxCase("a sync request", echo, inputs={"text": "hi"}, sync=True),
        ]

    return SandboxSpec(
        package="example",
        fake=ExampleFake,
        settings=lambda fake: {"endpoint": fake.url},
        secrets={"example_token": "sandbox-dummy-token"},
        cases=cases,
        cancelled=lambda fake: sum(j["cancelled"] for j in fake.jobs.values()),  # type: ignore[attr-defined]
    )
