"""databricks-function: a Flyte Python task runs for real in the fake workspace, through pyflyte-execute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flyte_tasks
from flyteidl.core import literals_pb2
from flytekit.configuration import ImageConfig, SerializationSettings

from flyteconnectors.core import literals
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import PropellerClient
from flyteconnectors.databricks.fake import DatabricksFake

CLUSTER = {"existing_cluster_id": "0101-123456-abcdefgh"}


def function_template(fn: Any, config: dict[str, Any], inputs: dict[str, Any], outputs: dict[str, Any],
                      workdir: Path) -> Any:
    """The template Propeller sends: the task's container args, rendered for this attempt's directories."""
    settings = SerializationSettings(image_config=ImageConfig.auto_default_image())
    rendered = {
        "{{.input}}": str(workdir / "inputs.pb"),
        "{{.outputPrefix}}": str(workdir / "out"),
        "{{.rawOutputDataPrefix}}": str(workdir / "raw"),
        "{{.checkpointOutputPrefix}}": str(workdir / "checkpoint"),
        "{{.prevCheckpointPrefix}}": "",
    }
    args = [rendered.get(a, a) for a in fn.get_default_command(settings)]
    return builders.task_template("databricks-function", config, inputs=inputs, outputs=outputs,
                                  container_args=args, name=fn.name)


def write_inputs(workdir: Path, values: dict[str, Any], types: dict[str, Any]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "inputs.pb").write_bytes(builders.literal_map(values, types).SerializeToString())


def read_outputs(workdir: Path) -> dict[str, Any]:
    lm = literals_pb2.LiteralMap()
    lm.ParseFromString((workdir / "out" / "outputs.pb").read_bytes())
    return literals.inputs_to_python(lm.literals)


def test_function_task_runs_end_to_end_and_writes_its_outputs(
    propeller: PropellerClient, fake: DatabricksFake, tmp_path: Path
) -> None:
    write_inputs(tmp_path, {"a": 20, "b": 22}, {"a": int, "b": int})
    template = function_template(flyte_tasks.add, CLUSTER, {"a": int, "b": int}, {"o0": int}, tmp_path)

    meta = propeller.create(template, {"a": 20, "b": 22}, output_prefix=str(tmp_path / "out"))
    final, seen = propeller.poll(template, meta, interval=0.05)

    assert final.phase == 3, final.message
    assert read_outputs(tmp_path) == {"o0": 42}
    assert {r.phase for r in seen[:-1]} <= {6, 2}  # INITIALIZING while the cluster starts, then RUNNING
    [run] = fake.runs.values()
    assert final.log_links[0].uri == f"http://127.0.0.1:{fake.port}/?o=1234567890#job/{run.job_id}/run/{run.run_id}"
    submitted = fake.requests("POST", "/jobs/runs/submit")[0].json()
    task = submitted["tasks"][0]
    assert task["existing_cluster_id"] == CLUSTER["existing_cluster_id"]
    assert task["spark_python_task"]["parameters"][0] == "pyflyte-execute"
    assert submitted["idempotency_token"].startswith("fc-")


def test_failed_python_task_fails_the_run_with_the_python_error(
    propeller: PropellerClient, fake: DatabricksFake, tmp_path: Path
) -> None:
    write_inputs(tmp_path, {"reason": "bad input"}, {"reason": str})
    template = function_template(flyte_tasks.explode, CLUSTER, {"reason": str}, {"o0": int}, tmp_path)

    final, _ = propeller.poll(template, propeller.create(template, {"reason": "bad input"},
                                                          output_prefix=str(tmp_path / "out")), interval=0.05)

    # pyflyte-execute exits 0 after a failed task unless FLYTE_FAIL_ON_ERROR is set: the run would say SUCCESS.
    assert final.phase == 5
    assert "boom: bad input" in final.message
    assert "Workload failed" in final.message
    env = fake.requests("POST", "/jobs/runs/submit")[0].json()["environment_variables"][0]["spec"]["variables"]
    assert env["FLYTE_FAIL_ON_ERROR"] == "true"


def test_function_run_logs_stream_the_task_output(
    propeller: PropellerClient, fake: DatabricksFake, tmp_path: Path
) -> None:
    from flyteidl.admin import agent_pb2

    write_inputs(tmp_path, {"reason": "no luck"}, {"reason": str})
    template = function_template(flyte_tasks.explode, CLUSTER, {"reason": str}, {"o0": int}, tmp_path)
    meta = propeller.create(template, {"reason": "no luck"}, output_prefix=str(tmp_path / "out"))
    propeller.poll(template, meta, interval=0.05)

    stream = propeller.async_stub.GetTaskLogs(agent_pb2.GetTaskLogsRequest(
        task_category=agent_pb2.TaskCategory(name="databricks-function"), resource_meta=meta), timeout=10)
    lines = [line for message in stream if message.HasField("body") for line in message.body.results]

    assert any("ValueError: boom: no luck" in line for line in lines)
