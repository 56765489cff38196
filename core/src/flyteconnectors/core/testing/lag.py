"""Telling a blocked event loop from a busy machine.

A loop-lag watchdog sees a call that blocks the loop, but on an overloaded machine (CI running two sessions
on two cores) a loop thread may also simply not be scheduled for a while. ``LoopLagProbe`` runs a second,
idle event loop on its own thread for the same span: its lag is the machine's noise, and a stall check
allows for it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class LoopLagProbe:
    """Context manager: ``max_lag`` is the worst lag an idle loop saw while it was open."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.max_lag = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-probe", daemon=True)

    def _run(self) -> None:
        async def probe() -> None:
            loop = asyncio.get_running_loop()
            while not self._stop.is_set():
                before = loop.time()
                await asyncio.sleep(self.interval)
                self.max_lag = max(self.max_lag, loop.time() - before - self.interval)

        asyncio.run(probe())

    def __enter__(self) -> LoopLagProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


def assert_no_stall(host_lag: float, probe: LoopLagProbe, threshold: float) -> None:
    """Fail if the host's loop lagged more than ``threshold`` beyond what an idle loop lagged meanwhile."""
    excess = host_lag - probe.max_lag
    assert excess < threshold, (
        f"a call blocked the event loop for {host_lag * 1000:.0f} ms "
        f"(an idle loop lagged {probe.max_lag * 1000:.0f} ms at the same time)"
    )
