"""The boto3 client's connection pool is as large as the package's thread pool: no connection is discarded."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import CREDENTIALS, TRAINING_INPUTS, fast_retries, settings, training_task

from flyteconnectors.core import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient
from flyteconnectors.sagemaker import _aws
from flyteconnectors.sagemaker.connector import CONNECTORS
from flyteconnectors.sagemaker.fake import SageMakerFake


@pytest.mark.parametrize("threads", [4, 24])
def test_every_thread_keeps_its_connection_when_all_poll_at_once(fake: SageMakerFake, threads: int,
                                                                 caplog: pytest.LogCaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch):
    built: list[Any] = []
    make_client = _aws.make_client
    monkeypatch.setattr(_aws, "make_client", lambda *a, **kw: built.append(make_client(*a, **kw)) or built[-1])
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    with HostThread(CONNECTORS, settings={"sagemaker": settings(fake, executor_threads=threads)}, secrets=CREDENTIALS,
                    options=fast_retries(), package="sagemaker") as host:
        propeller = PropellerClient(host.channel)
        task = training_task()
        jobs = [propeller.create(task, TRAINING_INPUTS, ident=builders.identity(execution=f"pool{i}"))
                for i in range(threads)]
        fake.set_latency(0.1)  # every thread's request is open at the same time
        with ThreadPoolExecutor(threads) as pool:
            answers = list(pool.map(lambda meta: propeller.get(task, meta), jobs * 2))

    assert all(a.phase not in (Phase.FAILED, Phase.RETRYABLE_FAILED) for a in answers), answers[0].message
    assert [c.meta.config.max_pool_connections for c in built] == [threads]
    discarded = [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()]
    assert not discarded, f"{len(discarded)} connections opened and thrown away: {discarded[0]}"
