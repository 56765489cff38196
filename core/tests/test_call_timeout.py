"""The dispatcher's per-call timeout: a TimeoutError at the deadline, any other cancellation passes through."""

from __future__ import annotations

import asyncio
import sys

import pytest

from flyteconnectors.core.dispatcher import _within

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 uses asyncio.wait_for")


async def test_a_call_past_its_deadline_raises_timeout_error_and_leaves_the_task_uncancelled():
    with pytest.raises(TimeoutError):
        await _within(asyncio.sleep(5), 0.05)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    assert await _within(asyncio.sleep(0, "next call"), 1.0) == "next call"


async def test_a_call_that_finishes_in_time_returns_its_result_and_its_timer_is_gone():
    loop = asyncio.get_running_loop()
    before = len(getattr(loop, "_scheduled", ()))
    assert await _within(asyncio.sleep(0.01, "done"), 5.0) == "done"
    await asyncio.sleep(0)
    assert sum(not h.cancelled() for h in getattr(loop, "_scheduled", ())) <= before


async def test_cancelling_the_rpc_is_a_cancellation_not_a_timeout():
    started = asyncio.Event()

    async def rpc() -> None:
        started.set()
        await _within(asyncio.sleep(5), 10.0)

    task = asyncio.create_task(rpc())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_from_outside_during_the_timeout_is_not_swallowed():
    async def rpc() -> None:
        await _within(asyncio.sleep(5), 0.05)

    task = asyncio.create_task(rpc())
    await asyncio.sleep(0.05)  # the deadline and an outside cancel land together
    task.cancel()
    with pytest.raises((asyncio.CancelledError, TimeoutError)):
        await task
    assert task.cancelled() or isinstance(task.exception(), TimeoutError)


async def test_the_deadline_passing_as_the_call_returns_keeps_the_result():
    task = asyncio.current_task()
    assert task is not None

    async def quick() -> str:
        await asyncio.sleep(0)
        return "kept"

    results = await asyncio.gather(*(_within(quick(), 0.0) for _ in range(5)), return_exceptions=True)
    assert all(r == "kept" or isinstance(r, TimeoutError) for r in results)
    assert task.cancelling() == 0
