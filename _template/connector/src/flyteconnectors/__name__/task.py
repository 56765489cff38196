"""flytekit task type for workflow authors: a {{Name}} job.

This module imports flytekit; the host never imports it.
"""

from __future__ import annotations

from typing import Any

from flyteconnectors.core.local import ConnectorTask
from flyteconnectors.{{name}}.connector import {{Name}}Config, {{Name}}Job


class {{Name}}Task(ConnectorTask):
    """One {{Name}} job; its ``result`` output is what the service reports for the job::

        report = {{Name}}Task("reports.daily", payload="daily", outputs={"result": str})
    """

    def __init__(self, name: str, *, payload: str = "", priority: int = 1,
                 outputs: dict[str, type] | None = None, **task_kwargs: Any) -> None:
        config = {{Name}}Config(payload=payload, priority=priority)
        super().__init__(name=name, connector={{Name}}Job, config=config,
                         outputs={"result": str} if outputs is None else outputs, **task_kwargs)
