"""Check built distributions: metadata renders (twine check), and each wheel holds only its own namespace portion.

``python -m tools.check_dist dist/`` checks every wheel and sdist in a folder against the packages of the repo:
the core wheel may hold only ``flyteconnectors/core/...``, the snowflake wheel only
``flyteconnectors/snowflake/...``; no wheel may hold ``flyteconnectors/__init__.py`` (PEP 420); the version in
the file name is the one in that package's pyproject.toml.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from tools.repo import ROOT, Package, packages


def normalized(distribution: str) -> str:
    return distribution.replace("-", "_")


def wheel_problems(path: Path, pkg: Package) -> list[str]:
    problems = []
    stem = normalized(pkg.distribution)
    expected_prefix = f"{stem}-{pkg.version}-"
    if not path.name.startswith(expected_prefix):
        problems.append(f"{path.name}: expected a name starting with {expected_prefix!r} (version from pyproject)")
    dist_info = f"{stem}-{pkg.version}.dist-info/"
    portion = f"flyteconnectors/{pkg.name}/"
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        for name in names:
            if name.startswith(dist_info) or name.startswith(portion):
                continue
            problems.append(f"{path.name}: holds {name}, outside its namespace portion {portion}")
        if not any(n.startswith(portion) and n.endswith(".py") for n in names):
            problems.append(f"{path.name}: holds no module under {portion}")
        metadata = wheel.read(dist_info + "METADATA").decode() if dist_info + "METADATA" in names else ""
        entry_points = wheel.read(dist_info + "entry_points.txt").decode() if (
            dist_info + "entry_points.txt") in names else ""
    if f"Name: {pkg.distribution}\n" not in metadata:
        problems.append(f"{path.name}: METADATA does not name {pkg.distribution}")
    if f"Version: {pkg.version}\n" not in metadata:
        problems.append(f"{path.name}: METADATA does not carry version {pkg.version}")
    if not pkg.is_core and f"{pkg.name} = flyteconnectors.{pkg.name}.connector:CONNECTORS" not in entry_points:
        problems.append(f"{path.name}: entry_points.txt lacks the flyteconnectors entry point {pkg.name}")
    return problems


def sdist_problems(path: Path, pkg: Package) -> list[str]:
    top = f"{normalized(pkg.distribution)}-{pkg.version}"
    if path.name != f"{top}.tar.gz":
        return [f"{path.name}: expected {top}.tar.gz (version from pyproject)"]
    problems = []
    with tarfile.open(path) as sdist:
        names = sdist.getnames()
    for required in ("pyproject.toml", "PKG-INFO"):
        if f"{top}/{required}" not in names:
            problems.append(f"{path.name}: lacks {required}")
    stray = [n for n in names if n.startswith(f"{top}/src/flyteconnectors/")
             and not n.startswith(f"{top}/src/flyteconnectors/{pkg.name}")
             and n != f"{top}/src/flyteconnectors"]
    problems += [f"{path.name}: holds {n}, outside its namespace portion" for n in stray]
    return problems


def twine_problems(paths: Iterable[Path]) -> list[str]:
    files = [str(p) for p in paths]
    if not files:
        return []
    result = subprocess.run([sys.executable, "-m", "twine", "--no-color", "check", "--strict", *files],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stdout + result.stderr).splitlines()]
        return ["twine check: " + " ".join(line for line in lines if line and not line.endswith("PASSED"))]
    return []


def owner(path: Path, pkgs: list[Package]) -> Package | None:
    for pkg in pkgs:
        if path.name.startswith(normalized(pkg.distribution) + "-"):
            return pkg
    return None


def check(folder: Path, root: Path = ROOT, expect: Iterable[str] | None = None, twine: bool = True) -> list[str]:
    """Problems of every distribution in ``folder``; ``expect`` names packages that must each have both files."""
    pkgs = packages(root)
    files = sorted([*folder.glob("*.whl"), *folder.glob("*.tar.gz")])
    problems = []
    seen: dict[str, list[Path]] = {}
    for path in files:
        pkg = owner(path, pkgs)
        if pkg is None:
            problems.append(f"{path.name}: belongs to no package of this repository")
            continue
        seen.setdefault(pkg.name, []).append(path)
        problems += wheel_problems(path, pkg) if path.suffix == ".whl" else sdist_problems(path, pkg)
    for name in expect or ():
        kinds = {p.suffix for p in seen.get(name, [])}
        if kinds != {".whl", ".gz"}:
            problems.append(f"{name}: expected one wheel and one sdist in {folder}, found {sorted(kinds) or 'none'}")
    if twine:
        problems += twine_problems(files)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--all", action="store_true", help="require a wheel and an sdist of every package")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    expect = [p.name for p in packages(args.root)] if args.all else None
    problems = check(args.folder, args.root, expect)
    for problem in problems:
        print(f"FAIL {problem}")
    for path in sorted(args.folder.glob("*.whl")):
        print(f"ok   {path.name}" if not any(path.name in p for p in problems) else f"bad  {path.name}")
    if problems:
        print(f"{len(problems)} problems in {args.folder}")
        return 1
    print(f"all distributions in {args.folder} check out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
