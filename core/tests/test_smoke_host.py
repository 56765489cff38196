from toy import Echo, ToyJob

from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient


def test_async_job_runs_to_success_with_outputs():
    template = builders.task_template("toy_job", {"steps": ["PENDING", "RUNNING", "DONE"]},
                                      inputs={"x": int}, outputs={"echo": int})
    with HostThread([ToyJob, Echo]) as host:
        client = PropellerClient(host.channel)
        final = client.run(template, {"x": 21})
        assert final.phase == 3
        assert builders.outputs_to_python(final) == {"echo": 42}
        agents = client.list_agents()
        assert {(a.name, a.is_sync) for a in agents} == {("Toy", False), ("Echo", True)}
        res = client.execute_sync(builders.task_template("toy_echo", {"prefix": ">"}, inputs={"text": str},
                                                         outputs={"out": str}), {"text": "hi"})
        assert res.phase == 3 and builders.outputs_to_python(res) == {"out": ">hi"}
