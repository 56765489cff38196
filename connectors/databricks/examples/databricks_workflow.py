"""Three Databricks task types in one workflow: a Python function, a saved job and a SQL statement.

Against the local fake, both started in this folder (the fake runs ``triple`` with ``pyflyte-execute`` in a
subprocess, and that process imports this module the way a cluster would from the task's image)::

    cd examples
    flyteconnectors fake databricks --port 8555 &
    export FLYTECONNECTORS_DATABRICKS_HOST=https://example.cloud.databricks.com
    export FLYTECONNECTORS_DATABRICKS_HOST_OVERRIDE=http://127.0.0.1:8555
    export DATABRICKS_TOKEN=dapi-example
    pyflyte run databricks_workflow.py report --n 4

Against a workspace: drop HOST_OVERRIDE, use a real host and token, a real cluster id, warehouse id and job id.
"""

from __future__ import annotations

from flytekit import task, workflow

from flyteconnectors.databricks import DatabricksFunctionConfig, DatabricksJobTask, DatabricksSQLTask


@task(task_config=DatabricksFunctionConfig(existing_cluster_id="0101-123456-example"))
def triple(n: int) -> int:
    """Runs on the cluster (in the fake: in a local subprocess, through the same entrypoint)."""
    return n * 3


squares = DatabricksSQLTask(
    "squares",
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) SELECT i, i * i AS square FROM s",
    warehouse_id="0123456789abcdef",
    inputs={"n": int},
    outputs={"rows": list[dict], "row_count": int},
)

example_job = DatabricksJobTask(
    "example_job",
    job_id=501,
    inputs={"day": str},
    outputs={"run_id": int, "output": str},
)


@workflow
def report(n: int = 3, day: str = "2024-05-01") -> tuple[int, int, str]:
    tripled = triple(n=n)
    _, count = squares(n=tripled)
    _, message = example_job(day=day)
    return tripled, count, message
