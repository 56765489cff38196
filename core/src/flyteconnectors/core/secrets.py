"""Secrets: read from per-call overrides, environment variables or mounted files, and redacted everywhere.

Lookup order for a secret ``name``:

1. per-call values (Flyte 2 sends them on every call in a ``Connection``; they live for that call only);
2. the environment variable ``NAME`` upper-cased (``databricks_token`` -> ``DATABRICKS_TOKEN``);
3. the file ``<dir>/<name>`` under each secrets directory (default ``/etc/secrets``, the layout of Flyte's
   connector chart), also tried lower-cased.

Every value read is registered with the redactor, so it is masked in every log line and error message that
goes through the core.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from flyteconnectors.core.errors import InvalidTaskConfig

MASK = "***"
DEFAULT_SECRET_DIRS = ("/etc/secrets",)


class Redactor:
    """Masks every known secret value in text. Process-wide, thread-safe.

    Values are kept longest first and replaced with ``str.replace``: adding one is cheap (no pattern to
    recompile while holding the GIL), which matters when Flyte 2 sends secrets on every call.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._values: tuple[str, ...] = ()
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._limit = limit

    def add(self, value: str | None) -> None:
        if not value or len(value) < 4 or value in self._known:
            return
        parts = {value} | _secret_parts(value)
        with self._lock:
            new = parts - self._known
            if not new:
                return
            self._known |= new
            values = sorted(self._known, key=len, reverse=True)
            if len(values) > self._limit:  # bounded: the oldest short ones matter least
                values = values[: self._limit]
                self._known = set(values)
            self._values = tuple(values)

    @property
    def active(self) -> bool:
        return bool(self._values)

    def redact(self, text: str) -> str:
        if not text:
            return text
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def clear(self) -> None:
        with self._lock:
            self._values = ()
            self._known = set()


def _secret_parts(value: str) -> set[str]:
    """Pieces of a secret that may show up on their own: lines of a PEM key, string fields of a JSON key file."""
    parts = {line.strip() for line in value.splitlines() if len(line.strip()) >= 8}
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for field, item in data.items():
                if isinstance(item, str) and len(item) >= 12 and _SENSITIVE_JSON.search(field):
                    parts.add(item)
                    parts |= {line.strip() for line in item.splitlines() if len(line.strip()) >= 8}
    return parts


_SENSITIVE_JSON = re.compile(r"key|secret|token|password|credential", re.IGNORECASE)


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR.redact(text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message and the exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not REDACTOR.active:
            return True
        message = record.getMessage()
        redacted = REDACTOR.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = REDACTOR.redact(record.exc_text)
        return True


class SecretNotFound(InvalidTaskConfig):
    def __init__(self, name: str, where: str) -> None:
        super().__init__(f"secret:{name}", f"secret {name!r} is not set ({where})")


class Secrets:
    """Secret lookup for one call. Values from files and the environment are cached per process."""

    _cache: dict[tuple[str, tuple[str, ...]], str | None] = {}
    _cache_lock = threading.Lock()

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        dirs: Iterable[str | os.PathLike[str]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._overrides = dict(overrides or {})
        for value in self._overrides.values():
            REDACTOR.add(value)
        self._dirs = tuple(str(d) for d in (dirs if dirs is not None else _dirs_from_env()))
        self._env = env

    def with_overrides(self, overrides: Mapping[str, str] | None) -> Secrets:
        if not overrides:
            return self
        return Secrets({**self._overrides, **overrides}, self._dirs, self._env)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The secret's value, or ``default`` when it is not set anywhere."""
        if name in self._overrides:
            return self._overrides[name]
        env = self._env if self._env is not None else os.environ
        value = env.get(name.upper()) or env.get(name)
        if value is None:
            key = (name, self._dirs)
            with self._cache_lock:
                if key in self._cache:
                    value = self._cache[key]
                else:
                    value = self._cache[key] = _read_file(name, self._dirs)
        if value is None:
            return default
        REDACTOR.add(value)
        return value

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            where = f"env {name.upper()} or a file named {name} under {', '.join(self._dirs) or 'no directory'}"
            raise SecretNotFound(name, where)
        return value

    @classmethod
    def clear_cache(cls) -> None:
        with cls._cache_lock:
            cls._cache.clear()


def _dirs_from_env() -> tuple[str, ...]:
    configured = os.environ.get("FLYTECONNECTORS_SECRETS_DIR")
    return tuple(configured.split(os.pathsep)) if configured else DEFAULT_SECRET_DIRS


def _read_file(name: str, dirs: tuple[str, ...]) -> str | None:
    for base in dirs:
        for candidate in (name, name.lower(), name.replace("_", "-")):
            path = Path(base) / candidate
            try:
                if path.is_file():
                    return path.read_text().strip("\n")
            except OSError:
                continue
    return None
