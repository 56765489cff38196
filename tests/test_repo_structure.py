"""Every folder under connectors/ follows the package conventions; each rule is shown to catch its breakage."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, scaffold_alone

from tools import structure
from tools.repo import connector_folders, load_toml, packages

FOLDERS = connector_folders(ROOT)


@pytest.mark.parametrize("rule", list(structure.RULES))
@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_connector_folder_follows_rule(folder: Path, rule: str) -> None:
    problems = structure.RULES[rule](folder)
    assert not problems, f"[{rule}] connectors/{folder.name}: " + "; ".join(problems)


def test_rules_see_every_connector_folder() -> None:
    on_disk = sorted(p.name for p in (ROOT / "connectors").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [f.name for f in FOLDERS] == on_disk


# ------------------------------------------------------------------ the rules themselves, on a synthetic package
def edit_pyproject(pattern: str, replacement: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / "pyproject.toml"
        text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.MULTILINE)
        assert count == 1, f"the breakage {pattern!r} did not apply"
        path.write_text(text)

    return apply


def remove(relative: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / relative.format(name=folder.name)
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return apply


def write(relative: str, text: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / relative).write_text(text)

    return apply


BREAKAGES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "pyproject": ("no pyproject", remove("pyproject.toml")),
    "distribution-name": ("wrong name", edit_pyproject(r'^name = ".*"', 'name = "flyteconnectors-other"')),
    "version": ("dynamic version", edit_pyproject(r'^version = ".*"', 'dynamic = ["version"]')),
    "connector-entry-point": ("entry point under another key",
                              edit_pyproject(r"^(\w+) = \"flyteconnectors\.\w+\.connector:CONNECTORS\"",
                                             r'other = "flyteconnectors.\1.connector:CONNECTORS"')),
    "fake-entry-point": ("no fake entry point",
                         edit_pyproject(r'^\[project\.entry-points\."flyteconnectors\.fakes"\]\n.*\n', "")),
    "core-dependency": ("core without a lower bound",
                        edit_pyproject(r'^dependencies = \["flyteconnectors-core>=[^"]*"', 'dependencies = ['
                                                                                           '"flyteconnectors-core"')),
    "testing-extra": ("no testing extra", edit_pyproject(r"^testing = .*\n", "")),
    "readme": ("no README", remove("README.md")),
    "changelog": ("changelog without sections", write("CHANGELOG.md", "# Changelog\n\nAll good things.\n")),
    "contract-test": ("no contract test", remove("tests/test_contract.py")),
    "connector-module": ("no connector module", remove("src/flyteconnectors/{name}/connector.py")),
    "fake-module": ("no fake module", remove("src/flyteconnectors/{name}/fake.py")),
    "namespace-package": ("an __init__ in the namespace", write("src/flyteconnectors/__init__.py", "")),
}


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    return scaffold_alone(tmp_path, "widget")


def test_scaffolded_package_follows_every_rule(synthetic: Path) -> None:
    assert structure.check(synthetic) == []


def test_every_rule_has_a_breakage_test() -> None:
    assert set(BREAKAGES) | {"folder-name"} == set(structure.RULES)


@pytest.mark.parametrize("rule", sorted(BREAKAGES))
def test_rule_fails_naming_itself_and_the_folder(synthetic: Path, rule: str) -> None:
    _why, breakage = BREAKAGES[rule]
    breakage(synthetic)
    problems = structure.check(synthetic)
    assert any(p.startswith(f"[{rule}] connectors/widget: ") for p in problems), problems
    unrelated = [p for p in problems if not p.startswith(f"[{rule}]")]
    if rule != "pyproject":  # without a pyproject, every pyproject rule fails too
        assert not unrelated, f"breaking {rule} also broke {unrelated}"


def test_folder_name_rule_refuses_names_that_cannot_be_imports(tmp_path: Path) -> None:
    folder = tmp_path / "connectors" / "my-service"
    folder.mkdir(parents=True)
    assert structure.folder_name(folder)
    assert not structure.folder_name(tmp_path / "snowflake")


def test_structure_command_exits_non_zero_and_names_rule_and_folder(synthetic: Path, capsys) -> None:
    (synthetic / "CHANGELOG.md").unlink()
    assert structure.main([str(synthetic)]) == 1
    out = capsys.readouterr().out
    assert "[changelog] connectors/widget: has no CHANGELOG.md" in out


@pytest.mark.parametrize("name", ["acme", "zeta"])  # imports sort before and after core
def test_scaffolded_package_is_lint_clean(tmp_path: Path, name: str) -> None:
    synthetic = scaffold_alone(tmp_path, name)
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    result = subprocess.run([ruff, "check", "--config", str(ROOT / "pyproject.toml"), str(synthetic)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_is_a_namespace_portion_with_a_static_version() -> None:
    project = load_toml(ROOT / "core" / "pyproject.toml")["project"]
    assert project["name"] == "flyteconnectors-core"
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert not (ROOT / "core" / "src" / "flyteconnectors" / "__init__.py").exists()


def test_scaffolded_connector_passes_its_contract_suite(synthetic: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(synthetic / "src"))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(synthetic / "tests")],
                            cwd=synthetic, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\d+ passed", result.stdout)


def test_root_readme_links_every_package() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in packages() if f"]({p.path.relative_to(ROOT)}/README.md)" not in readme]
    assert not missing, f"[readme-table] README.md: the packages table does not link {missing}"
