"""Release one package: bump its version, compile its changelog, build and check it, print the tag to push.

    python -m tools.release <package> <major|minor|patch> [--dry-run]     (or: nox -s release -- ...)

The version lives in one place, the package's pyproject.toml, and this script is what changes it. Tags are
``<package>-vX.Y.Z`` (``core-v0.2.0``, ``snowflake-v1.3.1``); a clone without tags works the same. The entries
under ``## [Unreleased]`` in the package's CHANGELOG.md become the new version's section; with no entry there,
the release is refused. ``--dry-run`` rehearses everything on a copy of the repository and touches nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tools import check_dist
from tools.repo import ROOT, VERSION_RE, Package, package

PARTS = ("major", "minor", "patch")
UNRELEASED_RE = re.compile(r"^## \[Unreleased\][^\n]*\n", re.MULTILINE | re.IGNORECASE)
NEXT_SECTION_RE = re.compile(r"^## ", re.MULTILINE)
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".nox", ".cache", "dist", "build", "__pycache__",
                                     "*.egg-info", ".pytest_cache", ".mypy_cache", ".ruff_cache")


class ReleaseRefused(Exception):
    """The release cannot go ahead; the message says why and what to do."""


def bump(version: str, part: str) -> str:
    match = VERSION_RE.match(version)
    if not match:
        raise ReleaseRefused(f"version {version!r} is not X.Y.Z")
    major, minor, patch = (int(g) for g in match.groups())
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def set_version(pyproject: str, new: str) -> str:
    """Replace ``version = "..."`` inside the [project] table, and nothing else."""
    project = re.search(r"^\[project\][^\n]*\n(?P<body>(?:(?!^\[).*\n?)*)", pyproject, re.MULTILINE)
    if not project:
        raise ReleaseRefused("pyproject.toml has no [project] table")
    body = project["body"]
    new_body, count = re.subn(r'^version\s*=\s*"[^"]*"', f'version = "{new}"', body, count=1, flags=re.MULTILINE)
    if count != 1:
        raise ReleaseRefused("pyproject.toml has no static version in [project]")
    return pyproject[: project.start("body")] + new_body + pyproject[project.end("body") :]


def unreleased_entries(changelog: str) -> tuple[int, int, str]:
    """(start, end, text) of the body of the Unreleased section."""
    heading = UNRELEASED_RE.search(changelog)
    if not heading:
        raise ReleaseRefused("CHANGELOG.md has no '## [Unreleased]' section to release from")
    following = NEXT_SECTION_RE.search(changelog, heading.end())
    end = following.start() if following else len(changelog)
    return heading.end(), end, changelog[heading.end() : end]


def has_entries(body: str) -> bool:
    lines = [line.strip() for line in body.splitlines()]
    return any(line and not line.startswith("#") and not line.startswith("<!--") for line in lines)


def compile_changelog(changelog: str, version: str, date: str) -> str:
    start, end, body = unreleased_entries(changelog)
    if not has_entries(body):
        raise ReleaseRefused("nothing to release: the '## [Unreleased]' section of CHANGELOG.md has no entries "
                             "since the last release; add what changed there first")
    section = f"\n## [{version}] - {date}\n\n{body.strip()}\n"
    rest = changelog[end:].lstrip("\n")
    return changelog[:start] + section + ("\n" + rest if rest else "")


def uv() -> str:
    return os.environ.get("UV") or shutil.which("uv") or "uv"


def existing_tag(root: Path, tag: str) -> bool:
    result = subprocess.run(["git", "-C", str(root), "tag", "--list", tag], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == tag


def build_and_check(root: Path, pkg: Package, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob(f"{check_dist.normalized(pkg.distribution)}-*")]:
        stale.unlink()
    subprocess.run([uv(), "build", "--quiet", "--no-create-gitignore", "--out-dir", str(out_dir), str(pkg.path)],
                   check=True)
    built = sorted(out_dir.glob(f"{check_dist.normalized(pkg.distribution)}-{pkg.version}*"))
    problems = check_dist.check(out_dir, root, expect=[pkg.name])
    if problems:
        raise ReleaseRefused("the built distributions do not check out:\n  " + "\n  ".join(problems))
    return built


def release(root: Path, name: str, part: str, *, build: bool, out_dir: Path | None, date: str,
            git_root: Path | None = None) -> tuple[Package, str]:
    pkg = package(name, root)
    old = pkg.version
    new = bump(old, part)
    tag = pkg.tag(new)
    if existing_tag(git_root or root, tag):
        raise ReleaseRefused(f"the tag {tag} exists already")
    if not pkg.changelog_path.is_file():
        raise ReleaseRefused(f"{pkg.changelog_path.relative_to(root)} does not exist; every package keeps one")
    changelog = compile_changelog(pkg.changelog_path.read_text(encoding="utf-8"), new, date)
    pyproject = set_version(pkg.pyproject_path.read_text(encoding="utf-8"), new)
    pkg.pyproject_path.write_text(pyproject, encoding="utf-8")
    pkg.changelog_path.write_text(changelog, encoding="utf-8")
    bumped = Package(pkg.name, pkg.path)
    print(f"{pkg.name}: {old} -> {new}")
    if build:
        built = build_and_check(root, bumped, out_dir or root / "dist")
        print("built and checked: " + ", ".join(p.name for p in built))
    return bumped, tag


def show_diff(root: Path, original: Path, copy: Path) -> None:
    for rel in ("pyproject.toml", "CHANGELOG.md"):
        before = (original / rel).read_text(encoding="utf-8").splitlines(keepends=True)
        after = (copy / rel).read_text(encoding="utf-8").splitlines(keepends=True)
        label = str((original / rel).relative_to(root))
        sys.stdout.writelines(difflib.unified_diff(before, after, label, label, n=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s release --", description=__doc__.splitlines()[0])
    parser.add_argument("package", help="core or a connector name")
    parser.add_argument("part", choices=PARTS)
    parser.add_argument("--dry-run", action="store_true", help="rehearse on a copy; touch nothing")
    parser.add_argument("--no-build", action="store_true", help="skip building and checking the distributions")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, default=None, help="where the distributions go (default dist/)")
    parser.add_argument("--date", default=dt.date.today().isoformat(), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    original = package(args.package, root)
    try:
        if args.dry_run:
            with tempfile.TemporaryDirectory(prefix="release-dry-run-") as tmp:
                copy = Path(tmp) / "repo"
                copy.mkdir()
                shutil.copy2(root / "pyproject.toml", copy / "pyproject.toml")
                for folder in ("core", "connectors"):
                    if (root / folder).is_dir():
                        shutil.copytree(root / folder, copy / folder, ignore=COPY_IGNORE, symlinks=True)
                out = args.out_dir or copy / "dist"
                pkg, tag = release(copy, args.package, args.part, build=not args.no_build, out_dir=out,
                                   date=args.date, git_root=root)
                show_diff(root, original.path, pkg.path)
            print(f"dry run: nothing in {root} was changed")
        else:
            pkg, tag = release(root, args.package, args.part, build=not args.no_build, out_dir=args.out_dir,
                               date=args.date)
            rel = pkg.path.relative_to(root)
            print("next: review, then commit, tag and push:")
            print(f'  git commit -m "{pkg.name} {pkg.version}" -- {rel}/pyproject.toml {rel}/CHANGELOG.md')
            print(f"  git tag {tag}")
            print(f"  git push origin HEAD {tag}")
    except ReleaseRefused as err:
        print(f"release of {original.name} refused: {err}", file=sys.stderr)
        return 1
    print(f"tag: {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
