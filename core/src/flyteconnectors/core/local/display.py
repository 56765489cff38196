"""What a local run shows while a connector job runs: a live line on a terminal, plain log lines otherwise.

Both show the same facts: the task, its phase, the service's message, the elapsed time and the job's log
links (printed once, so they stay clickable in the scrollback).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, Any, Protocol

from flyteconnectors.core.resource import LogLink, Phase

#: ``rich`` (a live line), ``plain`` (one line per change) or ``off``; default: rich on a TTY, else plain.
PROGRESS_ENV = "FLYTECONNECTORS_LOCAL_PROGRESS"


class Display(Protocol):
    def started(self) -> None: ...

    def update(self, phase: Phase, message: str, log_links: list[LogLink]) -> None: ...

    def note(self, text: str) -> None: ...

    def finished(self, phase: Phase, message: str) -> None: ...


class NoDisplay:
    def started(self) -> None:
        pass

    def update(self, phase: Phase, message: str, log_links: list[LogLink]) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def finished(self, phase: Phase, message: str) -> None:
        pass


class PlainDisplay:
    """One line per phase or message change, on stderr: readable in CI logs and piped output."""

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream
        self._last: tuple[Phase, str] | None = None
        self._links: set[LogLink] = set()
        self._start = time.monotonic()

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"[flyteconnectors] {self.label}: {text}\n")
        stream.flush()

    def started(self) -> None:
        self._start = time.monotonic()

    def update(self, phase: Phase, message: str, log_links: list[LogLink]) -> None:
        if (phase, message) != self._last:
            self._last = (phase, message)
            if not phase.is_terminal:
                self._write(f"{phase.name}{' - ' + message if message else ''}")
        for link in log_links:
            if link not in self._links:
                self._links.add(link)
                self._write(f"log {link.name}: {link.uri}")

    def note(self, text: str) -> None:
        self._write(text)

    def finished(self, phase: Phase, message: str) -> None:
        elapsed = time.monotonic() - self._start
        self._write(f"{phase.name} in {elapsed:.2f}s{' - ' + message if message else ''}")


class RichDisplay:
    """A live status line (spinner, phase, message, elapsed) that is replaced by one summary line at the end."""

    def __init__(self, label: str, console: Any = None) -> None:
        self.label = label
        self.console = console or _stderr_console()
        self._phase = Phase.QUEUED
        self._message = "creating the job"
        self._links: set[LogLink] = set()
        self._start = time.monotonic()
        self._live: Any = None
        self._spinner: Any = None
        self._lock = threading.Lock()

    def _renderable(self) -> Any:
        from rich.spinner import Spinner
        from rich.text import Text

        text = Text.assemble(
            (self.label, "bold"), "  ", (self._phase.name, _STYLE.get(self._phase, "cyan")),
            f"  {time.monotonic() - self._start:.1f}s", ("  " + self._message if self._message else "", "dim"),
        )
        if self._spinner is None:
            self._spinner = Spinner("dots", text=text)
        else:
            self._spinner.update(text=text)
        return self._spinner

    def started(self) -> None:
        self._start = time.monotonic()

    def update(self, phase: Phase, message: str, log_links: list[LogLink]) -> None:
        with self._lock:
            self._phase, self._message = phase, message
            if self._live is None and not phase.is_terminal:
                # Started lazily: a job done at its first check never pays for the live display's thread.
                from rich.live import Live

                self._live = Live(console=self.console, transient=True, refresh_per_second=8,
                                  get_renderable=self._renderable)
                self._live.start()
            for link in log_links:
                if link not in self._links:
                    self._links.add(link)
                    self.console.print(f"  [dim]{self.label}[/dim] {link.name}: [link={link.uri}]{link.uri}[/link]",
                                       highlight=False)

    def note(self, text: str) -> None:
        self.console.print(f"  [dim]{self.label}[/dim] {text}", highlight=False)

    def finished(self, phase: Phase, message: str) -> None:
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None
        mark = "[green]✓[/green]" if phase is Phase.SUCCEEDED else "[red]✗[/red]"
        elapsed = time.monotonic() - self._start
        tail = f"  [dim]{message}[/dim]" if message else ""
        self.console.print(f"{mark} [bold]{self.label}[/bold]  {phase.name} in {elapsed:.2f}s{tail}", highlight=False)


_CONSOLE: Any = None


def _stderr_console() -> Any:
    """One console per process: building one costs more than a fast task's whole local overhead."""
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(stderr=True)
    return _CONSOLE


_STYLE = {Phase.SUCCEEDED: "green", Phase.FAILED: "red", Phase.RETRYABLE_FAILED: "red", Phase.ABORTED: "yellow"}


def display_for(label: str) -> Display:
    mode = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if mode == "off":
        return NoDisplay()
    if mode == "rich" or (mode != "plain" and sys.stderr.isatty()):
        return RichDisplay(label)
    return PlainDisplay(label)
