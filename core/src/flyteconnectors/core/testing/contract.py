"""The connector contract suite: the lifecycle cases every connector must pass, run through the real gRPC host.

Adopting it takes a few lines in a connector's ``tests/test_contract.py``::

    import pytest
    from flyteconnectors.core.testing.contract import AsyncContract
    from flyteconnectors.snowflake.connector import SnowflakeQuery
    from flyteconnectors.snowflake.fake import SnowflakeFake

    class TestSnowflakeQuery(AsyncContract):
        connector = SnowflakeQuery
        create_path = r"/queries/v1/query-request"      # where a job is created (for lost responses)
        status_path = r"/monitoring/queries/"            # where its status is read (for 429/5xx)
        success_steps = ("RUNNING", "SUCCESS")          # scripts in the fake's own vocabulary
        running_steps = ("RUNNING",)
        unknown_steps = ("SOMETHING_NEW", "SUCCESS")
        state_cases = [(("QUEUED",), Phase.QUEUED), (("FAILED_WITH_ERROR",), Phase.FAILED), ...]

        def failure_steps(self, message): return ("RUNNING", {"state": "FAILED_WITH_ERROR", "message": message})
        def early_failure_steps(self, message): return ({"state": "FAILED_WITH_ERROR", "message": message},)
        def remote_jobs(self, fake): return len(fake.queries)
        def cancelled_jobs(self, fake): return sum(q["aborted"] for q in fake.queries.values())

        @pytest.fixture
        def fake(self):
            with SnowflakeFake().serve() as fake:
                yield fake

        @pytest.fixture
        def connector_settings(self, fake): return {"endpoint": fake.url}

        @pytest.fixture
        def secrets(self, canary): return {"snowflake_password": canary}

        @pytest.fixture
        def task_template(self): return builders.task_template("snowflake-query", {...}, outputs={...})

        @pytest.fixture
        def invalid_config(self): return {"warehouse": 5}, "warehouse"

Capabilities a connector lacks are class flags (``supports_cancel``, ``supports_outputs``,
``supports_logs``); the cases that need them are skipped with the reason shown, never silently passed.
Overrides of the required fixtures must be ``@pytest.fixture``-decorated; the suite checks that and says so.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import grpc
import pytest

from flyteconnectors.core.connector import Connector
from flyteconnectors.core.dispatcher import DispatcherOptions, RetryPolicy
from flyteconnectors.core.resource import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.fake import FakeService
from flyteconnectors.core.testing.host import Flyte2Client, HostThread, PropellerClient
from flyteconnectors.core.testing.lag import LoopLagProbe, assert_no_stall

TERMINAL = {int(p) for p in (Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED, Phase.RETRYABLE_FAILED)}
#: The loop may lag this long before the suite calls it a stall. Generous, so a loaded CI machine does not
#: trip it; a blocking SDK call on the loop takes far longer (the self-test's blocks for 1 s).
STALL_THRESHOLD = 0.5
#: What test_altered_job_handle_gets_a_clear_answer puts in each field of a real job handle, one at a time.
ALTERED_HANDLE_VALUES: tuple[Any, ...] = ("", "../../x", "us/east-1", "\u00e9" * 300, -1, None, {"a": 1})
#: Clear refusals of an altered job handle (anything else, INTERNAL above all, is a connector bug).
CLEAR_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                         grpc.StatusCode.FAILED_PRECONDITION})
_REQUIRED_FIXTURES = ("fake", "connector_settings", "secrets", "task_template")


class _Recording:
    """Keeps everything the host said, for the leak and phase checks."""

    resources: list[Any]
    metas: list[bytes]
    errors: list[str]
    timeout: float
    poll: Any  # PropellerClient.poll, from the client class this is mixed into

    def _start_recording(self) -> None:
        self.resources, self.metas, self.errors = [], [], []

    def create(self, template: Any, inputs: Mapping[str, Any] | None = None, **kw: Any) -> bytes:
        parent = super()
        meta = self._guard(lambda: parent.create(template, inputs, **kw))  # type: ignore[attr-defined]
        self.metas.append(meta)
        return meta  # type: ignore[no-any-return]

    def get(self, template: Any, meta: bytes, output_prefix: str = builders.OUTPUT_PREFIX) -> Any:
        parent = super()
        resource = self._guard(lambda: parent.get(template, meta, output_prefix))  # type: ignore[attr-defined]
        self.resources.append(resource)
        return resource

    def delete(self, template: Any, meta: bytes) -> None:
        parent = super()
        self._guard(lambda: parent.delete(template, meta))  # type: ignore[attr-defined]

    def execute_sync(self, template: Any, inputs: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        parent = super()
        resource = self._guard(lambda: parent.execute_sync(template, inputs, **kw))  # type: ignore[attr-defined]
        self.resources.append(resource)
        return resource

    def _guard(self, call: Any) -> Any:
        try:
            return call()
        except grpc.RpcError as err:
            self.errors.append(f"{err.code()}: {err.details()}")
            raise


class _Recorder(_Recording, PropellerClient):
    def __init__(self, channel: grpc.Channel, timeout: float = 10.0) -> None:
        super().__init__(channel, timeout)
        self._start_recording()


class _Recorder2(_Recording, Flyte2Client):
    def __init__(self, channel: grpc.Channel, timeout: float = 10.0, secrets: Mapping[str, str] | None = None):
        super().__init__(channel, timeout, secrets)
        self._start_recording()


class _Base:
    #: The connector class under test.
    connector: ClassVar[type[Connector[Any]]]
    #: The package name its settings are read under (FLYTECONNECTORS_<PACKAGE>_<FIELD>).
    package: ClassVar[str] = "contract"
    #: Task inputs for the happy path (Python values).
    task_inputs: ClassVar[Mapping[str, Any]] = {}
    supports_outputs: ClassVar[bool] = True
    #: RPC deadline the suite's Propeller client uses (Propeller's connector-service default).
    rpc_timeout: ClassVar[float] = 10.0

    # ------------------------------------------------------------------ fixtures to override
    @pytest.fixture
    def fake(self) -> Iterator[FakeService]:
        raise NotImplementedError("override the `fake` fixture: yield your started FakeService")

    @pytest.fixture
    def connector_settings(self, fake: FakeService) -> Mapping[str, Any]:
        raise NotImplementedError("override `connector_settings`: settings pointing the connector at the fake")

    @pytest.fixture
    def secrets(self, canary: str) -> Mapping[str, str]:
        raise NotImplementedError("override `secrets`: every credential the connector reads, set to `canary`")

    @pytest.fixture
    def task_template(self) -> Any:
        raise NotImplementedError("override `task_template`: builders.task_template(...) for the happy path")

    @pytest.fixture
    def invalid_config(self) -> tuple[dict[str, Any], str]:
        """A ``custom`` that fails validation, and the field name the error must mention."""
        return {"this_field_does_not_exist": 1}, "this_field_does_not_exist"

    # ------------------------------------------------------------------ fixtures the suite provides
    @pytest.fixture
    def canary(self) -> str:
        """A unique secret value; it must never appear in anything the host says or logs."""
        return f"canary-{uuid.uuid4().hex}"

    @pytest.fixture
    def dispatcher_options(self) -> DispatcherOptions:
        return DispatcherOptions(unavailable_grace=600.0, retry=RetryPolicy(attempts=4, base=0.02, cap=0.2))

    @pytest.fixture(params=["v1", "v2"])
    def wire(self, request: pytest.FixtureRequest) -> str:
        """Which Flyte wire the case runs over: flyteidl v1 (Propeller) or flyteidl2 (Flyte 2)."""
        if request.param == "v2":
            pytest.importorskip("flyteidl2", reason="flyteidl2 is not installed (core's flyte2 extra)")
        return str(request.param)

    @pytest.fixture
    def host(self, fake: FakeService, connector_settings: Mapping[str, Any], secrets: Mapping[str, str],
             dispatcher_options: DispatcherOptions, wire: str) -> Iterator[HostThread]:
        package = self.package
        # Flyte 2 sends secrets on every call (in a Connection), so that host gets none of its own.
        host_secrets = dict(secrets) if wire == "v1" else {}
        with HostThread([self.connector], settings={package: dict(connector_settings)}, secrets=host_secrets,
                        options=dispatcher_options, package=package) as host:
            yield host

    @pytest.fixture
    def client(self, host: HostThread, canary: str, logs: pytest.LogCaptureFixture, wire: str,
               secrets: Mapping[str, str]) -> Iterator[_Recording]:
        """A Propeller-shaped client; afterwards, checks what every case must hold (no UNDEFINED, no leak)."""
        if wire == "v2":
            recorder: Any = _Recorder2(host.channel, self.rpc_timeout, secrets)  # type: ignore[arg-type]
        else:
            recorder = _Recorder(host.channel, self.rpc_timeout)  # type: ignore[arg-type]
        yield recorder
        for resource in recorder.resources:
            assert resource.phase != 0, "the host answered phase UNDEFINED (Propeller reads it as a retryable failure)"
        self._assert_no_canary(canary, recorder, logs)

    @pytest.fixture
    def logs(self, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
        caplog.set_level(logging.DEBUG)
        return caplog

    # ------------------------------------------------------------------ checks shared by every case
    @pytest.fixture(autouse=True)
    def _overrides_are_fixtures(self) -> None:
        self._check_overrides_are_fixtures()

    def _check_overrides_are_fixtures(self) -> None:
        for name in (*_REQUIRED_FIXTURES, "invalid_config"):
            attr = getattr(type(self), name, None)
            if attr is not None and not hasattr(attr, "_pytestfixturefunction") and \
                    "FixtureFunctionDefinition" not in type(attr).__name__:
                pytest.fail(f"{type(self).__name__}.{name} overrides a contract fixture but is not decorated "
                            "with @pytest.fixture, so pytest would silently ignore it")

    @staticmethod
    def _assert_no_canary(canary: str, client: _Recording, logs: pytest.LogCaptureFixture) -> None:
        places: list[tuple[str, str]] = []
        for resource in client.resources:
            places.append(("message", resource.message))
            places.append(("custom_info", json.dumps(_struct(resource.custom_info))))
            places += [("log link", link.uri) for link in resource.log_links]
        places += [("resource_meta", meta.decode("utf-8", "replace")) for meta in client.metas]
        places += [("gRPC error", e) for e in client.errors]
        places += [("log", r.getMessage() + (r.exc_text or "")) for r in logs.records]
        leaked = [where for where, text in places if canary in text]
        assert not leaked, f"a secret value leaked into: {', '.join(sorted(set(leaked)))}"

    def assert_message_mentions(self, message: str, expected: str) -> None:
        assert expected in message, f"expected the service's message {expected!r} in {message!r}"


def _struct(struct: Any) -> Any:
    from google.protobuf import json_format

    return json_format.MessageToDict(struct)


class AsyncContract(_Base):
    """The lifecycle cases for an :class:`~flyteconnectors.core.AsyncConnector`."""

    # ------------------------------------------------------------------ what the connector describes
    #: Regex of the request path (and method) that creates a job, and the one that reads its status.
    create_path: ClassVar[str]
    create_method: ClassVar[str] = "POST"
    status_path: ClassVar[str]
    status_method: ClassVar[str | None] = None
    #: Scripts for the fake's next job, in the fake's own step vocabulary.
    success_steps: ClassVar[Sequence[Any]]
    running_steps: ClassVar[Sequence[Any]]
    unknown_steps: ClassVar[Sequence[Any]]
    #: (script, phase of the first GetTask) for every state the service reports.
    state_cases: ClassVar[Sequence[tuple[Sequence[Any], Phase]]] = ()
    supports_cancel: ClassVar[bool] = True
    supports_logs: ClassVar[bool] = False

    def failure_steps(self, message: str) -> Sequence[Any]:
        raise NotImplementedError("return a script that runs, then fails with `message`")

    def early_failure_steps(self, message: str) -> Sequence[Any]:
        raise NotImplementedError("return a script whose first status is a failure with `message`")

    def lose_create_response(self, fake: FakeService) -> None:
        """Make the service start the next job but lose its answer (the client sees an error).

        The default injects a 503 after the side effect on ``create_path``; override it when the create path
        also serves other calls (a duplicate lookup on the same endpoint, say).
        """
        fake.inject_fault(503, path=self.create_path, method=self.create_method, after=True, count=1)

    def remote_jobs(self, fake: FakeService) -> int:
        """How many jobs the service holds (for the idempotency cases)."""
        raise NotImplementedError

    def cancelled_jobs(self, fake: FakeService) -> int:
        """How many jobs received a cancel request."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def _run(self, client: _Recording, template: Any) -> tuple[Any, list[Any]]:
        meta = client.create(template, self.task_inputs)
        return client.poll(template, meta, interval=0.01, limit=30)

    # ------------------------------------------------------------------ the cases
    def test_happy_path_succeeds(self, client: _Recording, fake: FakeService, task_template: Any) -> None:
        fake.script_next_job(*self.success_steps)
        final, _seen = self._run(client, task_template)
        assert final.phase == Phase.SUCCEEDED, f"expected SUCCEEDED, got {Phase(final.phase).name}: {final.message}"
        assert self.remote_jobs(fake) == 1
        declared = set(task_template.interface.outputs.variables)
        if self.supports_outputs and declared:
            assert set(final.outputs.literals) == declared, "the outputs must match the interface"

    def test_log_links_on_first_response_of_each_phase(self, client: _Recording, fake: FakeService,
                                                       task_template: Any) -> None:
        fake.script_next_job(*self.success_steps)
        _, seen = self._run(client, task_template)
        first_of_phase: dict[int, Any] = {}
        for resource in seen:
            first_of_phase.setdefault(resource.phase, resource)
        links = {p: [link.uri for link in r.log_links] for p, r in first_of_phase.items()}
        any_links = any(links.values())
        if any_links:
            missing = [Phase(p).name for p, uris in links.items() if not uris]
            assert not missing, f"log links are missing on the first response of {missing}"

    def test_failure_before_first_poll(self, client: _Recording, fake: FakeService, task_template: Any) -> None:
        fake.script_next_job(*self.early_failure_steps("the table does not exist"))
        meta = client.create(task_template, self.task_inputs)
        first = client.get(task_template, meta)
        assert first.phase == Phase.FAILED, f"expected FAILED at the first poll, got {Phase(first.phase).name}"
        self.assert_message_mentions(first.message, "the table does not exist")

    def test_failure_during_polling_surfaces_message(self, client: _Recording, fake: FakeService,
                                                     task_template: Any) -> None:
        fake.script_next_job(*self.failure_steps("out of memory on executor 3"))
        final, seen = self._run(client, task_template)
        assert final.phase == Phase.FAILED, f"expected FAILED, got {Phase(final.phase).name}"
        assert any(r.phase not in TERMINAL for r in seen), "the job should have been seen running first"
        self.assert_message_mentions(final.message, "out of memory on executor 3")

    def test_every_scripted_state_reaches_its_phase(self, client: _Recording, fake: FakeService,
                                                    task_template: Any) -> None:
        if not self.state_cases:
            pytest.skip("the connector declares no state_cases")
        wrong = []
        for steps, expected in self.state_cases:
            fake.script_next_job(*steps)
            meta = client.create(task_template, self.task_inputs, ident=builders.identity(uuid.uuid4().hex[:10]))
            got = client.get(task_template, meta)
            if got.phase != expected:
                wrong.append(f"{steps!r}: expected {expected.name}, got {Phase(got.phase).name} ({got.message})")
        assert not wrong, "states mapped to the wrong phase:\n" + "\n".join(wrong)

    def test_unknown_state_is_not_fatal(self, client: _Recording, fake: FakeService, task_template: Any) -> None:
        fake.script_next_job(*self.unknown_steps)
        meta = client.create(task_template, self.task_inputs)
        first = client.get(task_template, meta)
        assert first.phase not in TERMINAL, f"an unknown state must not end the task (got {Phase(first.phase).name})"
        assert first.message, "an unknown state needs a message naming it"
        final, _ = client.poll(task_template, meta, interval=0.01)
        assert final.phase == Phase.SUCCEEDED

    def test_delete_while_running_stops_the_remote_job(self, client: _Recording, fake: FakeService,
                                                       task_template: Any) -> None:
        if not self.supports_cancel:
            pytest.skip("the service cannot cancel jobs (supports_cancel = False)")
        fake.script_next_job(*self.running_steps)
        meta = client.create(task_template, self.task_inputs)
        assert client.get(task_template, meta).phase not in TERMINAL
        client.delete(task_template, meta)
        assert self.cancelled_jobs(fake) == 1, "the remote job must receive a cancel request"

    def test_delete_twice_and_after_finish_are_ok(self, client: _Recording, fake: FakeService,
                                                  task_template: Any) -> None:
        if not self.supports_cancel:
            pytest.skip("the service cannot cancel jobs (supports_cancel = False)")
        fake.script_next_job(*self.running_steps)
        meta = client.create(task_template, self.task_inputs)
        client.delete(task_template, meta)
        client.delete(task_template, meta)
        fake.script_next_job(*self.success_steps)
        done = client.create(task_template, self.task_inputs, ident=builders.identity("finished01"))
        client.poll(task_template, done, interval=0.01)
        client.delete(task_template, done)

    def test_lost_create_response_creates_one_job(self, client: _Recording, fake: FakeService,
                                                  task_template: Any) -> None:
        fake.script_next_job(*self.success_steps)
        self.lose_create_response(fake)
        first = client.create(task_template, self.task_inputs)
        # Propeller calls CreateTask at least once: the same attempt may arrive again.
        again = client.create(task_template, self.task_inputs)
        assert self.remote_jobs(fake) == 1, "a retried create must adopt the job the lost call started"
        final, _ = client.poll(task_template, first, interval=0.01)
        assert final.phase == Phase.SUCCEEDED
        assert client.get(task_template, again).phase == Phase.SUCCEEDED

    def test_new_attempt_creates_a_new_job(self, client: _Recording, fake: FakeService, task_template: Any) -> None:
        fake.script_next_job(*self.success_steps)
        fake.script_next_job(*self.success_steps)
        client.create(task_template, self.task_inputs, ident=builders.identity(retry_attempt=0))
        client.create(task_template, self.task_inputs, ident=builders.identity(retry_attempt=1))
        assert self.remote_jobs(fake) == 2, "each retry attempt is its own remote job"

    def test_transient_errors_on_get_are_retried(self, client: _Recording, fake: FakeService,
                                                 task_template: Any) -> None:
        fake.script_next_job(*self.success_steps)
        meta = client.create(task_template, self.task_inputs)
        fake.inject_fault(429, path=self.status_path, method=self.status_method, count=1,
                          headers={"Retry-After": "0"})
        fake.inject_fault(503, path=self.status_path, method=self.status_method, count=1)
        final, _ = client.poll(task_template, meta, interval=0.01)
        assert final.phase == Phase.SUCCEEDED
        assert not client.errors, f"transient faults surfaced as gRPC errors: {client.errors}"

    @pytest.fixture
    def short_grace(self, dispatcher_options: DispatcherOptions) -> DispatcherOptions:
        dispatcher_options.unavailable_grace = 0.5
        return dispatcher_options

    def test_permanently_unavailable_service_ends_retryable(self, short_grace: DispatcherOptions,
                                                            client: _Recording, fake: FakeService,
                                                            task_template: Any) -> None:
        fake.script_next_job(*self.running_steps)
        meta = client.create(task_template, self.task_inputs)
        fake.inject_fault(503, path=self.status_path, method=self.status_method, count=None)
        client.timeout = 3.0
        first = client.get(task_template, meta)
        assert first.phase not in TERMINAL, "one failed status check must not end the task"
        assert first.message, "the non-terminal answer should say the status check failed"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.2)
            last = client.get(task_template, meta)
            if last.phase in TERMINAL:
                break
        assert last.phase == Phase.RETRYABLE_FAILED, f"expected RETRYABLE_FAILED, got {Phase(last.phase).name}"
        assert not client.errors, f"unavailability surfaced as gRPC errors: {client.errors}"

    def test_invalid_config_fails_permanently_naming_the_field(
        self, client: _Recording, fake: FakeService, task_template: Any, invalid_config: tuple[dict[str, Any], str]
    ) -> None:
        custom, field = invalid_config
        bad = type(task_template)()
        bad.CopyFrom(task_template)
        bad.custom.Clear()
        bad.custom.update(custom)
        meta = client.create(bad, self.task_inputs)
        first = client.get(bad, meta)
        assert first.phase == Phase.FAILED, "invalid config must fail permanently, not burn retries"
        assert field in first.message, f"the error must name {field!r}: {first.message}"
        assert self.remote_jobs(fake) == 0, "no remote job may start for an invalid config"
        client.delete(bad, meta)  # nothing started: still fine

    def test_malformed_resource_meta_gives_a_clear_error(self, client: _Recording, task_template: Any) -> None:
        for junk in (b"\x80\x04\x95 not a pickle we would ever load", b"{not json", b'{"v": 99}'):
            answer = client.get(task_template, junk)
            assert answer.phase == Phase.FAILED
            assert "resource_meta" in answer.message
        with pytest.raises(grpc.RpcError) as err:
            client.delete(task_template, b"garbage")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Traceback" not in (err.value.details() or "")

    def test_altered_job_handle_gets_a_clear_answer(self, client: _Recording, fake: FakeService,
                                                    task_template: Any) -> None:
        """Without a signing key resource_meta is untrusted input: every field of a real job handle set to junk
        must get a FAILED phase with a message or INVALID_ARGUMENT / NOT_FOUND, never INTERNAL or a traceback.
        The fix is in the connector's JobMeta: validate each id against the service's format."""
        fake.script_next_job(*self.running_steps)
        meta = client.create(task_template, self.task_inputs)
        envelope = json.loads(meta)
        unclear: list[str] = []
        for field in sorted(envelope["m"]):
            for junk in ALTERED_HANDLE_VALUES:
                raw = json.dumps(dict(envelope, m={**envelope["m"], field: junk})).encode()
                for method in ("get", "delete"):
                    try:
                        answer = getattr(client, method)(task_template, raw)
                    except grpc.RpcError as err:
                        details = err.details() or ""
                        if err.code() not in CLEAR_CODES or not details or "Traceback" in details:
                            unclear.append(f"{field}={junk!r:.20}: {method}: {err.code().name}: {details[:120]}")
                        continue
                    if method == "get" and (answer.phase == 0  # UNDEFINED
                                            or (answer.phase == Phase.FAILED and not answer.message)):
                        unclear.append(f"{field}={junk!r:.20}: get: phase {answer.phase!r} {answer.message!r}")
        client.delete(task_template, meta)
        assert not unclear, f"{len(unclear)} unclear answers to an altered job handle:\n" + "\n".join(unclear[:10])

    def test_resource_meta_is_small_json_without_secrets(self, client: _Recording, fake: FakeService,
                                                         task_template: Any, canary: str) -> None:
        fake.script_next_job(*self.success_steps)
        meta = client.create(task_template, self.task_inputs)
        assert len(meta) < 4096
        assert canary not in meta.decode()
        assert isinstance(json.loads(meta), dict)

    def test_no_event_loop_stall(self, host: HostThread, client: _Recording, fake: FakeService,
                                 task_template: Any) -> None:
        fake.script_next_job(*self.success_steps)
        host.host.watchdog.max_lag = 0.0
        with LoopLagProbe() as probe:
            self._run(client, task_template)
        assert_no_stall(host.host.watchdog.max_lag, probe, STALL_THRESHOLD)

    def test_logs_stream(self, client: _Recording, fake: FakeService, task_template: Any) -> None:
        if not self.supports_logs:
            pytest.skip("the connector does not stream logs (supports_logs = False)")
        if not isinstance(client, _Recorder):
            pytest.skip("log streaming is checked on the v1 wire")
        fake.script_next_job(*self.success_steps)
        meta = client.create(task_template, self.task_inputs)
        from flyteidl.admin import agent_pb2

        stream = client.async_stub.GetTaskLogs(
            agent_pb2.GetTaskLogsRequest(task_category=agent_pb2.TaskCategory(name=task_template.type,
                                                                             version=task_template.task_type_version),
                                         resource_meta=meta), timeout=self.rpc_timeout)
        messages = list(stream)
        assert messages and messages[0].HasField("header")


