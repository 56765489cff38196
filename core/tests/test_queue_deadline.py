"""A blocking call that waited in its package's thread pool until its deadline passed is never started.

Propeller gives up on a CreateTask at its deadline; a create that starts after that starts a remote job nobody
will ever poll or cancel (an orphan). So the thread that finally picks the call up checks the deadline first.
"""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest

from flyteconnectors.core import AsyncConnector, CallContext, JobMeta, Resource, TaskConfig, TaskContext, metrics
from flyteconnectors.core.dispatcher import Dispatcher, TaskRequest
from flyteconnectors.core.errors import DeadlineTooShort, TransientServiceError
from flyteconnectors.core.host.services_v1 import status_for
from flyteconnectors.core.host.wire_v1 import request_from_template
from flyteconnectors.core.registry import Registry
from flyteconnectors.core.testing import builders

PACKAGE = "queuetest"


class Cfg(TaskConfig):
    hold: bool = False


class Meta(JobMeta):
    job_id: str


class OneThreadService(AsyncConnector[Cfg, Meta]):
    """A blocking SDK in plain ``def``; ``started`` is what reached the (pretend) service."""

    name = "One thread"
    task_type = "queue-deadline"
    started: list[str] = []
    release = threading.Event()

    def create(self, task: TaskContext[Cfg]) -> Meta:
        type(self).started.append(task.identity.execution)
        if task.config.hold:
            type(self).release.wait(5)
        return Meta(job_id=task.idempotency_key)

    def get(self, job: Meta, ctx: CallContext) -> Resource:
        return Resource.succeeded()

    def delete(self, job: Meta, ctx: CallContext) -> None:
        return None


@pytest.fixture
def dispatcher() -> Dispatcher:
    OneThreadService.started = []
    OneThreadService.release = threading.Event()
    registry = Registry(lambda package: {"executor_threads": 1})
    registry.register(OneThreadService, package=PACKAGE)
    return Dispatcher(registry)


def create_request(execution: str, deadline: float, **custom: object) -> TaskRequest:
    template = builders.task_template("queue-deadline", custom)
    return request_from_template(template, None, "/tmp/out",
                                 builders.execution_metadata(builders.identity(execution)), deadline)


async def until(condition, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        await asyncio.sleep(0.01)


async def test_queued_create_past_its_deadline_never_reaches_the_service(dispatcher: Dispatcher):
    first = asyncio.create_task(dispatcher.create(create_request("first", time.monotonic() + 10, hold=True)))
    await until(lambda: OneThreadService.started == ["first"])  # the pool's only thread is busy

    second = asyncio.create_task(dispatcher.create(create_request("second", time.monotonic() + 0.5)))
    await asyncio.sleep(0.05)  # queued behind the first
    # The loop is too busy to run the second call's timeout in time (as under load) while its deadline passes
    # and the thread frees up: the thread picks the second create up late.
    threading.Timer(0.6, OneThreadService.release.set).start()
    time.sleep(0.9)

    with pytest.raises((DeadlineTooShort, TransientServiceError)) as caught:
        await second
    assert OneThreadService.started == ["first"], "a create whose client had given up reached the service"
    code, message = status_for(caught.value)
    assert code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)  # Propeller retries both
    assert "deadline" in message

    assert await first  # the job that did start is answered normally
    assert metrics.EXECUTOR_QUEUED.labels(connector=PACKAGE)._value.get() == 0
    assert metrics.EXECUTOR_BUSY.labels(connector=PACKAGE)._value.get() == 0


async def test_call_that_waited_for_a_thread_past_its_start_time_is_refused_with_a_clear_message(
    dispatcher: Dispatcher,
):
    connector = dispatcher.registry.get("queue-deadline", 0)
    holder = asyncio.create_task(dispatcher.create(create_request("first", time.monotonic() + 10, hold=True)))
    await until(lambda: OneThreadService.started == ["first"])

    late = dispatcher.executors.run(connector, OneThreadService.started.append, "late",
                                    start_by=time.monotonic() + 0.1, operation="create")
    await asyncio.sleep(0.3)
    OneThreadService.release.set()

    with pytest.raises(DeadlineTooShort) as caught:
        await late
    assert OneThreadService.started == ["first"]
    code, message = status_for(caught.value)
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "create call waited" in message and "free thread" in message and "not started" in message
    await holder


async def test_call_that_timed_out_while_queued_is_not_counted_as_queued_any_more(dispatcher: Dispatcher):
    first = asyncio.create_task(dispatcher.create(create_request("first", time.monotonic() + 10, hold=True)))
    await until(lambda: OneThreadService.started == ["first"])

    with pytest.raises(TransientServiceError, match="deadline"):  # the loop is free: the caller's timeout fires
        await dispatcher.create(create_request("second", time.monotonic() + 0.3))
    OneThreadService.release.set()
    await first

    await until(lambda: metrics.EXECUTOR_QUEUED.labels(connector=PACKAGE)._value.get() == 0)
    assert OneThreadService.started == ["first"]
