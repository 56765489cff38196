"""The repository's packages, discovered from the filesystem.

One name derives everything: ``snowflake`` is the folder ``connectors/snowflake``, the distribution
``flyteconnectors-snowflake``, the import ``flyteconnectors.snowflake``, the entry-point key ``snowflake``
and the tag ``snowflake-v1.2.0``. The core is the package ``core`` in ``core/``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CORE = "core"
DIST_PREFIX = "flyteconnectors-"
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Package:
    name: str
    path: Path

    @property
    def is_core(self) -> bool:
        return self.name == CORE

    @property
    def distribution(self) -> str:
        return DIST_PREFIX + self.name

    @property
    def import_name(self) -> str:
        return f"flyteconnectors.{self.name}"

    @property
    def pyproject_path(self) -> Path:
        return self.path / "pyproject.toml"

    @property
    def changelog_path(self) -> Path:
        return self.path / "CHANGELOG.md"

    @cached_property
    def pyproject(self) -> dict[str, Any]:
        return load_toml(self.pyproject_path)

    @property
    def version(self) -> str:
        return str(self.pyproject.get("project", {}).get("version", ""))

    def tag(self, version: str | None = None) -> str:
        return f"{self.name}-v{version or self.version}"


def load_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def connector_names(root: Path = ROOT) -> list[str]:
    """Every folder under connectors/ that holds a pyproject.toml, sorted."""
    return sorted(p.parent.name for p in (root / "connectors").glob("*/pyproject.toml"))


def connector_folders(root: Path = ROOT) -> list[Path]:
    """Every folder under connectors/, package or not (the structure test checks each one)."""
    base = root / "connectors"
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []


def packages(root: Path = ROOT) -> list[Package]:
    """The core first, then every connector package."""
    return [Package(CORE, root / CORE), *(Package(n, root / "connectors" / n) for n in connector_names(root))]


def package(name: str, root: Path = ROOT) -> Package:
    for pkg in packages(root):
        if name in (pkg.name, pkg.distribution):
            return pkg
    known = ", ".join(p.name for p in packages(root))
    raise SystemExit(f"unknown package {name!r} (known: {known})")


REQUIREMENT_RE = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<extras>\[[^\]]*\])?\s*(?P<spec>[^;]*)")


@dataclass(frozen=True)
class Requirement:
    """A dependency as declared: the full string, its name, and the lower bound of its range (if any)."""

    text: str
    name: str
    floor: str | None

    @classmethod
    def parse(cls, text: str) -> Requirement:
        match = REQUIREMENT_RE.match(text)
        if not match:
            raise ValueError(f"cannot read the requirement {text!r}")
        floor = re.search(r">=\s*([0-9][^,\s]*)", match["spec"]) or re.search(r"==\s*([0-9][^,\s*]*)$",
                                                                             match["spec"].strip())
        return cls(text, match["name"].lower().replace("_", "-"), floor.group(1) if floor else None)

    @property
    def pinned_to_floor(self) -> str:
        return f"{self.name}=={self.floor}"


def service_requirements(pkg: Package) -> list[Requirement]:
    """The package's own dependencies other than flyteconnectors packages: the service SDKs."""
    deps = [Requirement.parse(d) for d in pkg.pyproject.get("project", {}).get("dependencies", [])]
    return [d for d in deps if not d.name.startswith(DIST_PREFIX)]


def flytekit_requirement(root: Path = ROOT) -> Requirement:
    """flytekit's range, as the core's ``flytekit`` extra declares it."""
    extra = package(CORE, root).pyproject["project"]["optional-dependencies"]["flytekit"]
    return next(r for r in map(Requirement.parse, extra) if r.name == "flytekit")
