from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from flyteconnectors.core.dispatcher import DispatcherOptions, RetryPolicy
from flyteconnectors.core.testing.host import HostThread, PropellerClient
from flyteconnectors.openai.connector import CONNECTORS
from flyteconnectors.openai.fake import OpenAIFake

API_KEY = "sk-test-0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_ambient_openai_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads these when an argument is None; tests must see only what they set.
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "AZURE_OPENAI_", "FLYTECONNECTORS_OPENAI_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def served_fake() -> Iterator[OpenAIFake]:
    with OpenAIFake() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def fake(served_fake: OpenAIFake) -> Iterator[OpenAIFake]:
    served_fake.reset()
    served_fake.api_key = None
    yield served_fake
    served_fake.reset()


def make_host(fake: OpenAIFake, *, settings: dict[str, Any] | None = None,
              secrets: dict[str, str] | None = None) -> HostThread:
    return HostThread(
        CONNECTORS,
        package="openai",
        settings={"openai": {"base_url": f"{fake.url}/v1", **(settings or {})}},
        secrets={"openai_api_key": API_KEY} if secrets is None else secrets,
        options=DispatcherOptions(retry=RetryPolicy(attempts=4, base=0.01, cap=0.05)),
    )


@pytest.fixture
def host(fake: OpenAIFake) -> Iterator[HostThread]:
    with make_host(fake) as running:
        yield running


@pytest.fixture
def propeller(host: HostThread) -> PropellerClient:
    return PropellerClient(host.channel)  # type: ignore[arg-type]
