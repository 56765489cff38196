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
    """Masks every known secret value in text. Process-wide, thread-safe."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str | None) -> None:
        if not value or len(value) < 4:
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            # Multi-line values (PEM keys) are also masked line by line.
            for line in value.splitlines():
                if len(line.strip()) >= 8:
                    self._values.add(line.strip())
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR.redact(text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message and the exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if REDACTOR._pattern is None:
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
