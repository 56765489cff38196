"""The conventions every folder under connectors/ follows, as checkable rules.

Each rule takes the connector folder and returns the problems it found (empty when the rule holds). The
structure test runs every rule on every folder; ``python -m tools.structure [folder ...]`` does the same from
the command line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.repo import DIST_PREFIX, VERSION_RE, connector_folders, load_toml

NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")
CORE_DEP_RE = re.compile(r"^flyteconnectors-core\s*(\[[^\]]*\])?\s*(?P<spec>[^;]*)")
CHANGELOG_SECTION_RE = re.compile(r"^## \[(Unreleased|\d+\.\d+\.\d+)\]", re.MULTILINE)

Rule = Callable[[Path], list[str]]
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return register


def _project(folder: Path) -> dict[str, Any]:
    path = folder / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return dict(load_toml(path).get("project", {}))
    except Exception:  # reported by the pyproject rule
        return {}


@rule("folder-name")
def folder_name(folder: Path) -> list[str]:
    if NAME_RE.match(folder.name):
        return []
    return [f"the folder name {folder.name!r} must be lower-case letters and digits: it is also the import name, "
            "the distribution suffix, the entry-point key and the tag prefix"]


@rule("pyproject")
def pyproject(folder: Path) -> list[str]:
    path = folder / "pyproject.toml"
    if not path.is_file():
        return ["has no pyproject.toml"]
    try:
        data = load_toml(path)
    except Exception as err:
        return [f"pyproject.toml does not parse: {err}"]
    if "project" not in data:
        return ["pyproject.toml has no [project] table"]
    return []


@rule("distribution-name")
def distribution_name(folder: Path) -> list[str]:
    name = _project(folder).get("name")
    expected = DIST_PREFIX + folder.name
    return [] if name == expected else [f"[project].name is {name!r}, expected {expected!r}"]


@rule("version")
def version(folder: Path) -> list[str]:
    project = _project(folder)
    if "version" in project.get("dynamic", []):
        return ["the version must be static in pyproject.toml (the one source the release session bumps)"]
    value = project.get("version")
    if not isinstance(value, str) or not VERSION_RE.match(value):
        return [f"[project].version is {value!r}, expected X.Y.Z"]
    return []


@rule("connector-entry-point")
def connector_entry_point(folder: Path) -> list[str]:
    eps = _project(folder).get("entry-points", {}).get("flyteconnectors", {})
    expected = {folder.name: f"flyteconnectors.{folder.name}.connector:CONNECTORS"}
    if eps != expected:
        return [f'[project.entry-points.flyteconnectors] is {eps!r}, expected {expected!r}']
    return []


@rule("fake-entry-point")
def fake_entry_point(folder: Path) -> list[str]:
    eps = _project(folder).get("entry-points", {}).get("flyteconnectors.fakes", {})
    value = eps.get(folder.name, "")
    prefix = f"flyteconnectors.{folder.name}.fake:"
    if set(eps) != {folder.name} or not value.startswith(prefix) or len(value) == len(prefix):
        return [f'[project.entry-points."flyteconnectors.fakes"] is {eps!r}, expected '
                f'{{{folder.name!r}: "{prefix}<Name>Fake"}}']
    return []


@rule("core-dependency")
def core_dependency(folder: Path) -> list[str]:
    for dep in _project(folder).get("dependencies", []):
        match = CORE_DEP_RE.match(dep)
        if match:
            if re.search(r">=\s*\d", match["spec"]):
                return []
            return [f"the dependency {dep!r} needs a lower bound (flyteconnectors-core>=X.Y.Z): the host refuses a "
                    "connector whose core requirement is not met"]
    return ["[project].dependencies does not list flyteconnectors-core>=X.Y.Z"]


@rule("testing-extra")
def testing_extra(folder: Path) -> list[str]:
    extras = _project(folder).get("optional-dependencies", {})
    if "testing" in extras:
        return []
    return ["[project.optional-dependencies] has no 'testing' extra (its test session installs <pkg>[testing])"]


@rule("readme")
def readme(folder: Path) -> list[str]:
    path = folder / "README.md"
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        return ["has no README.md"]
    return []


@rule("changelog")
def changelog(folder: Path) -> list[str]:
    path = folder / "CHANGELOG.md"
    if not path.is_file():
        return ["has no CHANGELOG.md"]
    if not CHANGELOG_SECTION_RE.search(path.read_text(encoding="utf-8")):
        return ["CHANGELOG.md has no '## [Unreleased]' or '## [X.Y.Z]' section"]
    return []


@rule("contract-test")
def contract_test(folder: Path) -> list[str]:
    return [] if (folder / "tests" / "test_contract.py").is_file() else ["has no tests/test_contract.py"]


@rule("connector-module")
def connector_module(folder: Path) -> list[str]:
    path = folder / "src" / "flyteconnectors" / folder.name / "connector.py"
    return [] if path.is_file() else [f"has no {path.relative_to(folder)}"]


@rule("fake-module")
def fake_module(folder: Path) -> list[str]:
    path = folder / "src" / "flyteconnectors" / folder.name / "fake.py"
    return [] if path.is_file() else [f"has no {path.relative_to(folder)}"]


@rule("namespace-package")
def namespace_package(folder: Path) -> list[str]:
    path = folder / "src" / "flyteconnectors" / "__init__.py"
    if path.exists():
        return [f"{path.relative_to(folder)} must not exist: flyteconnectors is a PEP 420 namespace shared by "
                "every package"]
    return []


def check(folder: Path) -> list[str]:
    """Every problem of one connector folder, each prefixed with its rule and the folder."""
    return [f"[{name}] connectors/{folder.name}: {problem}" for name, fn in RULES.items() for problem in fn(folder)]


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] or connector_folders()
    problems = [p for folder in folders for p in check(folder)]
    for problem in problems:
        print(problem)
    print(f"{len(folders)} connector folders checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
