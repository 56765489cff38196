"""Declarative maps from a service's job states to phases. An unknown state never raises."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from flyteconnectors.core import metrics
from flyteconnectors.core.resource import LogLink, Phase, Resource

log = logging.getLogger("flyteconnectors.states")


class StateMap:
    """Every state a service reports, mapped to a phase, in one literal table.

    A state missing from the table becomes ``unknown`` (RUNNING by default: non-terminal, so the task keeps
    polling instead of burning one of Propeller's six GetTask strikes) with a message naming the state, and
    it is counted in ``flyteconnectors_unknown_states_total``.
    """

    def __init__(
        self,
        table: Mapping[str, Phase],
        *,
        service: str,
        unknown: Phase = Phase.RUNNING,
        case_sensitive: bool = False,
    ) -> None:
        if unknown.is_terminal:
            raise ValueError("an unknown state must map to a non-terminal phase")
        self.service = service
        self.unknown = unknown
        self.case_sensitive = case_sensitive
        self.table = {self._key(k): Phase(v) for k, v in table.items()}

    def _key(self, state: Any) -> str:
        text = str(getattr(state, "value", state) if not isinstance(state, str) else state)
        return text if self.case_sensitive else text.upper()

    def __contains__(self, state: object) -> bool:
        return self._key(state) in self.table

    @property
    def states(self) -> Iterable[str]:
        return self.table.keys()

    def lookup(self, state: Any) -> Phase | None:
        """The mapped phase, or None for a state the table does not know (nothing logged or counted)."""
        return self.table.get(self._key(state))

    def phase(self, state: Any) -> Phase:
        key = self._key(state)
        if key in self.table:
            return self.table[key]
        metrics.UNKNOWN_STATES.labels(service=self.service, state=key[:64]).inc()
        log.warning("unrecognised %s state %r; reporting %s", self.service, key, self.unknown.name)
        return self.unknown

    def resource(
        self,
        state: Any,
        message: str = "",
        *,
        outputs: Mapping[str, Any] | None = None,
        log_links: list[LogLink] | None = None,
        custom_info: dict[str, Any] | None = None,
    ) -> Resource:
        """Build the Resource for ``state``. An unknown state gets a message naming it."""
        key = self._key(state)
        phase = self.phase(state)
        if key not in self.table:
            note = f"{self.service} reported state {key!r}, which this connector does not know; still waiting"
            message = f"{note}: {message}" if message else note
        return Resource(
            phase,
            message,
            outputs if phase is Phase.SUCCEEDED else None,
            list(log_links or []),
            {"state": key, **(custom_info or {})},
        )
