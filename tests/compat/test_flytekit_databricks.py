"""flytekitplugins-spark's Databricks tasks (``databricks`` and ``spark`` task types), served by
flyteconnectors-databricks against its fake workspace, which runs the task's pyflyte-execute for real."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flytekitplugins.spark", reason="needs flytekitplugins-spark: nox -s compat-flytekit")

import flytekit_databricks_tasks as tasks
from flyteidl.core import literals_pb2, tasks_pb2
from flytekit_compat_helpers import FAILED, SUCCEEDED, our_host, serialize

from flyteconnectors.core import literals
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import PropellerClient
from flyteconnectors.databricks.fake import DatabricksFake

TOKEN = "dapi-0123456789abcdef-test"
TEAM_TOKEN = "dapi-team-a-0123456789"


@pytest.fixture(autouse=True)
def _no_real_databricks_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "FLYTECONNECTORS_DATABRICKS_", "FLYTE_DATABRICKS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/dev/null")


@pytest.fixture
def fake() -> Iterator[DatabricksFake]:
    # On Databricks serverless compute flytetools' entrypoint sets DATABRICKS_SERVERLESS, so flytekit's Spark task
    # takes the session Databricks made instead of starting Spark itself.
    service = DatabricksFake(python_path=[str(Path(__file__).parent)], tokens={TOKEN, TEAM_TOKEN},
                             env={"DATABRICKS_SERVERLESS": "true"})
    with service.serve():
        yield service
    service.reset()


@pytest.fixture
def propeller(fake: DatabricksFake) -> Iterator[PropellerClient]:
    # flytekit read the workspace token from FLYTE_DATABRICKS_ACCESS_TOKEN (or a namespace secret); a task naming
    # its own secret reads databricks_<name>_token here.
    secrets = {"FLYTE_DATABRICKS_ACCESS_TOKEN": TOKEN, "databricks_team_a_token_token": TEAM_TOKEN}
    with our_host("databricks", {"host_override": fake.url, "retry_timeout_seconds": 3}, secrets) as host:
        yield PropellerClient(host.channel)


def rendered(task: Any, workdir: Path) -> tasks_pb2.TaskTemplate:
    """The template as Propeller sends it: container args rendered for this attempt's directories."""
    template = serialize(task)
    values = {"{{.input}}": str(workdir / "inputs.pb"), "{{.outputPrefix}}": str(workdir / "out"),
              "{{.rawOutputDataPrefix}}": str(workdir / "raw"), "{{.checkpointOutputPrefix}}": str(workdir / "ckpt"),
              "{{.prevCheckpointPrefix}}": ""}
    args = [values.get(a, a) for a in template.container.args]
    del template.container.args[:]
    template.container.args.extend(args)
    return template


def run(propeller: PropellerClient, template: tasks_pb2.TaskTemplate, inputs: dict[str, Any],
        workdir: Path) -> Any:
    workdir.mkdir(parents=True, exist_ok=True)
    types = {n: v.type for n, v in template.interface.inputs.variables.items()}
    (workdir / "inputs.pb").write_bytes(builders.literal_map(inputs, types).SerializeToString())
    meta = propeller.create(template, inputs, output_prefix=str(workdir / "out"))
    return propeller.poll(template, meta, interval=0.05, output_prefix=str(workdir / "out"))[0]


def outputs(workdir: Path) -> dict[str, Any]:
    lm = literals_pb2.LiteralMap()
    lm.ParseFromString((workdir / "out" / "outputs.pb").read_bytes())
    return literals.inputs_to_python(lm.literals)


def submitted(fake: DatabricksFake) -> dict[str, Any]:
    return fake.requests("POST", r"/jobs/runs/submit$")[-1].json()  # type: ignore[no-any-return]


