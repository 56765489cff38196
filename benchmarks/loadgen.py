"""A Propeller-shaped load generator for a connector host (grpc.aio client, one channel like Propeller's one
ClientConn per endpoint).

Each of ``in_flight`` simulated task executions calls CreateTask once, then GetTask by ``task_category`` (the
deprecated ``task_type`` still filled, as Propeller sends it) every ``poll_interval`` seconds until a terminal
phase, then the next execution starts. Every RPC carries Propeller's 10 s deadline. As in Propeller (wire
reference §2.4, §2.6):

* a CreateTask error fails the attempt; the next attempt (``retry_attempt + 1``) calls CreateTask again;
* a GetTask error is one strike; the sixth strike of an execution fails it (``maxSystemFailures`` = 5).

Reports RPC/s, completed jobs/s, p50/p99 latency per RPC and error counts by gRPC code. Only RPCs that end
inside the measuring window count towards rates and latencies; errors are counted until the last RPC returns.

    python benchmarks/loadgen.py --target 127.0.0.1:8000 --task-type bench-trivial --in-flight 64 --duration 10

Needs only ``grpcio`` and ``flyteidl``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.core import identifier_pb2, interface_pb2, literals_pb2, tasks_pb2
from flyteidl.service import agent_pb2_grpc

#: flyteidl.core TaskExecution.Phase: SUCCEEDED, ABORTED, FAILED, RETRYABLE_FAILED.
SUCCEEDED = 3
TERMINAL = {3, 4, 5, 8}
#: Propeller's webapi maxSystemFailures: the sixth GetTask error fails the task.
MAX_SYSTEM_FAILURES = 5
OUTPUT_PREFIX = "s3://bench-bucket/metadata/propeller/{execution}/n0/{attempt}"


@dataclass
class LoadSpec:
    target: str
    template: tasks_pb2.TaskTemplate
    inputs: literals_pb2.LiteralMap = field(default_factory=literals_pb2.LiteralMap)
    in_flight: int = 64
    duration: float = 10.0
    #: Seconds from start before RPCs count (connection set-up, first SDK clients, ...).
    warmup: float = 1.0
    poll_interval: float = 0.0
    deadline: float = 10.0
    #: Prefix of the execution names, so concurrent or repeated runs never share an idempotency key.
    run_id: str = "r0"
    namespace: str = "flytesnacks-development"
    #: Inputs per execution (execution name -> LiteralMap), e.g. when the job name comes from an input.
    inputs_for: Callable[[str], literals_pb2.LiteralMap] | None = None
    #: Seconds to wait after the window for RPCs still in flight (None: until each returns or hits its deadline;
    #: the rest are cancelled and not counted).
    drain_limit: float | None = None


@dataclass
class RpcStats:
    count: int = 0
    ok: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


@dataclass
class LoadResult:
    window_s: float
    in_flight: int
    poll_interval: float
    rpcs: int
    rpc_per_s: float
    ok_rpc_per_s: float
    jobs_completed: int
    jobs_per_s: float
    #: Executions whose final phase was not SUCCEEDED (FAILED, RETRYABLE_FAILED, ...), counted in the window.
    jobs_not_succeeded: int
    #: Executions that failed on Propeller's side (a CreateTask error, or the sixth GetTask error).
    executions_failed: int
    creates_ok: int
    creates_attempted: int
    per_rpc: dict[str, RpcStats]
    errors: dict[str, int]
    #: A sample of error messages, one per (method, code).
    error_samples: dict[str, str]
    #: Executions cut off by the end of the run (their jobs exist remotely and are known: not orphans).
    unfinished: int
    phases: dict[str, int]
    #: Every RPC that returned, warm-up and drain included (for CPU per RPC).
    total_rpcs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def _metadata(spec: LoadSpec, execution: str, attempt: int) -> agent_pb2.TaskExecutionMetadata:
    tid = spec.template.id
    return agent_pb2.TaskExecutionMetadata(
        task_execution_id=identifier_pb2.TaskExecutionIdentifier(
            task_id=identifier_pb2.Identifier(resource_type=identifier_pb2.TASK, project=tid.project or "flytesnacks",
                                              domain=tid.domain or "development", name=tid.name or "bench.task",
                                              version=tid.version or "v1"),
            node_execution_id=identifier_pb2.NodeExecutionIdentifier(
                node_id="n0",
                execution_id=identifier_pb2.WorkflowExecutionIdentifier(
                    project=tid.project or "flytesnacks", domain=tid.domain or "development", name=execution),
            ),
            retry_attempt=attempt,
        ),
        namespace=spec.namespace,
        k8s_service_account="default",
    )


class _Run:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.latencies: dict[str, list[float]] = {"CreateTask": [], "GetTask": []}
        self.ok: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.error_samples: dict[str, str] = {}
        self.phases: Counter[str] = Counter()
        self.completed = 0
        self.not_succeeded = 0
        self.exec_failed = 0
        self.creates_ok = 0
        self.creates_attempted = 0
        self.unfinished = 0
        self.total_rpcs = 0
        self.start = 0.0
        self.window_start = 0.0
        self.end = 0.0
        self.category = agent_pb2.TaskCategory(name=spec.template.type, version=spec.template.task_type_version)

    def _in_window(self, t: float) -> bool:
        return self.window_start <= t <= self.end

    def _record(self, method: str, began: float, done: float, error: grpc.aio.AioRpcError | None) -> None:
        self.total_rpcs += 1
        if error is not None:
            key = f"{method}:{error.code().name}"
            self.errors[key] += 1
            self.error_samples.setdefault(key, (error.details() or "")[:300])
        elif self._in_window(done):
            self.ok[method] += 1
        if self._in_window(done):
            self.latencies[method].append(done - began)

    async def execution(self, stub: agent_pb2_grpc.AsyncAgentServiceStub, worker: int) -> None:
        spec = self.spec
        n = 0
        while time.monotonic() < self.end:
            n += 1
            execution = f"{spec.run_id}w{worker}x{n}"
            attempt = 0
            meta: bytes | None = None
            inputs = spec.inputs_for(execution) if spec.inputs_for else spec.inputs
            # CreateTask, a new attempt after each failure (Propeller: retryable failure, next attempt).
            while meta is None and time.monotonic() < self.end:
                prefix = OUTPUT_PREFIX.format(execution=execution, attempt=attempt)
                request = agent_pb2.CreateTaskRequest(
                    inputs=inputs, template=spec.template, output_prefix=prefix,
                    task_execution_metadata=_metadata(spec, execution, attempt))
                began = time.monotonic()
                self.creates_attempted += 1
                try:
                    response = await stub.CreateTask(request, timeout=spec.deadline)
                except grpc.aio.AioRpcError as err:
                    self._record("CreateTask", began, time.monotonic(), err)
                    if self._in_window(time.monotonic()):
                        self.exec_failed += 1
                    attempt += 1
                    continue
                self._record("CreateTask", began, time.monotonic(), None)
                self.creates_ok += 1
                meta = response.resource_meta
            if meta is None:
                return
            get = agent_pb2.GetTaskRequest(task_type=spec.template.type, task_category=self.category,
                                           resource_meta=meta,
                                           output_prefix=OUTPUT_PREFIX.format(execution=execution, attempt=attempt))
            strikes = 0
            while True:
                if spec.poll_interval:
                    await asyncio.sleep(spec.poll_interval)
                if time.monotonic() >= self.end:
                    self.unfinished += 1
                    return
                began = time.monotonic()
                try:
                    answer = await stub.GetTask(get, timeout=spec.deadline)
                except grpc.aio.AioRpcError as err:
                    done = time.monotonic()
                    self._record("GetTask", began, done, err)
                    strikes += 1
                    if strikes > MAX_SYSTEM_FAILURES:
                        if self._in_window(done):
                            self.exec_failed += 1
                        break
                    continue
                done = time.monotonic()
                self._record("GetTask", began, done, None)
                phase = answer.resource.phase
                if phase in TERMINAL:
                    if self._in_window(done):
                        self.completed += 1
                        self.phases[str(phase)] += 1
                        if phase != SUCCEEDED:
                            self.not_succeeded += 1
                    break

    def result(self) -> LoadResult:
        window = self.end - self.window_start
        per_rpc = {}
        total = 0
        total_ok = 0
        for method, values in self.latencies.items():
            values.sort()
            per_rpc[method] = RpcStats(
                count=len(values), ok=self.ok[method],
                p50_ms=_ms(percentile(values, 0.50)), p99_ms=_ms(percentile(values, 0.99)),
                max_ms=_ms(values[-1] if values else None))
            total += len(values)
            total_ok += self.ok[method]
        return LoadResult(
            window_s=round(window, 3), in_flight=self.spec.in_flight, poll_interval=self.spec.poll_interval,
            rpcs=total, rpc_per_s=round(total / window, 2), ok_rpc_per_s=round(total_ok / window, 2),
            jobs_completed=self.completed, jobs_per_s=round(self.completed / window, 2),
            jobs_not_succeeded=self.not_succeeded, executions_failed=self.exec_failed,
            creates_ok=self.creates_ok, creates_attempted=self.creates_attempted,
            per_rpc=per_rpc, errors=dict(self.errors), error_samples=self.error_samples,
            unfinished=self.unfinished, phases=dict(self.phases), total_rpcs=self.total_rpcs,
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _phase_names() -> dict[int, str]:
    from flyteidl.core import execution_pb2

    return {v.number: v.name for v in execution_pb2.TaskExecution.DESCRIPTOR.enum_types_by_name["Phase"].values}


async def run_load(spec: LoadSpec) -> LoadResult:
    """Drive the host at ``spec.target`` for ``spec.duration`` seconds; returns what the client saw."""
    options = [("grpc.max_receive_message_length", 16 * 1024 * 1024), ("grpc.enable_retries", 0)]
    run = _Run(spec)
    async with grpc.aio.insecure_channel(spec.target, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        stub = agent_pb2_grpc.AsyncAgentServiceStub(channel)
        run.start = time.monotonic()
        run.window_start = run.start + spec.warmup
        run.end = run.start + spec.warmup + spec.duration
        work = asyncio.gather(*(run.execution(stub, i) for i in range(spec.in_flight)))
        if spec.drain_limit is None:
            await work
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(work, spec.warmup + spec.duration + spec.drain_limit)
    result = run.result()
    names = _phase_names()
    result.phases = {names.get(int(k), k): v for k, v in result.phases.items()}
    return result


def trivial_template(task_type: str) -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(resource_type=identifier_pb2.TASK, project="flytesnacks",
                                     domain="development", name="bench.task", version="v1"),
        type=task_type, interface=interface_pb2.TypedInterface())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--task-type", required=True, help="a task type with no inputs and no outputs")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--poll-interval", type=float, default=0.0)
    parser.add_argument("--deadline", type=float, default=10.0)
    args = parser.parse_args(argv)
    spec = LoadSpec(args.target, trivial_template(args.task_type), in_flight=args.in_flight, duration=args.duration,
                    warmup=args.warmup, poll_interval=args.poll_interval, deadline=args.deadline,
                    run_id=f"cli{int(time.time())}")
    print(json.dumps(asyncio.run(run_load(spec)).to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
