"""Loop-lag watchdog: notices when something blocks the event loop, names the code that did, and (``async_mode``
``auto``) moves a connector whose own code keeps stalling the loop onto its package's own event loops."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import sys
import threading
import time
from collections import deque

from flyteconnectors.core import loops, metrics
from flyteconnectors.core.dispatcher import ON_LOOP, ON_LOOP_SEEN

log = logging.getLogger("flyteconnectors.watchdog")
#: futex / futex_waitv system call numbers (/proc/<tid>/syscall): a thread waiting for the GIL or a lock.
_FUTEX = {b"202", b"449"} if platform.machine() in ("x86_64", "AMD64") else {b"98", b"449"}


class LoopWatchdog:
    """Sleeps ``interval`` in a loop and measures how late it wakes up.

    A lag over ``threshold`` means a call blocked the loop (for example a blocking SDK call inside an
    ``async def`` connector). It is logged and counted with the async connector calls that were on the loop.

    Which code blocked it: a sampler thread looks at the loop thread's stack every few milliseconds while the
    loop is late. A stall is *attributed* to a connector only when most samples taken during it found that
    connector's code running on the loop thread, waiting in a blocking system call (not computing, not waiting
    to be scheduled or for the GIL), and the sampler itself was on time (on a saturated
    machine every thread is late, so nothing is attributed: calls merely in flight are never blamed). Many short
    blocking calls back to back starve the loop as surely as one long one without any single lag over the
    threshold: a connector whose code was blocking in at least ``busy_share`` of the samples over ``busy_window``
    seconds counts as one stall too. ``move_after`` attributed stalls within ``window`` seconds move an
    ``async_mode=auto`` connector to its package's own loops (:func:`loops.move`). Connectors are named by
    :func:`loops.key_of` (``package/task_type``).
    """

    def __init__(self, interval: float = 0.05, threshold: float = 0.1, move_after: int = 3,
                 window: float = 60.0, busy_window: float = 0.5, busy_share: float = 0.5) -> None:
        self.interval = interval
        self.threshold = threshold
        self.move_after = move_after
        self.window = window
        self.busy_window = busy_window
        self.busy_share = busy_share
        self.period = max(0.002, min(0.02, threshold / 5))
        self.stalls = 0
        self.max_lag = 0.0
        #: Stalls attributed to each connector's code (by ``package/task_type``).
        self.attributed: dict[str, int] = {}
        self._recent: dict[str, deque[float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        #: When the watchdog's timer is due (time.monotonic(), as loop.time()); the sampler reads it.
        self._due: float | None = None
        #: From the sampler thread: (when, connector whose code the loop thread runs, sampler on time, loop late,
        #: that code waits in a blocking system call).
        self._samples: deque[tuple[float, str | None, bool, bool, bool]] = deque(maxlen=4096)
        self._busy_since = 0.0
        self._busy_total = 0
        self._busy_held: dict[str, int] = {}
        self._busy_logged: dict[str, float] = {}
        self._sampler: threading.Thread | None = None
        self._stop_sampling = threading.Event()
        self._proc: str | None = None

    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            proc = f"/proc/self/task/{threading.get_native_id()}/"
            self._proc = proc if os.path.exists(proc + "syscall") else None
            self._task = self._loop.create_task(self._run(), name="loop-watchdog")
            self._stop_sampling = threading.Event()
            self._sampler = threading.Thread(target=self._sample, name="loop-watchdog-sampler", daemon=True)
            self._sampler.start()

    def stop(self) -> None:
        """Stop watching; the host is draining, so the packages' own event loops close too."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._stop_sampling.set()
        if self._sampler is not None:
            self._sampler.join(1.0)
            self._sampler = None
        if self._loop is not None:
            loops.close_pools(self._loop)
            self._loop = None

    # ------------------------------------------------------------------ sampler thread
    def _sample(self) -> None:
        period = self.period
        stop = self._stop_sampling
        last = time.monotonic()
        while not stop.wait(period):
            now = time.monotonic()
            on_time = now - last - period < self.threshold / 2
            last = now
            due = self._due
            late = due is not None and now >= due + period
            frame = sys._current_frames().get(self._loop_thread)
            try:
                owner = loops.running_connector(frame)
            finally:
                del frame
            blocking = owner is not None and self._asleep_in_kernel()
            self._samples.append((now, owner, on_time, late, blocking))

    def _asleep_in_kernel(self) -> bool:
        """Whether the loop thread waits in a system call (a sleep, a socket read) rather than computing or
        waiting to be scheduled on a busy machine ('R'), or waiting for the GIL (a futex). Without /proc: True."""
        if self._proc is None:
            return True
        try:
            with open(self._proc + "stat", "rb") as fh:
                stat = fh.read()
            if stat[stat.rindex(b")") + 2:][:1] not in (b"S", b"D"):
                return False
            with open(self._proc + "syscall", "rb") as fh:
                number = fh.read().split(b" ", 1)[0]
        except (OSError, ValueError):
            return True
        return number not in _FUTEX

    def _take(self, start: float, end: float) -> list[tuple[str | None, bool, bool, bool]]:
        taken = []
        while self._samples:
            at, owner, on_time, late, blocked = self._samples.popleft()
            if start <= at <= end:
                taken.append((owner, on_time, late, blocked))
        return taken

    @staticmethod
    def _running_during(samples: list[tuple[str | None, bool, bool, bool]]) -> tuple[str | None, str | None]:
        """(the connector whose code most timely samples saw on the loop thread while the loop was late, that
        connector again if it was waiting in a blocking call through most of them)."""
        running: dict[str, int] = {}
        blocking: dict[str, int] = {}
        taken = 0
        for owner, on_time, late, blocked in samples:
            if not late:
                continue
            taken += 1
            if owner is not None and on_time:
                running[owner] = running.get(owner, 0) + 1
                blocking[owner] = blocking.get(owner, 0) + blocked
        if not running:
            return None, None
        owner, seen = max(running.items(), key=lambda item: item[1])
        if seen < 2 or seen < 0.6 * taken:
            return None, None
        return owner, owner if blocking[owner] >= 0.6 * taken else None

    def _busy(self, samples: list[tuple[str | None, bool, bool, bool]], now: float) -> None:
        """Count one stall for a connector whose blocking calls held the loop ``busy_share`` of ``busy_window``."""
        for owner, on_time, _late, blocked in samples:
            if on_time:
                self._busy_total += 1
                if owner is not None and blocked:
                    self._busy_held[owner] = self._busy_held.get(owner, 0) + 1
        span = now - self._busy_since
        if span < self.busy_window:
            return
        total, held = self._busy_total, self._busy_held
        self._busy_since, self._busy_total, self._busy_held = now, 0, {}
        if total < max(5, 0.4 * span / self.period):  # too few timely samples: a saturated machine, not a call
            return
        for owner, seen in held.items():
            if seen < self.busy_share * total:
                continue
            if now - self._busy_logged.get(owner, -1e9) >= 10.0:
                self._busy_logged[owner] = now
                log.warning(
                    "connector %s: its async def code held the event loop %.0f%% of the last %.1f s (many blocking "
                    "calls one after another). A blocking call inside 'async def' stalls every other task: make the "
                    "method a plain 'def' so the core runs it in a thread.", owner, 100 * seen / total, span,
                )
            self._blame(owner, now, f"the last held it {100 * seen / total:.0f}% of {span:.1f} s")

    # ------------------------------------------------------------------ on the loop
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            ON_LOOP_SEEN.clear()
            suspects_before = {k for k, v in ON_LOOP.items() if v > 0}
            self._due = before + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            lag = max(0.0, now - before - self.interval)
            metrics.LOOP_LAG.observe(lag)
            self.max_lag = max(self.max_lag, lag)
            samples = self._take(before, now)
            if lag <= self.threshold:
                self._busy(samples, now)
                continue
            self.stalls += 1
            running, blocking = self._running_during(samples)
            in_flight = suspects_before | ON_LOOP_SEEN | {k for k, v in ON_LOOP.items() if v > 0}
            isolated = {key.rsplit("/", 1)[-1] for key in loops.isolated_keys()}
            suspects = sorted(t for t in in_flight if t not in isolated) or ["unknown"]
            metrics.LOOP_STALLS.labels(suspects=",".join(suspects)[:200]).inc()
            log.warning(
                "event loop blocked for %.0f ms; async connector calls on the loop: %s; running during the stall: "
                "%s. A blocking call inside 'async def' stalls every other task: make the method a plain "
                "'def' so the core runs it in a thread.",
                lag * 1000, ", ".join(suspects), f"connector {running}" if running else "no connector code seen",
            )
            if blocking is not None:
                self._blame(blocking, now, f"the last for {lag * 1000:.0f} ms")

    def _blame(self, owner: str, now: float, last: str) -> None:
        self.attributed[owner] = self.attributed.get(owner, 0) + 1
        recent = self._recent.setdefault(owner, deque())
        recent.append(now)
        while recent and now - recent[0] > self.window:
            recent.popleft()
        if len(recent) >= self.move_after and not set(owner.split(",")) <= loops.isolated_keys():
            span = now - recent[0]
            reason = (f"its async def code blocked the host's event loop {len(recent)} times in {span:.1f} s "
                      f"({last})")
            if loops.move(owner, reason):
                recent.clear()
