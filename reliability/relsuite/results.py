"""The figures each check reports, collected into one JSON file per run (``reliability/results/<mode>.json``)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


class Results:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.started = time.time()
        self.sections: dict[str, dict[str, Any]] = {}

    def section(self, name: str) -> dict[str, Any]:
        """The dict a check fills with its figures (``status`` is set by the conftest from the test outcome)."""
        return self.sections.setdefault(name, {})

    def set_status(self, name: str, test: str, outcome: str, seconds: float) -> None:
        section = self.section(name)
        section.setdefault("tests", {})[test] = {"outcome": outcome, "seconds": round(seconds, 2)}

    def to_dict(self, sizes: Any, environment: dict[str, Any]) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.system(),
                        "machine": platform.machine()},
            "environment": environment,
            "sizes": dict(vars(sizes)),
            "sections": self.sections,
        }

    def write(self, sizes: Any, environment: dict[str, Any], path: Path | None = None) -> Path:
        path = path or RESULTS_DIR / f"{self.mode}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(sizes, environment), indent=2, sort_keys=False, default=str) + "\n")
        return path
