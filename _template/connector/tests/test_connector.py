"""Behaviour specific to {{Name}}, against the fake."""

from flyteconnectors.core import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.host import HostThread, PropellerClient
from flyteconnectors.{{name}}.connector import {{Name}}Job
from flyteconnectors.{{name}}.fake import {{Name}}Fake


def test_job_result_becomes_the_task_output():
    template = builders.task_template("{{name}}-job", {"payload": "daily"}, outputs={"result": str})
    with {{Name}}Fake().serve() as fake, HostThread([{{Name}}Job], settings={"{{name}}": {"endpoint": fake.url}},
                                                    secrets={"{{name}}_token": "t0ken-for-tests"},
                                                    package="{{name}}") as host:
        final = PropellerClient(host.channel).run(template)
    assert final.phase == Phase.SUCCEEDED
    assert builders.outputs_to_python(final) == {"result": "processed daily"}
    assert [entry.json()["payload"] for entry in fake.requests("POST", r"^/v1/jobs$")] == ["daily"]
