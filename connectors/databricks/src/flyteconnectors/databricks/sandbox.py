"""What ``flyteconnectors sandbox`` runs for Databricks: host cases against the fake, and the example workflow."""

from __future__ import annotations

from typing import Any

from flyteconnectors.core import Phase
from flyteconnectors.core.sandbox import SandboxCase, SandboxExample, SandboxSpec, examples_dir
from flyteconnectors.core.testing import builders
from flyteconnectors.databricks.fake import DatabricksFake


def _cases(fake: Any) -> list[SandboxCase]:
    sql = builders.task_template("databricks-sql", {"warehouse_id": "sandbox"}, sql="SELECT :n + 1 AS answer",
                                 inputs={"n": int}, outputs={"rows": list[dict], "row_count": int})
    job = builders.task_template("databricks-run-job", {"job_id": 501}, inputs={"day": str},
                                 outputs={"run_id": int, "run_page_url": str, "output": str})
    failed = {"state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED",
                        "state_message": "Task failed: ZeroDivisionError"}, "status": None}
    return [
        SandboxCase("a SQL statement with a named parameter", sql, {"n": 41}),
        SandboxCase("a saved job, run now", job, {"day": "2024-05-01"}),
        SandboxCase("a run that fails", job, {"day": "2024-05-01"}, expect=Phase.FAILED, script=("RUNNING", failed)),
        SandboxCase("a running job, cancelled", job, {"day": "2024-05-01"}, script=("RUNNING",), cancel=True),
    ]


def spec() -> SandboxSpec:
    folder = examples_dir(__file__)
    examples = [SandboxExample(folder / "databricks_workflow.py", "report", ("--n", "4"))] if folder else []
    return SandboxSpec(
        package="databricks",
        fake=lambda: DatabricksFake(workdir=str(folder) if folder else None),
        settings=lambda fake: {"host": "https://sandbox.cloud.databricks.com", "host_override": fake.url},
        secrets={"databricks_token": "dapi-sandbox-dummy"},
        cases=_cases,
        examples=examples,
        cancelled=lambda fake: sum(run.cancelled for run in fake.runs.values()),  # type: ignore[attr-defined]
    )
