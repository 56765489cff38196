"""Start ``flyteconnectors serve`` with every installed connector, ask it what it serves, like Propeller does.

    python -m tools.host_smoke [--serve]

Without ``--serve`` the host is stopped after the check (exit 0 when every installed connector package loaded
and is announced by ListAgents); with it, the host keeps serving until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="keep the host running until Ctrl-C")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    import grpc

    from flyteconnectors.core.registry import Registry
    from flyteconnectors.core.testing.host import PropellerClient

    port = args.port or free_port()
    env = dict(os.environ, FLYTECONNECTORS_PORT=str(port), FLYTECONNECTORS_BIND="127.0.0.1")
    if not args.serve:
        env.setdefault("FLYTECONNECTORS_METRICS_PORT", "0")
    command = shutil.which("flyteconnectors", path=os.path.dirname(sys.executable)) or "flyteconnectors"
    host = subprocess.Popen([command, "serve"], env=env)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        agents = PropellerClient(channel).list_agents()
        installed = Registry.discover()
        print(f"flyteconnectors host on 127.0.0.1:{port} serves {len(agents)} connectors:")
        for agent in sorted(agents, key=lambda a: a.name):
            kinds = ", ".join(f"{c.name} v{c.version}" for c in agent.supported_task_categories)
            print(f"  {agent.name:<32} {'sync ' if agent.is_sync else 'async'}  {kinds}")
        served = {c.name for a in agents for c in a.supported_task_categories}
        expected = {k.task_type for entry in installed.packages.values() for k in entry.connectors}
        broken = [name for name, entry in installed.packages.items() if not entry.loaded]
        if broken or expected - served:
            print(f"host smoke FAILED: not loaded {broken}, not served {sorted(expected - served)}")
            return 1
        print(f"host smoke ok: {len(installed.packages)} connector packages, {len(served)} task types")
        if args.serve:
            print("serving until Ctrl-C")
            with contextlib.suppress(KeyboardInterrupt):
                host.wait()
        return 0
    finally:
        if host.poll() is None:
            host.send_signal(signal.SIGTERM)
            try:
                host.wait(15)
            except subprocess.TimeoutExpired:
                host.kill()


if __name__ == "__main__":
    sys.exit(main())
