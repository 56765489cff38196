"""Which packages a change touches, for CI that runs only what changed.

    python -m tools.changed_packages <git-base-ref>

prints one package name a line: every connector whose folder changed, plus the core whenever anything is
printed. A change to the core or to shared tooling (noxfile.py, pyproject.toml, tools/, tests/, .ci/,
_template/, uv.lock) selects every package. Documentation outside the packages (docs/, root *.md) selects
nothing. Committed changes since the merge base, uncommitted changes and untracked files all count.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from tools.repo import CORE, ROOT, connector_names

DOCS_ONLY = ("docs/",)


def changed_files(base: str, root: Path = ROOT) -> list[str]:
    def git(*args: str) -> list[str]:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"git {' '.join(args)} failed: {result.stderr.strip()}")
        return [line for line in result.stdout.splitlines() if line]

    merge_base = git("merge-base", base, "HEAD")[0]
    files = git("diff", "--name-only", merge_base)  # committed since the base + uncommitted
    files += git("ls-files", "--others", "--exclude-standard")
    return sorted(set(files))


def select(files: Iterable[str], connectors: Iterable[str]) -> list[str]:
    known = set(connectors)
    everything = [CORE, *sorted(known)]
    chosen: set[str] = set()
    for path in files:
        parts = path.split("/")
        if parts[0] == "connectors" and len(parts) > 2 and parts[1] in known:
            chosen.add(parts[1])
        elif parts[0] == "connectors" and len(parts) > 2:
            continue  # a folder that is not (yet) a package: the structure test, run always, reports it
        elif path.startswith(DOCS_ONLY) or (len(parts) == 1 and path.endswith(".md")):
            continue
        else:  # the core, or tooling every package depends on
            return everything
    return [CORE, *sorted(chosen)] if chosen else []


def changed_packages(base: str, root: Path = ROOT) -> list[str]:
    return select(changed_files(base, root), connector_names(root))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    for name in changed_packages(argv[0]):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
