"""What ``flyteconnectors sandbox`` runs for Snowflake: host cases against the fake, and the example workflow."""

from __future__ import annotations

from typing import Any

from flyteconnectors.core import Phase
from flyteconnectors.core.sandbox import SandboxCase, SandboxExample, SandboxSpec, examples_dir
from flyteconnectors.core.testing import builders
from flyteconnectors.snowflake.fake import SnowflakeFake

CUSTOM = {"account": "sandbox-account", "user": "FLYTE_SVC", "warehouse": "COMPUTE_WH", "database": "ANALYTICS",
          "schema": "PUBLIC"}


def _cases(fake: Any) -> list[SandboxCase]:
    outputs = {"results": builders.STRUCTURED_DATASET, "query_id": str}
    query = builders.task_template("snowflake-query", CUSTOM, sql="SELECT :n + 1 AS answer", inputs={"n": int},
                                   outputs=outputs)
    failed = {"status": "FAILED_WITH_ERROR", "errorCode": "002003", "errorMessage": "Table 'EVENTS' does not exist"}
    return [
        SandboxCase("a query with a bound parameter", query, {"n": 41}),
        SandboxCase("a query Snowflake rejects", query, {"n": 41}, expect=Phase.FAILED, script=("RUNNING", failed)),
        SandboxCase("a running query, cancelled", query, {"n": 41}, script=("RUNNING",), cancel=True),
    ]


def spec() -> SandboxSpec:
    folder = examples_dir(__file__)
    examples = [SandboxExample(folder / "signups.py", "signups")] if folder else []
    return SandboxSpec(
        package="snowflake",
        fake=SnowflakeFake,
        settings=lambda fake: {"host": "127.0.0.1", "port": str(fake.port), "protocol": "http"},
        secrets={"snowflake_password": "sandbox-dummy-password"},
        cases=_cases,
        examples=examples,
        cancelled=lambda fake: len(fake.cancelled()),  # type: ignore[attr-defined]
    )
