"""A Propeller-shaped client over one or more channels (round robin per RPC), and fleets of jobs driven by it.

Propeller's rules the fleet follows (wire reference §2.4, §2.6, §2.11):

* a CreateTask error fails the attempt: the next attempt has ``retry_attempt + 1`` (``recreate="new-attempt"``);
  after a Propeller crash the same request is sent again (``recreate="same-attempt"``);
* a GetTask error is one strike; on the 6th strike over the task's life the task fails (system failure);
* polling stops at SUCCEEDED, FAILED, ABORTED or RETRYABLE_FAILED.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc

from flyteconnectors.core.identity import ExecutionIdentity
from flyteconnectors.core.testing import builders
from relsuite.lab import Recorder, digest_of
from relsuite.profiles import PHASE_NAMES, Case, Profile

TERMINAL = {3, 4, 5, 8}
MAX_STRIKES = 5  # Propeller's maxSystemFailures: the 6th GetTask error fails the task


class Propeller:
    """CreateTask / GetTask / DeleteTask / ExecuteTaskSync with Propeller's 10 s deadline, round robin over channels.

    Everything the host answers goes through the recorder (canary search). A channel marked down is skipped,
    as grpc's round_robin balancer drops a subchannel whose connection failed.
    """

    def __init__(self, channels: Sequence[grpc.Channel], recorder: Recorder, timeout: float = 10.0) -> None:
        self.channels = list(channels)
        self.stubs = [(agent_pb2_grpc.AsyncAgentServiceStub(c), agent_pb2_grpc.SyncAgentServiceStub(c))
                      for c in self.channels]
        self.recorder = recorder
        self.timeout = timeout
        self.down: set[int] = set()
        self._next = itertools.count()
        self._lock = threading.Lock()
        self.calls: Counter[tuple[int, str]] = Counter()
        self.errors: Counter[tuple[int, str, str]] = Counter()
        #: With ``trace = True``: (channel index, method, started, ended, code) of every call (monotonic times).
        self.trace = False
        self.traced: list[tuple[int, str, float, float, str]] = []

    def pick(self) -> int:
        with self._lock:
            for _ in range(len(self.channels)):
                index = next(self._next) % len(self.channels)
                if index not in self.down:
                    return index
        raise RuntimeError("every channel is down")

    def _call(self, method: str, fn: Callable[[int], Any], index: int | None) -> Any:
        index = self.pick() if index is None else index
        with self._lock:
            self.calls[(index, method)] += 1
        started = time.monotonic()
        code = "OK"
        try:
            return fn(index)
        except grpc.RpcError as err:
            code = err.code().name
            with self._lock:
                self.errors[(index, method, code)] += 1
            self.recorder.scan("gRPC error details", err.details() or "")
            err.channel_index = index  # type: ignore[attr-defined]
            raise
        finally:
            if self.trace:
                with self._lock:
                    self.traced.append((index, method, started, time.monotonic(), code))

    def create(self, template: Any, inputs: Mapping[str, Any] | None, ident: ExecutionIdentity,
               index: int | None = None) -> bytes:
        request = builders.create_request(template, inputs, ident=ident)
        meta: bytes = self._call("CreateTask", lambda i: self.stubs[i][0].CreateTask(
            request, timeout=self.timeout).resource_meta, index)
        self.recorder.scan("resource_meta", meta)
        return meta

    def get(self, template: Any, meta: bytes, index: int | None = None) -> agent_pb2.Resource:
        request = builders.get_request(template, meta)
        resource = self._call("GetTask", lambda i: self.stubs[i][0].GetTask(request, timeout=self.timeout).resource,
                              index)
        self.recorder.scan_resource(resource)
        return resource

    def delete(self, template: Any, meta: bytes, index: int | None = None) -> None:
        request = builders.delete_request(template, meta)
        self._call("DeleteTask", lambda i: self.stubs[i][0].DeleteTask(request, timeout=self.timeout), index)

    def execute_sync(self, template: Any, inputs: Mapping[str, Any] | None, ident: ExecutionIdentity,
                     index: int | None = None) -> agent_pb2.Resource:
        messages = builders.sync_messages(template, inputs, ident=ident)
        responses = self._call("ExecuteTaskSync", lambda i: list(self.stubs[i][1].ExecuteTaskSync(
            iter(messages), timeout=self.timeout)), index)
        if not responses or not responses[0].HasField("header"):
            raise AssertionError(f"ExecuteTaskSync answered without a header: {responses}")
        resource = responses[0].header.resource
        self.recorder.scan_resource(resource)
        return resource


@dataclass
class Job:
    """One task execution: its attempts, its resource_meta, what GetTask said, and its strikes."""

    profile: Profile
    case: Case
    execution: str
    node: str = "n0"
    expected: str = "SUCCEEDED"
    attempt: int = 0
    meta: bytes | None = None
    phase: str = "NOT_CREATED"
    message: str = ""
    strikes: int = 0
    create_errors: list[str] = field(default_factory=list)
    get_errors: list[str] = field(default_factory=list)
    polls: int = 0
    done: bool = False
    failed_by_strikes: bool = False
    #: Digests (idempotency key hash) of every attempt that was sent to the host.
    attempts: list[str] = field(default_factory=list)

    def identity(self) -> ExecutionIdentity:
        return builders.identity(execution=self.execution, node_id=self.node, retry_attempt=self.attempt)

    @property
    def ok(self) -> bool:
        return self.done and self.phase == self.expected and not self.failed_by_strikes


class Fleet:
    """Many jobs, created and polled concurrently through one Propeller client."""

    def __init__(self, client: Propeller, jobs: Sequence[Job], *, workers: int = 16, max_attempts: int = 4,
                 recreate: str = "new-attempt") -> None:
        self.client = client
        self.jobs = list(jobs)
        self.workers = workers
        self.max_attempts = max_attempts
        self.recreate = recreate
        self.on_error: Callable[[Job, grpc.RpcError], None] | None = None

    # ------------------------------------------------------------------ create
    def create_one(self, job: Job, pause: float = 0.0) -> None:
        for _ in range(self.max_attempts * 3):
            ident = job.identity()
            digest = digest_of(ident.idempotency_key)
            if digest not in job.attempts:
                job.attempts.append(digest)
            try:
                job.meta = self.client.create(job.case.template, job.case.inputs, ident)
                job.phase = "CREATED"
                return
            except grpc.RpcError as err:
                job.create_errors.append(f"{err.code().name}: {err.details()}")
                if self.on_error is not None:
                    self.on_error(job, err)
                if self.recreate == "new-attempt":
                    if job.attempt + 1 >= self.max_attempts:
                        job.phase, job.done = "CREATE_FAILED", True
                        return
                    job.attempt += 1
                if pause:
                    time.sleep(pause)
        job.phase, job.done = "CREATE_FAILED", True

    def create_all(self, pace: float = 0.0) -> None:
        with ThreadPoolExecutor(self.workers) as pool:
            for job in self.jobs:
                pool.submit(self.create_one, job)
                if pace:
                    time.sleep(pace)

    # ------------------------------------------------------------------ poll
    def poll_one(self, job: Job) -> None:
        if job.done or job.meta is None:
            return
        job.polls += 1
        try:
            resource = self.client.get(job.case.template, job.meta)
        except grpc.RpcError as err:
            job.strikes += 1
            job.get_errors.append(f"{err.code().name}: {err.details()}")
            if self.on_error is not None:
                self.on_error(job, err)
            if job.strikes > MAX_STRIKES:
                job.failed_by_strikes, job.done, job.phase = True, True, "SYSTEM_FAILURE"
            return
        job.phase = PHASE_NAMES.get(resource.phase, str(resource.phase))
        job.message = resource.message
        if resource.phase in TERMINAL:
            job.done = True

    def poll_round(self, pool: ThreadPoolExecutor) -> int:
        pending = [j for j in self.jobs if not j.done and j.meta is not None]
        list(pool.map(self.poll_one, pending))
        return len(pending)

    def poll_until_done(self, limit: float, interval: float = 0.05,
                        between: Callable[[int], None] | None = None) -> float:
        """Poll every pending job once per round until all are terminal or ``limit`` seconds pass."""
        start = time.monotonic()
        with ThreadPoolExecutor(self.workers) as pool:
            for rounds in itertools.count():
                if between is not None:
                    between(rounds)
                if not self.poll_round(pool):
                    break
                if time.monotonic() - start > limit:
                    break
                time.sleep(interval)
        return time.monotonic() - start

    # ------------------------------------------------------------------ checks
    def summary(self) -> dict[str, Any]:
        return {
            "jobs": len(self.jobs),
            "final": dict(Counter(j.phase for j in self.jobs)),
            "as_expected": sum(1 for j in self.jobs if j.ok),
            "attempts": sum(len(j.attempts) for j in self.jobs),
            "create_errors": sum(len(j.create_errors) for j in self.jobs),
            "get_errors": sum(len(j.get_errors) for j in self.jobs),
            "max_strikes": max((j.strikes for j in self.jobs), default=0),
            "polls": sum(j.polls for j in self.jobs),
        }


def remote_jobs_per_attempt(jobs: Sequence[Job], remote: Sequence[str]) -> tuple[Counter[str], list[str]]:
    """How many remote jobs each attempt's digest matches, and remote jobs that match no attempt."""
    digests = {d for j in jobs for d in j.attempts}
    counts: Counter[str] = Counter()
    strays = []
    for text in remote:
        matched = [d for d in digests if d in text]
        if matched:
            counts.update(matched)
        else:
            strays.append(text)
    return counts, strays
