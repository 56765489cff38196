"""Run nox sessions in parallel, each logged to .nox/_logs/, and print one summary.

    python -m tools.run_sessions [--jobs N] SESSION... [-- POSARGS for the tests(...) sessions]

For each session it prints whether it passed and the test runner's closing line; for a failed one, the end of
its log. The last line adds up the tests of every session: ``total: N passed, M failed[, K skipped]``, where a
session that failed without a failing test (a lint error, an install error, pytest finding no test) counts as
one failure. The exit code is non-zero when any session failed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tools.repo import ROOT

SUMMARY_RE = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+|no tests ran)(?: in [\d.]+s.*?)\s*=*$")
COUNT_RE = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")
TAIL_LINES = 80


@dataclass
class Outcome:
    session: str
    code: int
    seconds: float
    log: Path
    summary: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code == 0


def read_summary(log: Path) -> tuple[str, dict[str, int]]:
    summary = ""
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = SUMMARY_RE.match(line.strip())
        if match:
            summary = line.strip().strip("=").strip()
    counts: dict[str, int] = {}
    for number, word in COUNT_RE.findall(summary):
        key = "errors" if word.startswith("error") else word
        counts[key] = counts.get(key, 0) + int(number)
    return summary, counts


def run_one(session: str, posargs: list[str], logs: Path, timeout: float) -> Outcome:
    log = logs / (re.sub(r"[^A-Za-z0-9_.-]+", "_", session).strip("_") + ".log")
    command = [sys.executable, "-m", "nox", "-s", session]
    if posargs:
        command += ["--", *posargs]
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.write(f"\n{session}: killed after {timeout:.0f} s\n")
            code = 124
    outcome = Outcome(session, code, time.monotonic() - started, log)
    outcome.summary, outcome.counts = read_summary(log)
    return outcome


def report(outcome: Outcome, lock: threading.Lock) -> None:
    status = "ok    " if outcome.ok else "FAILED"
    detail = outcome.summary or ("no test runner output" if outcome.ok else f"exit code {outcome.code}")
    with lock:
        print(f"{status} {outcome.session:<24} {outcome.seconds:6.0f} s   {detail}", flush=True)
        if not outcome.ok:
            lines = outcome.log.read_text(encoding="utf-8", errors="replace").splitlines()
            print(f"------ last {min(TAIL_LINES, len(lines))} lines of {outcome.log.relative_to(ROOT)}")
            print("\n".join(lines[-TAIL_LINES:]))
            print("------", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    posargs: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, posargs = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("SESSION_TIMEOUT", 1500)))
    parser.add_argument("sessions", nargs="+")
    args = parser.parse_args(argv)
    logs = ROOT / ".nox" / "_logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "summary.txt").unlink(missing_ok=True)
    lock = threading.Lock()
    started = time.monotonic()
    print(f"running {len(args.sessions)} sessions, {args.jobs} at a time; logs in {logs.relative_to(ROOT)}/",
          flush=True)

    def job(session: str) -> Outcome:
        outcome = run_one(session, posargs if session.startswith("tests(") else [], logs, args.timeout)
        report(outcome, lock)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(job, args.sessions))

    passed = sum(o.counts.get("passed", 0) + o.counts.get("xpassed", 0) for o in outcomes)
    skipped = sum(o.counts.get("skipped", 0) + o.counts.get("xfailed", 0) for o in outcomes)
    failed = 0
    for o in outcomes:
        failing_tests = o.counts.get("failed", 0) + o.counts.get("errors", 0)
        failed += failing_tests if failing_tests or o.ok else 1
    bad = [o.session for o in outcomes if not o.ok]
    print(f"sessions: {len(outcomes) - len(bad)} ok, {len(bad)} failed{' (' + ', '.join(bad) + ')' if bad else ''}"
          f" in {time.monotonic() - started:.0f} s")
    total = f"total: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
    print(total, flush=True)
    (logs / "summary.txt").write_text(total + "\n", encoding="utf-8")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
