"""`flyteconnectors serve` as a real process: SIGTERM drain, --workers, lazy SDK imports, `list`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flyteconnectors.core.cli import main
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import PropellerClient

TESTS = Path(__file__).parent
SERVE = [sys.executable, "-c", "from flyteconnectors.core.cli import main; main()", "serve"]
# Service SDKs the host must never import at start-up, plus other heavy libraries.
HEAVY = ("boto3", "botocore", "snowflake", "databricks", "google.cloud.bigquery", "openai", "flytekit",
         "pandas", "numpy", "pyarrow", "toy_heavy_sdk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_host(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
                **(env or {})}
    proc = subprocess.Popen([*SERVE, "--bind", "127.0.0.1", "--port", str(port), *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = agent_pb2_grpc.AgentMetadataServiceStub(channel)
        try:
            stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=20, wait_for_ready=True)
        except grpc.RpcError:
            proc.kill()
            raise AssertionError(f"host did not start: {proc.communicate()[1].decode()[-2000:]}") from None
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_sigterm_drains_finishes_in_flight_calls_and_exits(tmp_path, event_loop):
    proc, port = start_host("--module", "toy", "--metrics-port", "0", "--grace-period", "5",
                            "--event-loop", event_loop)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=15)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        template = builders.task_template("toy_job", {"steps": ["DONE"], "sleep": 1.5}, inputs={"x": int},
                                          outputs={"echo": int})
        in_flight = ThreadPoolExecutor(1).submit(PropellerClient(channel).create, template, {"x": 3},
                                                 ident=builders.identity(execution="drain1"))
        time.sleep(0.5)

        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()

        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as fresh, pytest.raises(grpc.RpcError) as refused:
            PropellerClient(fresh, timeout=2).list_agents()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert json.loads(in_flight.result(10))["t"] == "toy_job"  # the call in flight got its answer
        assert proc.wait(10) == 0
        assert time.monotonic() - sent < 4.5  # it left as soon as the in-flight call was done
        channel.close()
        log = proc.stderr.read().decode()
        assert "draining" in log and "drained" in log
        assert f"{event_loop} event loop" in log
    finally:
        stop(proc)


def test_event_loop_auto_uses_uvloop_when_installed_and_uvloop_requires_it(monkeypatch):
    import uvloop

    from flyteconnectors.core.host.app import loop_factory
    from flyteconnectors.core.host.settings import SettingsError

    assert loop_factory("asyncio") is None
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed (Windows, PyPy)
    assert loop_factory("auto") is None
    with pytest.raises(SettingsError, match="uvloop is not installed"):
        loop_factory("uvloop")


def test_workers_share_one_port_and_merge_their_metrics():
    metrics_port = free_port()
    proc, port = start_host("--module", "toy", "--workers", "2", "--metrics-port", str(metrics_port),
                            "--log-format", "json")
    try:
        children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == proc.pid]
        assert len(children) == 2
        template = builders.task_template("toy_echo", {"prefix": "-"}, inputs={"text": str}, outputs={"out": str})
        for i in range(6):  # fresh connections, so the kernel spreads them over the workers
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                assert PropellerClient(channel).execute_sync(template, {"text": str(i)}).phase == 3
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        served = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("flyteconnectors_requests_total{") and 'task_type="toy_echo"' in line)
        assert served == 6

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert not any(Path(f"/proc/{c.name}").exists() and _state(c) != "Z" for c in children)
    finally:
        stop(proc)


def _ppid(proc_dir: Path) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _state(proc_dir: Path) -> str:
    try:
        return (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def test_startup_imports_no_service_sdk_until_a_connector_is_used():
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        from flyteconnectors.core.host.app import build_host
        from flyteconnectors.core.host.settings import HostSettings
        from flyteconnectors.core.dispatcher import TaskRequest
        from flyteconnectors.core.testing import builders

        HEAVY = {HEAVY!r}
        def heavy():
            return sorted(m for m in HEAVY if m in sys.modules)

        async def main():
            # every installed connector package plus the toy modules
            host = build_host(HostSettings(bind="127.0.0.1", port=0, modules=["toy", "toy_lazy"], warm_up="off"))
            await host.start()
            at_start = heavy()
            served = len(host.dispatcher.registry.categories())
            await host.dispatcher.create(TaskRequest("toy_lazy", identity=builders.identity()))
            after_use = heavy()
            await host.stop(0)
            print(json.dumps({{"at_start": at_start, "after_use": after_use, "served": served}}))

        asyncio.run(main())
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])

    assert result["served"] >= 4
    assert result["at_start"] == []
    assert result["after_use"] == ["toy_heavy_sdk"]  # the toy SDK is imported on first use


def test_warm_up_imports_the_sdks_after_the_port_is_open():
    script = textwrap.dedent("""
        import asyncio, json, sys
        from flyteconnectors.core.host.app import build_host
        from flyteconnectors.core.host.settings import HostSettings

        async def main():
            host = build_host(HostSettings(bind="127.0.0.1", port=0, modules=["toy", "toy_lazy"]))
            await host.start()
            at_start = "toy_heavy_sdk" in sys.modules
            problems = await host.warm_up
            warmed = "toy_heavy_sdk" in sys.modules
            await host.stop(0)
            print(json.dumps({"at_start": at_start, "warmed": warmed, "problems": problems}))

        asyncio.run(main())
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"at_start": False, "warmed": True, "problems": []}


