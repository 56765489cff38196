"""Releases are per package: one package's version and changelog change, the others stay byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import snapshot

from tools import release
from tools.repo import connector_names, load_toml

ENTRY = "### Fixed\n- Polling no longer stops at the first throttled status call.\n"


def add_entry(changelog: Path, text: str = ENTRY) -> None:
    if not changelog.exists() or "## [Unreleased]\n" not in changelog.read_text():
        changelog.write_text("# Changelog\n\n## [Unreleased]\n")
    changelog.write_text(changelog.read_text().replace("## [Unreleased]\n", f"## [Unreleased]\n\n{text}", 1))


def version_of(folder: Path) -> str:
    return str(load_toml(folder / "pyproject.toml")["project"]["version"])


def test_release_bumps_only_that_package(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = connector_names(repo_copy)[0]
    folder = repo_copy / "connectors" / name
    add_entry(folder / "CHANGELOG.md")
    old = version_of(folder)
    before = snapshot(repo_copy)

    code = release.main([name, "minor", "--root", str(repo_copy), "--no-build", "--date", "2026-02-03"])

    assert code == 0
    after = snapshot(repo_copy)
    changed = {path for path in before if before[path] != after.get(path)} | (set(after) - set(before))
    assert changed == {f"connectors/{name}/pyproject.toml", f"connectors/{name}/CHANGELOG.md"}
    major, minor, _ = old.split(".")
    new = f"{major}.{int(minor) + 1}.0"
    assert version_of(folder) == new
    changelog = (folder / "CHANGELOG.md").read_text()
    unreleased, released = changelog.split(f"## [{new}] - 2026-02-03", 1)
    assert "Polling no longer stops" not in unreleased and "Polling no longer stops" in released
    assert "## [Unreleased]" in unreleased
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"tag: {name}-v{new}"
    others = [p for p in {*connector_names(repo_copy), "core"} if p != name]
    assert len(others) >= 2
    for other in others:
        other_folder = repo_copy / ("core" if other == "core" else f"connectors/{other}")
        assert version_of(other_folder) == load_toml(other_folder / "pyproject.toml")["project"]["version"]


def test_dry_run_builds_and_checks_but_touches_nothing(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = connector_names(repo_copy)[-1]
    folder = repo_copy / "connectors" / name
    add_entry(folder / "CHANGELOG.md")
    old = version_of(folder)
    before = snapshot(repo_copy)

    code = release.main([name, "patch", "--dry-run", "--root", str(repo_copy)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert snapshot(repo_copy) == before
    assert not (repo_copy / "dist").exists()
    major, minor, patch = old.split(".")
    new = f"{major}.{minor}.{int(patch) + 1}"
    assert f'+version = "{new}"' in out
    assert "built and checked: " in out and f"-{new}-py3-none-any.whl" in out
    assert out.splitlines()[-1] == f"tag: {name}-v{new}"


def test_core_release_is_tagged_core(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_entry(repo_copy / "core" / "CHANGELOG.md")
    major, _, _ = version_of(repo_copy / "core").split(".")
    assert release.main(["core", "major", "--root", str(repo_copy), "--no-build"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"tag: core-v{int(major) + 1}.0.0"


def test_release_without_changelog_entries_is_refused(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = connector_names(repo_copy)[0]
    changelog = repo_copy / "connectors" / name / "CHANGELOG.md"
    changelog.write_text("# Changelog\n\n## [Unreleased]\n\n### Added\n\n## [0.1.0] - 2026-01-01\n\n- First.\n")
    before = snapshot(repo_copy)

    assert release.main([name, "minor", "--root", str(repo_copy), "--no-build"]) == 1

    assert "nothing to release" in capsys.readouterr().err
    assert snapshot(repo_copy) == before


def test_set_version_changes_only_the_project_version() -> None:
    text = ('[build-system]\nrequires = ["hatchling>=1.25"]\n\n[project]\nname = "x"\nversion = "0.1.0"\n'
            'dependencies = ["a>=1"]\n\n[tool.other]\nversion = "9.9.9"\n')
    assert release.set_version(text, "0.2.0") == text.replace('version = "0.1.0"', 'version = "0.2.0"')


@pytest.mark.parametrize(("old", "part", "new"), [("0.1.9", "patch", "0.1.10"), ("0.9.3", "minor", "0.10.0"),
                                                   ("1.2.3", "major", "2.0.0")])
def test_bump(old: str, part: str, new: str) -> None:
    assert release.bump(old, part) == new


def test_changelog_entries_move_under_the_new_version() -> None:
    before = "# Changelog\n\n## [Unreleased]\n\n### Added\n- Chat.\n\n## [0.1.0] - 2026-01-01\n\n- First.\n"
    assert release.compile_changelog(before, "0.2.0", "2026-02-03") == (
        "# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2026-02-03\n\n### Added\n- Chat.\n\n"
        "## [0.1.0] - 2026-01-01\n\n- First.\n"
    )