class SyncContract(_Base):
    """The cases for a :class:`~flyteconnectors.core.SyncConnector` (v1 wire only: Flyte 2 has no sync service)."""

    @pytest.fixture(params=["v1"])
    def wire(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    #: Regex of the request path the connector calls, for fault injection.
    request_path: ClassVar[str]

    def failure_setup(self, fake: FakeService, message: str) -> None:
        """Make the service refuse the next request with ``message`` (default: HTTP 400 with that message)."""
        fake.inject_fault(400, path=self.request_path, body={"error": {"message": message}, "message": message})

    def test_returns_terminal_success_inside_the_deadline(self, client: _Recording, task_template: Any) -> None:
        started = time.monotonic()
        resource = client.execute_sync(task_template, self.task_inputs)
        assert resource.phase == Phase.SUCCEEDED, f"got {Phase(resource.phase).name}: {resource.message}"
        assert time.monotonic() - started < self.rpc_timeout
        declared = set(task_template.interface.outputs.variables)
        if self.supports_outputs and declared:
            assert set(resource.outputs.literals) == declared

    def test_service_refusal_is_a_failed_phase_with_its_message(self, client: _Recording, fake: FakeService,
                                                                 task_template: Any) -> None:
        self.failure_setup(fake, "model gpt-nothing does not exist")
        resource = client.execute_sync(task_template, self.task_inputs)
        assert resource.phase == Phase.FAILED
        self.assert_message_mentions(resource.message, "gpt-nothing")

    def test_transient_errors_are_retried(self, client: _Recording, fake: FakeService, task_template: Any) -> None:
        fake.inject_fault(503, path=self.request_path, count=1)
        resource = client.execute_sync(task_template, self.task_inputs)
        assert resource.phase == Phase.SUCCEEDED

    def test_unavailable_service_answers_terminal_before_the_deadline(self, client: _Recording, fake: FakeService,
                                                                      task_template: Any) -> None:
        fake.inject_fault(None, path=self.request_path, count=None, hang=30)
        client.timeout = 3.0
        started = time.monotonic()
        resource = client.execute_sync(task_template, self.task_inputs)
        assert resource.phase in TERMINAL and resource.phase != Phase.SUCCEEDED
        assert time.monotonic() - started < 3.0
        assert resource.message

    def test_invalid_config_fails_naming_the_field(self, client: _Recording, task_template: Any,
                                                   invalid_config: tuple[dict[str, Any], str]) -> None:
        custom, field = invalid_config
        bad = type(task_template)()
        bad.CopyFrom(task_template)
        bad.custom.Clear()
        bad.custom.update(custom)
        resource = client.execute_sync(bad, self.task_inputs)
        assert resource.phase == Phase.FAILED
        assert field in resource.message

    def test_no_event_loop_stall(self, host: HostThread, client: _Recording, task_template: Any) -> None:
        host.host.watchdog.max_lag = 0.0
        with LoopLagProbe() as probe:
            client.execute_sync(task_template, self.task_inputs)
        assert_no_stall(host.host.watchdog.max_lag, probe, STALL_THRESHOLD)