def test_databricks_v2_task_runs_for_real_and_writes_its_outputs(propeller, fake, tmp_path):
    template = rendered(tasks.add, tmp_path)
    assert (template.type, template.task_type_version) == ("databricks", 0)

    final = run(propeller, template, {"a": 20, "b": 22}, tmp_path)

    assert final.phase == SUCCEEDED, final.message
    assert outputs(tmp_path) == {"o0": 42}
    body = submitted(fake)
    [task] = body["tasks"]
    assert task["spark_python_task"]["python_file"] == "flytekitplugins/databricks/entrypoint_serverless.py"
    assert task["spark_python_task"]["parameters"][0] == "pyflyte-execute"
    assert body["git_source"]["git_commit"] == "572298df1f971fb58c258398bd70a6372f811c96"  # flytekit's flytetools
    assert body["environments"][0]["spec"] == {"client": "2", "dependencies": ["pandas==2.2.2"]}
    variables = body["environment_variables"][0]["spec"]["variables"]
    assert variables["STAGE"] == "dev" and variables["FLYTE_FAIL_ON_ERROR"] == "true"
    assert body["run_name"] == "flytekit serverless"
    assert body["idempotency_token"]  # a retried create adopts this run
    assert fake.requests("POST", r"/jobs/runs/submit$")[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_failed_python_task_fails_with_the_python_error(propeller, fake, tmp_path):
    final = run(propeller, rendered(tasks.explode, tmp_path), {"reason": "bad input"}, tmp_path)

    assert final.phase == FAILED
    assert "boom: bad input" in final.message


def test_new_cluster_task_gets_the_image_its_spark_conf_and_its_own_token(propeller, fake, tmp_path):
    fake.execute_python = False  # a scripted run: this test reads the request
    template = rendered(tasks.on_new_cluster, tmp_path)

    final = propeller.run(template, {"n": 1})

    assert final.phase == SUCCEEDED, final.message
    body = submitted(fake)
    [task] = body["tasks"]
    cluster = task["new_cluster"]
    assert cluster["num_workers"] == 2 and cluster["docker_image"] == {"url": template.container.image}
    assert cluster["spark_conf"] == {"spark.sql.shuffle.partitions": "64"}
    assert cluster["spark_env_vars"]["FLYTE_FAIL_ON_ERROR"] == "true"
    assert task["spark_python_task"]["python_file"] == "flytekitplugins/databricks/entrypoint.py"
    assert body["timeout_seconds"] == 3600
    assert fake.requests("POST", r"/jobs/runs/submit$")[0].headers["authorization"] == f"Bearer {TEAM_TOKEN}"


def test_legacy_spark_task_type_runs_on_the_existing_cluster(propeller, fake, tmp_path):
    fake.execute_python = False
    template = rendered(tasks.legacy_on_existing_cluster, tmp_path)
    assert (template.type, template.task_type_version) == ("spark", 0)

    assert propeller.run(template, {"n": 1}).phase == SUCCEEDED
    [task] = submitted(fake)["tasks"]
    assert task["existing_cluster_id"] == "0101-123456-abcdefgh"
    # flytekit gave an existing cluster no FLYTE_FAIL_ON_ERROR, so a failed task showed as a successful run.
    assert submitted(fake)["environment_variables"][0]["spec"]["variables"]["FLYTE_FAIL_ON_ERROR"] == "true"


def test_no_token_is_written_to_resource_meta(propeller, fake, tmp_path):
    fake.execute_python = False
    template = rendered(tasks.legacy_on_existing_cluster, tmp_path)

    meta = propeller.create(template, {"n": 1})

    # flytekit's connector persisted the bearer token itself in resource_meta (Propeller's etcd state).
    assert TOKEN.encode() not in meta and "auth_token" not in json.loads(meta)["m"]


def test_notebook_task_is_refused_with_what_to_use_instead(propeller, fake, tmp_path):
    final = propeller.run(rendered(tasks.notebook, tmp_path), {"n": 1})

    assert final.phase == FAILED
    assert "custom.notebookPath" in final.message and "databricks-run-job" in final.message
    assert fake.requests("POST", r"/jobs/runs/submit$") == []


def test_run_without_a_state_keeps_polling_instead_of_failing(propeller, fake, tmp_path):
    # flytekit answered phase UNDEFINED, which Propeller reads as a retryable failure.
    fake.execute_python = False
    fake.script_next_job({"state": None, "status": None}, "TERMINATED:SUCCESS")
    template = rendered(tasks.legacy_on_existing_cluster, tmp_path)

    final, seen = propeller.poll(template, propeller.create(template, {"n": 1}), interval=0.01)

    assert seen[0].phase not in PropellerClient.TERMINAL and final.phase == SUCCEEDED


def test_run_started_by_flytekits_host_is_not_adopted(propeller, fake, tmp_path):
    from flytekitplugins.spark.connector import DatabricksJobMetadata

    template = rendered(tasks.legacy_on_existing_cluster, tmp_path)
    meta = DatabricksJobMetadata(databricks_instance=tasks.WORKSPACE, run_id="77", auth_token=TOKEN,
                                 auth_type="pat").encode()

    resource = propeller.get(template, meta)

    assert resource.phase == FAILED and "cannot be adopted" in resource.message
    assert TOKEN not in resource.message
    assert fake.requests("GET", r"/jobs/runs/get") == []
