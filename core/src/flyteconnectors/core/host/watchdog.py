"""Loop-lag watchdog: notices when something blocks the event loop and names the suspects."""

from __future__ import annotations

import asyncio
import logging

from flyteconnectors.core import metrics
from flyteconnectors.core.dispatcher import ON_LOOP, ON_LOOP_SEEN

log = logging.getLogger("flyteconnectors.watchdog")


class LoopWatchdog:
    """Sleeps ``interval`` in a loop and measures how late it wakes up.

    A lag over ``threshold`` means a call blocked the loop (for example a blocking SDK call inside an
    ``async def`` connector). It is logged and counted with the async connector calls that were on the loop.
    """

    def __init__(self, interval: float = 0.05, threshold: float = 0.1) -> None:
        self.interval = interval
        self.threshold = threshold
        self.stalls = 0
        self.max_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-watchdog")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            ON_LOOP_SEEN.clear()
            suspects_before = {k for k, v in ON_LOOP.items() if v > 0}
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - before - self.interval)
            metrics.LOOP_LAG.observe(lag)
            self.max_lag = max(self.max_lag, lag)
            if lag > self.threshold:
                self.stalls += 1
                running = {k for k, v in ON_LOOP.items() if v > 0}
                suspects = sorted(suspects_before | ON_LOOP_SEEN | running) or ["unknown"]
                metrics.LOOP_STALLS.labels(suspects=",".join(suspects)[:200]).inc()
                log.warning(
                    "event loop blocked for %.0f ms; async connector calls on the loop: %s. "
                    "A blocking call inside 'async def' stalls every other task: make the method a plain "
                    "'def' so the core runs it in a thread.",
                    lag * 1000, ", ".join(suspects),
                )
