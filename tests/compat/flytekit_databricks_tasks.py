"""Python tasks written for flytekit's Databricks plugin, as a user's workflow module has them.

The Databricks fake runs them for real (pyflyte-execute in a subprocess), so they live in an importable module.
"""

from __future__ import annotations

from flytekit import task
from flytekitplugins.spark import Databricks, DatabricksV2

WORKSPACE = "adb-1234567890.1.azuredatabricks.net"

SERVERLESS = DatabricksV2(
    databricks_conf={
        "run_name": "flytekit serverless",
        "environment_key": "flyte-env",
        "environments": [{"environment_key": "flyte-env",
                          "spec": {"client": "2", "dependencies": ["pandas==2.2.2"],
                                   "environment_vars": {"STAGE": "dev"}}}],
    },
    databricks_instance=WORKSPACE,
)


@task(task_config=SERVERLESS)
def add(a: int, b: int) -> int:
    return a + b


@task(task_config=SERVERLESS)
def explode(reason: str) -> int:
    if reason:
        raise ValueError(f"boom: {reason}")
    return 0


@task(task_config=DatabricksV2(
    databricks_conf={"new_cluster": {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge",
                                     "num_workers": 2},
                     "timeout_seconds": 3600},
    spark_conf={"spark.sql.shuffle.partitions": "64"},
    databricks_instance=WORKSPACE,
    databricks_token_secret="team-a-token",
))
def on_new_cluster(n: int) -> int:
    return n


@task(task_config=Databricks(databricks_conf={"existing_cluster_id": "0101-123456-abcdefgh"},
                             databricks_instance=WORKSPACE))
def legacy_on_existing_cluster(n: int) -> int:
    return n


@task(task_config=DatabricksV2(databricks_conf={"existing_cluster_id": "c-1"}, databricks_instance=WORKSPACE,
                               notebook_path="/Users/me/report"))
def notebook(n: int) -> int:
    return n