def test_list_shows_packages_task_types_versions_and_load_errors(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    runner = CliRunner()
    result = runner.invoke(main, ["list", "--connectors", "toy", "--module", "toy", "--module", "broken=no_such_mod"])

    assert result.exit_code == 1  # a package failed to load
    lines = result.output.splitlines()
    assert lines[0].startswith("toy (module toy): ok")
    assert any("toy_job" in line and "v0" in line and "async" in line and "Toy" in line for line in lines)
    assert any("toy_echo" in line and "sync" in line and "Echo" in line for line in lines)
    assert any(line.startswith("broken") and "NOT LOADED" in line and "no_such_mod" in line for line in lines)

    as_json = json.loads(runner.invoke(main, ["list", "--connectors", "toy", "--module", "toy", "--json"]).output)
    assert as_json == [{
        "package": "toy", "distribution": "module toy", "version": "", "requires_core": "", "loaded": True,
        "error": None, "connectors": [
            {"name": "Toy", "task_type": "toy_job", "task_version": 0, "sync": False, "secrets": []},
            {"name": "Echo", "task_type": "toy_echo", "task_version": 0, "sync": True, "secrets": []},
            {"name": "Toy with logs", "task_type": "toy_logs", "task_version": 0, "sync": False, "secrets": []},
        ],
    }]


def test_a_taken_port_fails_start_up_with_a_clear_exit_code(caplog):
    from flyteconnectors.core.host.app import EXIT_CANNOT_START, run
    from flyteconnectors.core.host.settings import HostSettings

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = run(HostSettings(bind="127.0.0.1", port=port, metrics_port=0, modules=["toy"]))
    assert code == EXIT_CANNOT_START
    assert f"cannot serve on 127.0.0.1:{port}" in caplog.text


def test_under_uvloop_the_first_service_connection_adds_no_descriptor_that_stays():
    import asyncio

    import uvloop

    from flyteconnectors.core.host.server import open_loop_reserve

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def scenario() -> tuple[int, int]:
        await open_loop_reserve()  # what Host.start does
        server = socket.create_server(("127.0.0.1", 0))  # not a loop server: that would open the reserve itself
        port = server.getsockname()[1]
        before = fds()
        _, writer = await asyncio.open_connection("127.0.0.1", port)  # a connector's first connection
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)
        after = fds()
        server.close()
        return before, after

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("counts descriptors in /proc")
    before, after = uvloop.run(scenario())
    assert after == before
