"""Pytest fixtures shared by the local-execution tests (imported by the test modules)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flyteconnectors.core.dispatcher import Dispatcher
from flyteconnectors.core.local import LocalRunner, PollPolicy, set_local_runner
from flyteconnectors.core.registry import Registry, register_modules
from local_examples import inproc
from local_examples.toy_service import ToyFake

TESTS_DIR = Path(__file__).resolve().parent.parent
TOKEN = "toy-secret-token-123"


@pytest.fixture()
def toy_fake() -> Iterator[ToyFake]:
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    fake = ToyFake(cwd=str(TESTS_DIR), env={"PYTHONPATH": _pythonpath(), "PATH": path})
    with fake:
        yield fake
    fake.reset_state()


@pytest.fixture()
def runner(toy_fake: ToyFake, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRunner]:
    """A fresh process runner serving the toy package (pointed at the fake) and the in-memory connectors."""
    monkeypatch.setenv("FLYTECONNECTORS_TOY_ENDPOINT", toy_fake.url)
    monkeypatch.setenv("TOY_TOKEN", TOKEN)
    registry = Registry()
    register_modules(registry, "toy=local_examples.toy_service:CONNECTORS, inproc=local_examples.inproc")
    fresh = LocalRunner(Dispatcher(registry), PollPolicy(initial=0.005, cap=0.05))
    previous = set_local_runner(fresh)
    inproc.CALLS.clear()
    try:
        yield fresh
    finally:
        set_local_runner(previous)
        fresh.close()


def _pythonpath() -> str:
    return os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
