"""Scaffold a connector package from _template/connector/: ``python -m tools.new_connector <name>``.

The new package passes the structure test and the core's contract suite as it is: a working connector for a
small HTTP/JSON jobs API, with its fake. Replace the client with the service's SDK, then the states, the
config and the fake, keeping the tests green.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tools import structure
from tools.repo import ROOT, package

TEMPLATE = ROOT / "_template" / "connector"
PLACEHOLDER_DIR = "__name__"


def substitutions(name: str, class_name: str, core_version: str) -> dict[str, str]:
    return {"{{name}}": name, "{{Name}}": class_name, "{{NAME}}": name.upper(), "{{core_version}}": core_version}


def render(text: str, subs: dict[str, str]) -> str:
    for marker, value in subs.items():
        text = text.replace(marker, value)
    return text


def scaffold(name: str, root: Path = ROOT, class_name: str | None = None, template: Path = TEMPLATE) -> Path:
    if not structure.NAME_RE.match(name):
        raise SystemExit(f"{name!r}: a connector name is lower-case letters and digits (it is also the import name)")
    target = root / "connectors" / name
    if target.exists():
        raise SystemExit(f"{target} exists already")
    subs = substitutions(name, class_name or name.capitalize(), package("core", root).version)
    for source in sorted(template.rglob("*")):
        if "__pycache__" in source.parts or source.suffix == ".pyc":
            continue
        relative = source.relative_to(template)
        dest = target / render(str(relative).replace(PLACEHOLDER_DIR, name), subs)
        if source.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        text = render(source.read_text(encoding="utf-8"), subs)
        dest.write_text(sort_imports(text) if dest.suffix == ".py" else text, encoding="utf-8")
        shutil.copymode(source, dest)
    return target


def sort_imports(text: str) -> str:
    """Sort each run of one-line ``from flyteconnectors.`` imports, as ruff's isort does: their order depends
    on the new name (``acme`` sorts before ``core``, ``zeta`` after)."""
    lines = text.split("\n")
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, None]:
        if line is not None and line.startswith("from flyteconnectors.") and "(" not in line:
            run.append(line)
            continue
        out += sorted(run, key=lambda imp: imp.split(" import ")[0])
        run = []
        if line is not None:
            out.append(line)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s new-connector --", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="lower-case letters and digits: the folder, import, entry-point and tag name")
    parser.add_argument("--class-name", help="prefix of the class names (default: the name capitalized)")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    target = scaffold(args.name, args.root, args.class_name)
    problems = structure.check(target)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    rel = target.relative_to(args.root)
    print(f"created {rel} (flyteconnectors-{args.name}); it passes the structure rules.")
    print(f'next: nox -s "tests({args.name})"   then replace the example client with the {args.name} SDK')
    return 0


if __name__ == "__main__":
    sys.exit(main())
