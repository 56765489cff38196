"""What ``flyteconnectors sandbox`` runs for BigQuery: host cases against the fake, and the example workflow."""

from __future__ import annotations

from typing import Any

from flyteconnectors.bigquery.fake import BigQueryFake
from flyteconnectors.core import Phase
from flyteconnectors.core.sandbox import SandboxCase, SandboxExample, SandboxSpec, examples_dir
from flyteconnectors.core.testing import builders

OUTPUTS = {"results": builders.STRUCTURED_DATASET, "job_id": str, "bytes_processed": int}


def _cases(fake: Any) -> list[SandboxCase]:
    query = builders.task_template("bigquery-query", {}, sql="SELECT @n AS n", inputs={"n": int}, outputs=OUTPUTS)
    failed = {"state": "DONE", "errorResult": {"reason": "invalidQuery", "message": "Unrecognized name: nn"}}
    return [
        SandboxCase("a query with a typed parameter", query, {"n": 7}),
        SandboxCase("a query BigQuery rejects", query, {"n": 7}, expect=Phase.FAILED, script=("RUNNING", failed)),
        SandboxCase("a running query, cancelled", query, {"n": 7}, script=("RUNNING",), cancel=True),
    ]


def spec() -> SandboxSpec:
    folder = examples_dir(__file__)
    args = ("--day", "2024-05-01", "--min_total", "20.5")
    examples = [SandboxExample(folder / "daily_orders.py", "daily_orders", args)] if folder else []
    return SandboxSpec(
        package="bigquery",
        fake=BigQueryFake,
        settings=lambda fake: {"endpoint": fake.url, "anonymous": "true", "project": "sandbox-project"},
        cases=_cases,
        examples=examples,
        cancelled=lambda fake: fake.cancelled_count(),  # type: ignore[attr-defined]
    )
