"""The suite's shared world: every installed connector's fake, canary secrets, host processes, and a recorder
that searches everything the hosts say for the canaries."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets as pysecrets
import shutil
import tempfile
import threading
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flyteconnectors.core.testing.fake import FakeService
from relsuite.hostproc import HostProcess, clean_env
from relsuite.profiles import Profile, available


class Recorder:
    """Scans text for the canaries as the suite sees it; keeps counts per place, and any hits."""

    def __init__(self, canaries: Sequence[str]) -> None:
        self.canaries = [c for c in canaries if c]
        self.scanned: Counter[str] = Counter()
        self.hits: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add_canary(self, value: str) -> None:
        with self._lock:
            self.canaries.append(value)

    def scan(self, place: str, text: str | bytes | None) -> None:
        if text is None:
            return
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        with self._lock:
            self.scanned[place] += 1
            for canary in self.canaries:
                if canary in text:
                    at = text.index(canary)
                    context = text[max(0, at - 80): at + len(canary) + 40].replace(canary, "<CANARY>")
                    self.hits.append((place, context))

    def scan_resource(self, resource: Any) -> None:
        """message, custom_info and log links of a flyteidl Resource."""
        from google.protobuf import json_format

        self.scan("resource message", resource.message)
        if resource.HasField("custom_info"):
            self.scan("custom_info", json.dumps(json_format.MessageToDict(resource.custom_info)))
        for link in resource.log_links:
            self.scan("log link", f"{link.name} {link.uri}")
        if resource.HasField("outputs"):
            self.scan("outputs", str(resource.outputs))


class FakeCrashes(logging.Handler):
    """Keeps the fakes' own crashes (a fake answering 500 because its code raised), to tell them from the host's."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)[-4:])
        self.records.append(text)


class Lab:
    """Started fakes for every available profile, secrets on disk, and a factory of host processes."""

    def __init__(self, workdir: Path | None = None, only: list[str] | None = None) -> None:
        self._own = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="reliability-"))
        self.logdir = self.workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.canary = f"canary{pysecrets.token_hex(12)}"
        #: Seed of the fakes' fault dice (RELIABILITY_SEED reproduces a run).
        self.seed = int(os.environ.get("RELIABILITY_SEED") or pysecrets.randbelow(2**31))
        self.recorder = Recorder([self.canary])
        self.profiles, self.skipped = available(only)
        self.fakes: dict[str, FakeService] = {}
        self.hosts: list[HostProcess] = []
        self.fake_crashes = FakeCrashes()
        logging.getLogger("flyteconnectors.fake").addHandler(self.fake_crashes)
        self._names: Counter[str] = Counter()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Lab:
        secrets_dir = self.workdir / "secrets"
        secrets_dir.mkdir(exist_ok=True)
        env: dict[str, str] = {"FLYTECONNECTORS_SECRETS_DIR": str(secrets_dir), "PYTHONUNBUFFERED": "1"}
        modules = []
        for profile in self.profiles:
            fake = profile.make_fake(self.canary)
            fake.serve()
            self.fakes[profile.package] = fake
            prefix = f"FLYTECONNECTORS_{profile.package.upper()}_"
            for key, value in profile.settings(fake).items():
                env[prefix + key.upper()] = str(value)
            for name, value in profile.secrets(self.canary, fake).items():
                (secrets_dir / name).write_text(value)
            env.update(profile.env)
            if profile.module:
                modules.append(profile.module)
        if modules:
            env["FLYTECONNECTORS_MODULES"] = ",".join(modules)
        self.secrets_dir = secrets_dir
        self.env = clean_env(env)
        return self

    def stop(self) -> None:
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.stop(10)
        for fake in self.fakes.values():
            with contextlib.suppress(Exception):
                fake.stop()
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ hosts
    def host(self, name: str, *args: str, env: dict[str, str] | None = None, start: bool = True,
             **kw: Any) -> HostProcess:
        """A host process serving every available connector against the fakes (started unless ``start=False``)."""
        self._names[name] += 1
        unique = name if self._names[name] == 1 else f"{name}-{self._names[name]}"
        host = HostProcess(unique, self.logdir, {**self.env, **(env or {})}, args, **kw)
        self.hosts.append(host)
        if start:
            host.start()
        return host

    def start_all(self, hosts: Sequence[HostProcess]) -> None:
        """Start several hosts at once (each start mostly waits for its process to import and bind)."""
        with ThreadPoolExecutor(len(hosts) or 1) as pool:
            list(pool.map(lambda h: h.start(), hosts))

    @contextlib.contextmanager
    def running(self, name: str, *args: str, **kw: Any) -> Iterator[HostProcess]:
        host = self.host(name, *args, **kw)
        try:
            yield host
        finally:
            host.stop(15)

    def profile(self, package: str) -> Profile:
        return next(p for p in self.profiles if p.package == package)

    def reset_fakes(self) -> None:
        """Forget faults, latency and queued scripts (jobs stay: the suite counts per attempt, not in total)."""
        for profile in self.profiles:
            fake = self.fakes[profile.package]
            fake.clear_faults()
            fake.set_latency(None)
            with fake.lock:
                fake._queued_scripts.clear()
                for attr in profile.script_attrs:
                    if attr in vars(fake):
                        delattr(fake, attr)

    def scan_logs(self) -> dict[str, int]:
        """Search every host's captured stdout/stderr for the canaries; returns lines scanned per file."""
        lines = {}
        for host in self.hosts:
            text = host.log_text()
            lines[host.name] = text.count("\n")
            self.recorder.scan("host log", text)
        return lines


def digest_of(key: str) -> str:
    """The per-attempt hash at the end of an idempotency key or job name (``fc-...-a0-<16 hex>``)."""
    match = re.search(r"([0-9a-f]{16})$", key)
    return match.group(1) if match else key
