"""Prometheus metrics of the core. Names start with ``flyteconnectors_``."""

from __future__ import annotations

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
