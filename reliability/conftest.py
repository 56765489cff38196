"""Shared fixtures of the reliability and security suite.

One session-wide lab: every installed connector's fake on 127.0.0.1, secret files whose values carry a canary,
and host processes (``flyteconnectors serve``) started from it. Each check adds its figures to the run's results
(``reliability/results/<mode>.json``); ``python -m relsuite.report`` turns the full run's into docs/reliability.md.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from relsuite import config  # noqa: E402
from relsuite.hostproc import HostProcess  # noqa: E402
from relsuite.jobs import Job, Propeller  # noqa: E402
from relsuite.lab import Lab  # noqa: E402
from relsuite.results import Results  # noqa: E402

_RESULTS = Results(config.mode())
_LAB: Lab | None = None


@pytest.fixture(scope="session")
def sizes() -> config.Sizes:
    return config.sizes()


@pytest.fixture(scope="session")
def results() -> Results:
    return _RESULTS


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    global _LAB
    workdir = os.environ.get("RELIABILITY_WORKDIR")
    with Lab(Path(workdir) if workdir else None) as started:
        _LAB = started
        yield started


#: Flags of the spare replicas (the drain check needs them; harmless for the others).
SPARE_FLAGS = ("--drain-delay", "1", "--grace-period", "10")
_SPARES: list[HostProcess] = []


@pytest.fixture(scope="session")
def main_host(lab: Lab) -> Iterator[HostProcess]:
    """The host most checks talk to (every connector, warmed up). Two spare replicas for the checks that kill one
    start and warm up at the same time, which is cheaper than one after another."""
    host = lab.host("main", start=False)
    spares = [lab.host(f"spare-{i}", *SPARE_FLAGS, start=False) for i in (1, 2)]
    with ThreadPoolExecutor(3) as pool:
        cold = list(pool.map(lambda h: warm_up(lab, h.start()), [host, *spares]))
    _RESULTS.section("cold_start").update({
        "hosts_started_together": 3,
        "ready_seconds": [h.ready_after for h in (host, *spares)],
        "first_call_seconds": cold[0],
        "slowest_first_call_seconds": max(max(c.values()) for c in cold),
    })
    _SPARES.extend(spares)
    yield host
    for spare in spares:
        spare.stop(10)
    host.stop(15)


@pytest.fixture
def spare_host(main_host: HostProcess) -> HostProcess:
    """A warm replica nobody else has used; the check may kill it."""
    if not _SPARES:
        pytest.fail("no spare replica left; a check took more than the two started")
    return _SPARES.pop(0)


def warm_up(lab: Lab, host: HostProcess) -> dict[str, float]:
    """One job per connector, one at a time: every service SDK imported before the measured part starts.

    `flyteconnectors serve` imports a connector's SDK on its first call, inside that call's deadline; on a busy
    machine that can take longer than Propeller's 10 s, so the warm-up allows 60 s. Returns each first call's
    seconds (the cold-start figures).
    """
    seconds = {}
    with host.channel() as channel:
        client = Propeller([channel], lab.recorder, timeout=60)
        for profile in lab.profiles:
            fake = lab.fakes[profile.package]
            case = profile.job(fake)
            job = Job(profile, case, execution=f"warm{profile.package}{host.port}")
            start = time.monotonic()
            client.create(case.template, case.inputs, job.identity())
            seconds[profile.package] = round(time.monotonic() - start, 2)
            for extra in profile.extra_cases(fake):
                if extra.sync:
                    start = time.monotonic()
                    client.execute_sync(extra.template, extra.inputs, job.identity())
                    seconds[extra.template.type] = round(time.monotonic() - start, 2)
    return seconds


def section_of(item: pytest.Item) -> str:
    return str(getattr(item.module, "SECTION", item.module.__name__))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        state = report.outcome
        if report.when == "setup" and report.outcome == "failed":
            state = "error"
        elif report.when == "setup" and report.outcome == "skipped" and not hasattr(report, "wasxfail"):
            state = "skipped"
        elif hasattr(report, "wasxfail"):
            state = "xfailed (known bug)" if report.outcome == "skipped" else "XPASS"
        _RESULTS.set_status(section_of(item), item.name, state, report.duration)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _RESULTS.sections:
        return
    environment: dict[str, Any] = {}
    if _LAB is not None:
        environment = {"connectors": [p.package for p in _LAB.profiles], "skipped": _LAB.skipped}
    try:
        from importlib.metadata import version

        environment["versions"] = {name: version(name) for name in ("flyteconnectors-core", "grpcio", "hypothesis")}
    except Exception:
        pass
    out = os.environ.get("RELIABILITY_RESULTS")
    path = _RESULTS.write(config.sizes(), environment, Path(out) if out else None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"reliability results ({config.mode()} run): {path}")


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 2)
