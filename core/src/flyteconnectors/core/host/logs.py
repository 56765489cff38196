"""Logging for the host: text or JSON lines on stderr, secrets masked on every handler."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from flyteconnectors.core.secrets import RedactingFilter

#: LogRecord attributes that are not user "extra" fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, exception, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        return json.dumps(data, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"


def install_redaction(logger: logging.Logger | None = None) -> int:
    """Add the RedactingFilter to every handler of every logger that has one; returns how many it added."""
    added = 0
    loggers: list[Any] = [logging.getLogger()]
    loggers += [v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)]
    if logger is not None:
        loggers = [logger]
    for item in loggers:
        for handler in item.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
                added += 1
    return added


def _install_record_factory() -> None:
    """Mask secrets in every record as it is made, so handlers added later by libraries are covered too."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_flyteconnectors_redacting", False):
        return
    redacting = RedactingFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redacting.filter(record)
        return record

    factory._flyteconnectors_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def configure_logging(log_format: str = "text", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Replace the root handlers with one stderr handler in the chosen format."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    # grpc's own Python loggers are chatty at DEBUG; keep them at the host's level or above.
    logging.getLogger("grpc").setLevel(max(logging.getLevelName(level), logging.INFO))
    install_redaction()
    _install_record_factory()
