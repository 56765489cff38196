"""Prometheus metrics of the core. Names start with ``flyteconnectors_``."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "flyteconnectors_requests_total",
    "Connector calls by task type, operation and outcome.",
    ["task_type", "operation", "outcome"],
)
LATENCY = Histogram(
    "flyteconnectors_request_seconds",
    "Latency of connector calls.",
    ["task_type", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT = Gauge("flyteconnectors_in_flight", "Connector calls in progress.", ["task_type", "operation"],
                  multiprocess_mode="livesum")
UNKNOWN_STATES = Counter(
    "flyteconnectors_unknown_states_total",
    "Service states a connector's state map did not know (reported non-terminal).",
    ["service", "state"],
)
RETRIES = Counter(
    "flyteconnectors_retries_total", "Transient failures retried by the core.", ["task_type", "operation"]
)
LOOP_LAG = Histogram(
    "flyteconnectors_event_loop_lag_seconds",
    "How late the event loop ran a timer: a blocking call on the loop shows up here.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LOOP_STALLS = Counter(
    "flyteconnectors_event_loop_stalls_total", "Loop lags over the stall threshold.", ["suspects"]
)
# With --workers the gauges of all processes add up (prometheus_client multiprocess mode).
EXECUTOR_BUSY = Gauge(
    "flyteconnectors_executor_busy_threads", "Threads busy in a connector's executor.", ["connector"],
    multiprocess_mode="livesum",
)
EXECUTOR_SIZE = Gauge("flyteconnectors_executor_threads", "Size of a connector's executor.", ["connector"],
                      multiprocess_mode="livesum")
EXECUTOR_QUEUED = Gauge(
    "flyteconnectors_executor_queued", "Calls waiting for a thread in a connector's executor.", ["connector"],
    multiprocess_mode="livesum",
)


class CallMetrics:
    """The metric children of one (task_type, operation), looked up once.

    ``labels()`` takes a lock and builds a key on every call; the dispatcher records four of these per RPC.
    Children are created on first use, so a series appears exactly when it did with ``labels()`` per call.
    """

    __slots__ = ("_requests", "_retries", "in_flight", "latency", "operation", "task_type")

    def __init__(self, task_type: str, operation: str) -> None:
        self.task_type = task_type
        self.operation = operation
        self.in_flight = IN_FLIGHT.labels(task_type=task_type, operation=operation)
        self.latency = LATENCY.labels(task_type=task_type, operation=operation)
        self._requests: dict[str, Any] = {}
        self._retries: Any = None

    def requests(self, outcome: str) -> Any:
        child = self._requests.get(outcome)
        if child is None:
            child = self._requests[outcome] = REQUESTS.labels(
                task_type=self.task_type, operation=self.operation, outcome=outcome
            )
        return child

    def retries(self) -> Any:
        if self._retries is None:
            self._retries = RETRIES.labels(task_type=self.task_type, operation=self.operation)
        return self._retries


_CALL_METRICS: dict[tuple[str, str], CallMetrics] = {}
#: Task types come from requests; past this many pairs, children are looked up per call rather than kept here.
_CALL_METRICS_LIMIT = 4096


def for_call(task_type: str, operation: str) -> CallMetrics:
    """The (cached) metric children of calls of ``operation`` on ``task_type``."""
    found = _CALL_METRICS.get((task_type, operation))
    if found is None:
        found = CallMetrics(task_type, operation)
        if len(_CALL_METRICS) < _CALL_METRICS_LIMIT:
            _CALL_METRICS[(task_type, operation)] = found
    return found
