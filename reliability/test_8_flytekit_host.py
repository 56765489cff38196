"""For comparison: flytekit's connector host (``pyflyte serve connector`` with its connector plugins), fuzzed
the same way on the Flyte 1 RPCs. Runs in the full run when a flytekit environment is found (the one
``nox -s bench`` builds, or ``RELIABILITY_FLYTEKIT_PYTHON``); it reports figures and asserts nothing about
flytekit. Its server binds every interface, so it is started through a shim that binds 127.0.0.1 instead."""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc
from relsuite import config, fuzz
from relsuite.hostproc import HostProcess, clean_env

from flyteconnectors.core.testing import builders

SECTION = "flytekit"
DEFAULT = Path(__file__).resolve().parents[1] / ".nox" / "bench-flytekit" / "bin" / "python"
SHIM = """
import grpc.aio._server as s, prometheus_client as p
add = s.Server.add_insecure_port
s.Server.add_insecure_port = lambda self, address: add(self, address.replace("[::]", "127.0.0.1"))
http = p.start_http_server
p.start_http_server = lambda port, addr="0.0.0.0", *a, **k: http(port, "127.0.0.1", *a, **k)
import sys
from flytekit.clis.sdk_in_container.pyflyte import main
sys.argv = ["pyflyte", *sys.argv[1:]]
main()
"""


def _python() -> str | None:
    given = os.environ.get("RELIABILITY_FLYTEKIT_PYTHON")
    if given:
        return given
    return str(DEFAULT) if DEFAULT.exists() else None


@pytest.mark.skipif(not (config.is_full() or os.environ.get("RELIABILITY_FLYTEKIT")),
                    reason="the flytekit comparison runs in the full run (or with RELIABILITY_FLYTEKIT=1)")
def test_flytekit_host_under_the_same_fuzzer(lab, sizes, results):
    python = _python()
    if python is None:
        pytest.skip("no flytekit environment (run `nox -s bench` once, or set RELIABILITY_FLYTEKIT_PYTHON)")
    section = results.section(SECTION)
    host = HostProcess("flytekit", lab.logdir, clean_env({"PYTHONUNBUFFERED": "1"}),
                       ["serve", "connector", "--port", "{port}", "--prometheus_port", str(_free())],
                       command=[python, "-c", SHIM])
    lab.hosts.append(host)
    host.start(timeout=120)
    try:
        with host.channel() as channel:
            agents = agent_pb2_grpc.AgentMetadataServiceStub(channel).ListAgents(agent_pb2.ListAgentsRequest(),
                                                                                timeout=10).agents
        types = sorted({(c.name, c.version, a.is_sync) for a in agents for c in a.supported_task_categories})
        marker = os.path.join(tempfile.mkdtemp(prefix="reliability-flytekit-pickle-"), "unpickled")
        seeds = fuzz.Seeds(types, {}, {}, marker)
        per_rpc: dict[str, Any] = {}
        tracebacks = 0
        count = max(100, sizes.fuzz_per_rpc // 10)
        start = time.monotonic()
        channel = host.channel(**{"grpc.max_send_message_length": -1})
        sender = fuzz.Sender(channel, _Null())
        for rpc in [r for r in fuzz.rpcs() if not r.service.startswith("flyteidl2")]:
            valid = [builders.create_request(builders.task_template(n, {}), {}).SerializeToString()
                     for n, _v, s in types if not s][:5] if rpc.method == "CreateTask" else []
            tally = fuzz.fuzz_rpc(sender, rpc, fuzz.strategy_for(rpc, seeds, valid), count,
                                  fanout=sizes.fuzz_fanout)
            per_rpc[rpc.name] = tally.as_dict()
            tracebacks += sum(1 for p in tally.problems + tally.undecodable_problems if fuzz.TRACEBACK.search(p))
        unpickled = fuzz.pickle_probe(sender, seeds, os.path.dirname(marker))
        channel.close()
        alive = host.alive()
    finally:
        host.stop(10)
    unclear = sum(t["problems"] + t["undecodable_problems"] for t in per_rpc.values())
    sent = sum(t["sent"] for t in per_rpc.values())
    codes: Counter[str] = Counter()
    for t in per_rpc.values():
        codes.update(t["outcomes"])
        codes.update(t["undecodable_outcomes"])
    section.update({
        "task_types": [n for n, _v, _s in types],
        "requests": sent,
        "unclear": unclear,
        "with_traceback": tracebacks,
        "pickle_executed": os.path.exists(marker) or bool(unpickled),
        "task_types_that_unpickled_resource_meta": unpickled,
        "alive": alive,
        "outcomes": dict(codes.most_common()),
        "per_rpc": per_rpc,
        "seconds": round(time.monotonic() - start, 1),
        "headline": f"{unclear:,} of {sent:,} malformed requests answered unclearly ({tracebacks:,} with a Python "
                    f"traceback); a pickle sent as resource_meta was executed for {len(unpickled)} of "
                    f"{sum(1 for t in types if not t[2])} async task types",
    })
    section["lines"] = [
        f"`pyflyte serve connector` (flytekit {_version(python)}) serving {len(types)} task types, fuzzed on the "
        f"{len(per_rpc)} Flyte 1 RPCs with {count:,} requests each (no valid job handles to mutate, so fewer "
        "requests reach a connector than on our host). Figures only: the suite asserts nothing about flytekit.",
        "",
        "| RPC | requests | answers | unclear |",
        "|---|---|---|---|",
        *[f"| {name} | {t['sent']:,} | {_short(t)} | {t['problems'] + t['undecodable_problems']} |"
          for name, t in per_rpc.items()],
        "",
        f"A pickle sent as resource_meta (GetTask and DeleteTask, one per async task type) was **executed** for: "
        f"{', '.join(unpickled) or 'none'}. Samples of unclear answers:",
        "",
        *[f"- `{' '.join(p.split())[:160]}`" for t in per_rpc.values() for p in t["problem_samples"][:1]],
        "",
    ]


def _short(t: dict[str, Any]) -> str:
    merged: Counter[str] = Counter(t["outcomes"])
    merged.update(t["undecodable_outcomes"])
    return ", ".join(f"{k} {v}" for k, v in merged.most_common(4))


def _version(python: str) -> str:
    import subprocess

    out = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('flytekit'))"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or "?"


def _free() -> int:
    from relsuite.hostproc import free_port

    return free_port()


class _Null:
    def scan(self, *_: Any) -> None:
        pass

    def scan_resource(self, *_: Any) -> None:
        pass
