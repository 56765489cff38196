"""``flyteconnectors``: serve the host, list connectors, run a fake."""

from __future__ import annotations

import contextlib
import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flyteconnectors-core")
def main() -> None:
    """flyteconnectors: run Flyte connectors for hosted services."""


@main.command()
@click.option("--port", type=int, default=8000, envvar="FLYTECONNECTORS_PORT", show_default=True)
@click.option("--host", "bind", default="[::]", envvar="FLYTECONNECTORS_BIND", show_default=True)
@click.option("--connectors", "enabled", default="", envvar="FLYTECONNECTORS_ENABLED",
              help="Comma-separated packages to enable (default: every installed one).")
def serve(port: int, bind: str, enabled: str) -> None:
    """Serve the installed connectors over Flyte's connector gRPC services."""
    import asyncio

    from flyteconnectors.core.dispatcher import Dispatcher
    from flyteconnectors.core.host.server import Host, ServerOptions, enabled_set
    from flyteconnectors.core.registry import Registry

    registry = Registry.discover(enabled_set(enabled.split(",")))
    host = Host(Dispatcher(registry), ServerOptions(host=bind, port=port))

    async def run() -> None:
        await host.start()
        click.echo(f"flyteconnectors host listening on {bind}:{host.port}", err=True)
        await host.wait()

    asyncio.run(run())


@main.command("list")
def list_() -> None:
    """Show installed connector packages, their task types and whether they loaded."""
    from flyteconnectors.core.registry import Registry

    registry = Registry.discover()
    failed = False
    for entry in registry.packages.values():
        status = "ok" if entry.loaded else f"NOT LOADED: {entry.error}"
        failed = failed or not entry.loaded
        click.echo(f"{entry.package} ({entry.distribution} {entry.version}): {status}")
        for klass in entry.connectors:
            mode = "sync" if klass.is_sync else "async"
            click.echo(f"  {klass.task_type} v{klass.task_version}  {mode}  {klass.name}")
    if not registry.packages:
        click.echo("no connector packages installed")
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("name")
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option("--port-file", type=click.Path(dir_okay=False), default=None,
              help="Write the chosen port here (atomically) once serving.")
def fake(name: str, port: int, port_file: str | None) -> None:
    """Run the local fake of a service on 127.0.0.1 and print its endpoint."""
    import os
    import signal
    import threading

    from flyteconnectors.core.testing.fake import load_fake

    service = load_fake(name)()
    service.serve("127.0.0.1", port)
    if port_file:
        tmp = f"{port_file}.tmp"
        with open(tmp, "w") as fh:
            fh.write(str(service.port))
        os.replace(tmp, port_file)
    click.echo(f"fake {name} serving at {service.url}  (control API: {service.url}/_fake/requests)", err=False)
    sys.stdout.flush()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    service.stop()
