"""CI selection: a change runs the packages it touches plus the core; core or tooling changes run everything."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tools.changed_packages import changed_files, select

CONNECTORS = ["bigquery", "openai", "snowflake"]
EVERYTHING = ["core", *CONNECTORS]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["connectors/snowflake/src/flyteconnectors/snowflake/connector.py"], ["core", "snowflake"]),
        (["connectors/openai/README.md", "connectors/bigquery/tests/test_x.py"], ["core", "bigquery", "openai"]),
        (["core/src/flyteconnectors/core/dispatcher.py"], EVERYTHING),
        (["noxfile.py"], EVERYTHING),
        (["tools/release.py", "connectors/openai/README.md"], EVERYTHING),
        (["pyproject.toml"], EVERYTHING),
        (["docs/releasing.md", "README.md"], []),
        ([], []),
    ],
)
def test_selection(files: list[str], expected: list[str]) -> None:
    assert select(files, CONNECTORS) == expected


def test_changed_files_sees_commits_edits_and_new_files(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "ci@example.com")
    git("config", "user.name", "ci")
    for rel in ("connectors/openai/a.py", "connectors/snowflake/b.py", "connectors/bigquery/c.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "base")
    git("checkout", "-qb", "feature")
    (tmp_path / "connectors/openai/a.py").write_text("x = 2\n")
    git("commit", "-qam", "openai change")
    (tmp_path / "connectors/snowflake/b.py").write_text("x = 3\n")  # uncommitted
    (tmp_path / "connectors/bigquery/new.py").write_text("")  # untracked
    assert changed_files("main", tmp_path) == ["connectors/bigquery/new.py", "connectors/openai/a.py",
                                               "connectors/snowflake/b.py"]
