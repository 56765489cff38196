"""The dispatcher's guarantees, independent of any wire."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from flyteconnectors.core import (
    AsyncConnector,
    CallContext,
    JobMeta,
    JobNotFound,
    Phase,
    Resource,
    SyncConnector,
    TaskConfig,
    TaskContext,
    TransientServiceError,
)
from flyteconnectors.core.dispatcher import CallFailed, Dispatcher, DispatcherOptions, RetryPolicy, TaskRequest
from flyteconnectors.core.host.watchdog import LoopWatchdog
from flyteconnectors.core.meta import MetaCodec
from flyteconnectors.core.registry import Registry
from flyteconnectors.core.secrets import Secrets
from flyteconnectors.core.testing import builders


class Cfg(TaskConfig):
    seconds: float = 0.0
    mode: str = "ok"


class Meta(JobMeta):
    job_id: str
    mode: str = "ok"


CALLS: dict[str, int] = {}


class Blocking(AsyncConnector[Cfg, Meta]):
    """Plain def methods that block: the core must run them off the loop."""

    name = "Blocking"
    task_type = "blocking"

    def create(self, task: TaskContext[Cfg]) -> Meta:
        time.sleep(task.config.seconds)
        return Meta(job_id=task.idempotency_key, mode=task.config.mode)

    def get(self, job: Meta, ctx: CallContext) -> Resource:
        CALLS[job.job_id] = CALLS.get(job.job_id, 0) + 1
        if job.mode == "flaky" and CALLS[job.job_id] <= 2:
            raise TransientServiceError("HTTP 503")
        if job.mode == "down":
            raise TransientServiceError("HTTP 503 forever")
        if job.mode == "gone":
            raise JobNotFound(f"run {job.job_id} does not exist")
        if job.mode == "bug":
            raise KeyError("surprise\nwith a second line")
        if job.mode == "secret":
            raise RuntimeError(f"auth failed for token {ctx.secrets.require('svc_token')}")
        if job.mode == "undefined":
            return Resource(Phase.RUNNING, outputs=None)
        return Resource.succeeded({"n": 7})

    def delete(self, job: Meta, ctx: CallContext) -> None:
        if job.mode == "gone":
            raise JobNotFound("already gone")


class BlocksLoop(AsyncConnector[Cfg, Meta]):
    name = "BlocksLoop"
    task_type = "blocks_loop"

    async def create(self, task: TaskContext[Cfg]) -> Meta:
        time.sleep(0.3)  # the mistake the watchdog must catch
        return Meta(job_id="x")

    async def get(self, job: Meta, ctx: CallContext) -> Resource:
        return Resource.running()

    async def delete(self, job: Meta, ctx: CallContext) -> None:
        return None


class Slow(SyncConnector[Cfg]):
    name = "Slow"
    task_type = "slow_sync"

    async def do(self, task: TaskContext[Cfg]) -> Resource:
        await asyncio.sleep(task.config.seconds)
        if task.config.mode == "running":
            return Resource.running()
        return Resource.succeeded({"out": "done"})


def make(secrets=None, **opts) -> Dispatcher:
    registry = Registry()
    registry.register(Blocking, BlocksLoop, Slow, package="test")
    options = DispatcherOptions(retry=RetryPolicy(attempts=4, base=0.01, cap=0.05), **opts)
    return Dispatcher(registry, secrets=Secrets(secrets or {}, dirs=()), options=options)


def request(task_type="blocking", ident=None, deadline=None, **custom) -> TaskRequest:
    template = builders.task_template(task_type, custom, outputs={"n": int})
    from flyteconnectors.core.host.wire_v1 import request_from_template

    return request_from_template(template, None, "/tmp/out", builders.execution_metadata(ident or builders.identity()),
                                 deadline)


async def test_blocking_def_connector_does_not_delay_other_calls():
    d = make()
    slow = asyncio.create_task(d.create(request(seconds=0.5, ident=builders.identity("slow"))))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    meta = await d.create(request(ident=builders.identity("fast")))
    assert time.monotonic() - started < 0.2, "a blocking call in one job held up another"
    await slow
    assert (await d.get("blocking", 0, meta)).phase is Phase.SUCCEEDED


async def test_blocking_inside_async_def_is_detected_and_counted(caplog):
    caplog.set_level(logging.WARNING)
    d = make()
    watchdog = LoopWatchdog(interval=0.02, threshold=0.1)
    watchdog.start()
    await asyncio.sleep(0.05)
    await d.create(request("blocks_loop"))
    await asyncio.sleep(0.05)
    watchdog.stop()
    assert watchdog.stalls >= 1
    assert any("blocks_loop" in r.getMessage() and "event loop blocked" in r.getMessage() for r in caplog.records)


async def test_transient_get_failures_are_retried_inside_the_call():
    d = make()
    meta = await d.create(request(mode="flaky", ident=builders.identity("flaky")))
    resource = await d.get("blocking", 0, meta)
    assert resource.phase is Phase.SUCCEEDED


async def test_unavailable_service_is_non_terminal_then_retryable_after_grace():
    d = make(unavailable_grace=0.2)
    meta = await d.create(request(mode="down", ident=builders.identity("down")))
    first = await d.get("blocking", 0, meta)
    assert first.phase is Phase.RUNNING and "transiently" in first.message
    await asyncio.sleep(0.25)
    later = await d.get("blocking", 0, meta)
    assert later.phase is Phase.RETRYABLE_FAILED and "unavailable" in later.message


async def test_job_not_found_fails_get_and_is_fine_on_delete():
    d = make()
    meta = await d.create(request(mode="gone", ident=builders.identity("gone")))
    resource = await d.get("blocking", 0, meta)
    assert resource.phase is Phase.FAILED and "no longer exists" in resource.message
    await d.delete("blocking", 0, meta)


async def test_invalid_config_is_a_permanent_failure_naming_the_field():
    d = make()
    meta = await d.create(request(seconds="soon"))
    resource = await d.get("blocking", 0, meta)
    assert resource.phase is Phase.FAILED
    assert "seconds" in resource.message
    await d.delete("blocking", 0, meta)  # nothing to stop


async def test_unknown_config_field_is_named():
    d = make()
    meta = await d.create(request(secnods=1))
    assert "secnods: unknown field" in (await d.get("blocking", 0, meta)).message


async def test_unexpected_errors_are_one_line_without_traceback():
    d = make()
    meta = await d.create(request(mode="bug", ident=builders.identity("bug")))
    with pytest.raises(CallFailed) as err:
        await d.get("blocking", 0, meta)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    assert "KeyError" in str(err.value)


async def test_secret_values_never_reach_errors_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    from flyteconnectors.core.secrets import RedactingFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    caplog.handler.addFilter(RedactingFilter())
    secret = "s3cr3t-value-123456"
    d = make(secrets={"svc_token": secret})
    meta = await d.create(request(mode="secret", ident=builders.identity("secret")))
    with pytest.raises(CallFailed) as err:
        await d.get("blocking", 0, meta)
    assert secret not in str(err.value) and "***" in str(err.value)
    assert all(secret not in r.getMessage() and secret not in (r.exc_text or "") for r in caplog.records)


async def test_malformed_resource_meta_is_a_clear_failure():
    d = make()
    for junk in (b"", b"\x80\x04garbage", b"[]", b'{"v":1}', b'{"v":1,"t":"blocking","tv":0,"m":{"nope":1}}'):
        resource = await d.get("blocking", 0, junk)
        assert resource.phase is Phase.FAILED and "resource_meta" in resource.message, junk


async def test_resource_meta_of_another_task_type_is_refused():
    d = make()
    meta = await d.create(request())
    resource = await d.get("blocks_loop", 0, meta)
    assert resource.phase is Phase.FAILED and "belongs to task type 'blocking'" in resource.message


async def test_signed_meta_rejects_tampering_and_accepts_the_previous_key():
    old, new = b"old-key", b"new-key"
    d_old = make()
    d_old.codec = MetaCodec([old])
    meta = await d_old.create(request())
    d_new = make()
    d_new.codec = MetaCodec([new, old])
    assert (await d_new.get("blocking", 0, meta)).phase is Phase.SUCCEEDED
    tampered = meta.replace(b"blocking", b"blockinG")
    assert "signature" in (await d_new.get("blocking", 0, tampered)).message


async def test_sync_call_answers_terminal_before_the_deadline():
    d = make()
    started = time.monotonic()
    resource = await d.do(request("slow_sync", deadline=time.monotonic() + 0.5, seconds=5))
    assert time.monotonic() - started < 0.5
    assert resource.phase is Phase.RETRYABLE_FAILED and "deadline" in resource.message


async def test_sync_connector_returning_running_becomes_failed():
    d = make()
    resource = await d.do(request("slow_sync", mode="running"))
    assert resource.phase is Phase.FAILED and "non-terminal" in resource.message


async def test_outputs_are_converted_with_the_interface_types():
    d = make()
    meta = await d.create(request())
    resource = await d.get("blocking", 0, meta)
    assert resource.outputs["n"].scalar.primitive.integer == 7


async def test_unknown_task_type_is_named():
    d = make()
    with pytest.raises(Exception, match="no connector serves task type 'nope'"):
        await d.create(request("nope"))


def test_executor_is_bounded_per_package():
    d = make()
    connector = d.registry.get("blocking")
    assert d.executors.pool(connector)._max_workers == 64
    assert threading.active_count() < 200
