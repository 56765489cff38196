"""Example workflows run with ``pyflyte run`` by the local-execution tests."""

from flytekit import task, workflow

from flyteconnectors.core.local import ConnectorTask, SQLConnectorTask
from local_examples.toy_service import ToyEcho, ToyEchoConfig, ToyJob, ToyJobConfig, ToyQuery, ToyRunConfig
from local_examples.toy_tasks import ToyRunTask  # noqa: F401  (registers the @task plugin)

count_rows = SQLConnectorTask(
    "count_rows",
    ToyQuery,
    "SELECT COUNT(*) FROM events WHERE day = '{{ .inputs.day }}'",
    {"warehouse": "wh1", "steps": ["QUEUED", "RUNNING", "SUCCEEDED"]},
    inputs={"day": str},
    outputs={"result": str},
)

make_report = ConnectorTask("make_report", ToyJob, ToyJobConfig(payload="report"), inputs={"rows": str},
                            outputs={"result": str})

shout = ConnectorTask("shout", ToyEcho, ToyEchoConfig(prefix="> "), inputs={"text": str}, outputs={"out": str})


@task(task_config=ToyRunConfig(cluster="tiny"))
def remote_double(n: int) -> int:
    return n * 2


@workflow
def pipeline(day: str = "2024-05-01", n: int = 21) -> tuple[str, int]:
    rows = count_rows(day=day)
    report = make_report(rows=rows)
    said = shout(text=report)
    return said, remote_double(n=n)


@workflow
def quick(day: str = "2024-05-01") -> str:
    return shout(text=make_report(rows=count_rows(day=day)))


never_ends = ConnectorTask("never_ends", ToyJob, ToyJobConfig(payload="forever", steps=["RUNNING"]))


@workflow
def hangs() -> None:
    never_ends()


too_slow = ConnectorTask("too_slow", ToyJob, ToyJobConfig(payload="slow", steps=["RUNNING"]), timeout=1)


@workflow
def times_out() -> None:
    too_slow()
