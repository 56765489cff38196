"""The script a Databricks cluster runs for a ``databricks-function`` task (``spark_python_task.python_file``).

Its arguments are the task's rendered container args: ``pyflyte-execute ...`` or ``pyflyte-fast-execute ...``.
It runs them in-process, as flytetools' ``flytekitplugins/databricks/entrypoint.py`` does, so the Spark session
of the cluster is the one the task sees. Upload it to the workspace (or a volume) and point ``python_file`` at it
to avoid fetching flytetools from GitHub; the local fake runs it with ``python -m``.

Needs flytekit on the cluster (the task's image or environment provides it). Never imported by the host.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("pyflyte-execute", "pyflyte-fast-execute"):
        raise SystemExit(f"expected pyflyte-execute or pyflyte-fast-execute arguments, got {args[:1]}")
    from flytekit.bin.entrypoint import execute_task_cmd, fast_execute_task_cmd

    command = execute_task_cmd if args[0] == "pyflyte-execute" else fast_execute_task_cmd
    # standalone_mode=False: no sys.exit(0) on success. A failed task still exits non-zero when
    # FLYTE_FAIL_ON_ERROR=true (the connector sets it), which is what fails the Databricks run.
    command.main(args=args[1:], prog_name=args[0], standalone_mode=False)


if __name__ == "__main__":
    main()
