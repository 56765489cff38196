"""``flyteconnectors``: serve the host, list connectors, run a fake."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from flyteconnectors.core.host.settings import (
    CONFIG_ENV,
    OPTIONS,
    OPTIONS_BY_KEY,
    HostSettings,
    SettingsError,
    load_settings,
)

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flyteconnectors-core")
def main() -> None:
    """flyteconnectors: run Flyte connectors for hosted services."""


def _settings_flags(*keys: str) -> Callable[[F], F]:
    """Click options generated from the host settings table (host/settings.py), so flags, environment
    variables and config-file keys stay one documented set. Precedence is resolved by load_settings."""

    def decorate(fn: F) -> F:
        for option in reversed([OPTIONS_BY_KEY[k] for k in keys]):
            if option.flag is None:
                continue
            decls = [option.flag, *(["--host"] if option.key == "bind" else []), option.key]
            kwargs: dict[str, Any] = {"default": None, "help": f"{option.help} [env: {option.env_name}]"}
            if option.kind == "int":
                kwargs["type"] = click.INT
            elif option.kind == "float":
                kwargs["type"] = click.FLOAT
            elif option.kind == "choice":
                kwargs["type"] = click.Choice(option.choices, case_sensitive=False)
            elif option.kind == "list":
                kwargs["multiple"] = True
            fn = click.option(*decls, **kwargs)(fn)
        return click.option(
            "--config", "config_file", default=None, type=click.Path(dir_okay=False),
            help=f"TOML config file (top-level keys as the flags, [connectors.<package>] tables). "
            f"[env: {CONFIG_ENV}]",
        )(fn)

    return decorate


def _load(config_file: str | None, flags: dict[str, Any]) -> HostSettings:
    try:
        return load_settings(flags, config_file=config_file)
    except SettingsError as err:
        raise click.ClickException(str(err)) from None


@main.command()
@_settings_flags(*(o.key for o in OPTIONS))
@click.option("--print-config", is_flag=True, help="Print the resolved settings (secrets masked) and exit.")
def serve(config_file: str | None, print_config: bool, **flags: Any) -> None:
    """Serve the installed connectors over Flyte's connector gRPC services.

    Every option can also be set by an environment variable or the config file; see
    flyteconnectors/core/host/settings.py for the full table.
    """
    settings = _load(config_file, flags)
    if print_config:
        import json

        click.echo(json.dumps(settings.public_dict(), indent=2))
        return
    from flyteconnectors.core.host.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    from flyteconnectors.core.host.app import loop_factory

    try:
        settings.tls_material()
        settings.keys()
        loop_factory(settings.event_loop)
    except SettingsError as err:
        raise click.ClickException(str(err)) from None
    if settings.workers > 1:
        from flyteconnectors.core.host.workers import run_workers

        sys.exit(run_workers(settings))
    from flyteconnectors.core.host.app import run

    sys.exit(run(settings))


@main.command("list")
@_settings_flags("enabled", "modules")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def list_(config_file: str | None, as_json: bool, **flags: Any) -> None:
    """Show connector packages, their task types and versions, and whether they loaded.

    Exits 1 when a package failed to load.
    """
    import logging

    from flyteconnectors.core.host.app import build_registry

    settings = _load(config_file, flags)
    quiet = logging.getLogger("flyteconnectors")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the listing itself shows the load errors
    try:
        registry = build_registry(settings)
    finally:
        quiet.setLevel(level)
    failed = any(not entry.loaded for entry in registry.packages.values())
    if as_json:
        import json

        click.echo(json.dumps([
            {
                "package": entry.package,
                "distribution": entry.distribution,
                "version": entry.version,
                "requires_core": entry.requires_core,
                "loaded": entry.loaded,
                "error": entry.error,
                "connectors": [
                    {"name": k.name, "task_type": k.task_type, "task_version": k.task_version,
                     "sync": k.is_sync, "secrets": list(k.secret_names)}
                    for k in entry.connectors
                ],
            }
            for entry in registry.packages.values()
        ], indent=2))
        sys.exit(1 if failed else 0)
    for entry in registry.packages.values():
        status = click.style("ok", fg="green") if entry.loaded else click.style(f"NOT LOADED: {entry.error}", fg="red")
        origin = " ".join(p for p in (entry.distribution, entry.version) if p)
        click.echo(f"{entry.package}" + (f" ({origin})" if origin else "") + f": {status}")
        for klass in entry.connectors:
            mode = "sync " if klass.is_sync else "async"
            click.echo(f"  {klass.task_type:<32} v{klass.task_version}  {mode}  {klass.name}")
            if klass.secret_names:
                click.echo(f"  {'':<32}     secrets: {', '.join(klass.secret_names)}")
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


@main.command()
@click.option("--keep", is_flag=True, help="Leave the host and fakes running and print how to use them.")
@click.option("--only", multiple=True, help="Run only these connector packages (repeatable).")
@click.option("--no-local", is_flag=True, help="Skip the local `pyflyte run` path.")
@click.option("--example/--no-example", default=None,
              help="Include the core's example connector (default: only when no connector package is installed).")
def sandbox(keep: bool, only: tuple[str, ...], no_local: bool, example: bool | None) -> None:
    """Run every installed connector against its local fake, locally and through the host."""
    import time

    from rich.console import Console

    from flyteconnectors.core.sandbox import Sandbox, discover_specs, example_spec, render

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    say = console.print
    started = time.monotonic()
    specs, problems = discover_specs(only or None)
    for problem in problems:
        say(f"[red]{problem}[/red]")
    modules = ""
    if example or (example is None and not specs):
        specs.insert(0, example_spec())
        modules = "example=flyteconnectors.core.testing.example"
    if not specs:
        raise click.ClickException("no connector package with a sandbox spec is installed")
    say(f"sandbox: {len(specs)} connector package(s): {', '.join(s.package for s in specs)}")
    box = Sandbox(specs, say=say, local=not no_local, modules=modules)
    try:
        box.start()
        say("running each connector's jobs through the host, as FlytePropeller would")
        box.run_host_cases()
        if not no_local:
            box.run_local_examples()
        render(box.outcomes, console)
        failed = [o for o in box.outcomes if not o.ok] or problems
        elapsed = time.monotonic() - started
        if failed:
            say(f"[red]{len(failed)} of {len(box.outcomes)} checks did not go as expected[/red] ({elapsed:.0f}s)")
        else:
            say(f"[green]all {len(box.outcomes)} checks passed[/green] in {elapsed:.0f}s")
        if keep:
            say(f"\nThe host is serving on 127.0.0.1:{box.port}. Point FlytePropeller at it with:\n"
                "  connector-service:\n    defaultConnector:\n"
                f"      endpoint: dns:///127.0.0.1:{box.port}\n      insecure: true\n"
                "or run workflows locally with these environment variables:")
            for key, value in sorted(box.env.items()):
                if key.startswith("FLYTECONNECTORS_"):
                    say(f"  export {key}={value}")
            say("Press Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    finally:
        box.stop()
    sys.exit(1 if failed else 0)
