"""Cross-package tests: they import the repository tooling from tools/ and work on copies of the repository."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.new_connector import scaffold  # noqa: E402
from tools.release import COPY_IGNORE  # noqa: E402
from tools.repo import connector_names  # noqa: E402


def copy_repo(dest: Path, minimum_connectors: int = 0) -> Path:
    """The packages of this repository (core, connectors, workspace pyproject) copied to ``dest``.

    Scaffolds throwaway connectors when fewer than ``minimum_connectors`` exist, so the tests mean something
    before the real connectors land.
    """
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    shutil.copytree(ROOT / "core", dest / "core", ignore=COPY_IGNORE)
    (dest / "connectors").mkdir()
    for name in connector_names(ROOT):
        shutil.copytree(ROOT / "connectors" / name, dest / "connectors" / name, ignore=COPY_IGNORE)
    for extra in ("alpha", "beta", "gamma")[: max(0, minimum_connectors - len(connector_names(dest)))]:
        scaffold(extra, dest)
    if not (dest / "core" / "CHANGELOG.md").exists():
        (dest / "core" / "CHANGELOG.md").write_text("# Changelog\n\n## [Unreleased]\n")
    return dest


def scaffold_alone(root: Path, name: str) -> Path:
    """A scaffolded connector in an otherwise empty repository (only the core's pyproject, for its version)."""
    (root / "core").mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "core" / "pyproject.toml", root / "core" / "pyproject.toml")
    return scaffold(name, root)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "repo", minimum_connectors=2)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of every package under ``root``, by relative path."""
    files = [p for folder in ("core", "connectors") for p in (root / folder).rglob("*") if p.is_file()]
    return {str(p.relative_to(root)): p.read_bytes() for p in files if "__pycache__" not in p.parts}
