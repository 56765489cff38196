"""A small base for local fakes of hosted services.

A fake speaks the service's real HTTP/JSON wire protocol on 127.0.0.1 so that the connector runs its real SDK
against it. The same object serves three transports:

* a thread on an ephemeral loopback port (``with MyFake().serve() as fake: fake.url``),
* its own process (``flyteconnectors fake <name> --port N``),
* mounted into ``responses`` for socket-free unit tests of ``requests``-based SDKs.

On top of routing, every fake gets a request journal, injected latency, injected faults (HTTP errors, hangs,
lost responses after the side effect happened), scripted job-state sequences and a control API under
``/_fake/``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("flyteconnectors.fake")

Handler = Callable[..., Any]


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Mark a method of a :class:`FakeService` as the handler of ``METHOD path-regex``.

    Named groups of the pattern are passed to the handler as keyword arguments.
    """

    def mark(fn: Handler) -> Handler:
        routes = list(getattr(fn, "_fake_routes", []))
        routes.append((method.upper(), re.compile(pattern)))
        fn._fake_routes = routes  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return {}
        return json.loads(self.body)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class FakeResponse:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[int, dict[str, str], bytes]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            payload = self.body
        elif isinstance(self.body, str):
            payload = self.body.encode()
            headers.setdefault("Content-Type", "text/plain")
        elif self.body is None:
            payload = b""
        else:
            payload = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json")
        return self.status, headers, payload


class FakeHTTPError(Exception):
    """Raise inside a handler to answer with an error status and a JSON body."""

    def __init__(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None):
        super().__init__(f"HTTP {status}")
        self.response = FakeResponse(status, body, dict(headers or {}))


class DroppedResponse(Exception):
    """The request was processed but the client gets no response (the connection is closed)."""


@dataclass
class JournalEntry:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    fault: str | None = None
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else {}
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "fault": self.fault,
            "at": self.at,
            "body": self.body.decode("utf-8", "replace")[:4096],
        }


@dataclass
class Fault:
    """An injected failure, matched against requests by method and path regex.

    ``status`` answers with that HTTP status. ``hang`` sleeps that many seconds first (past a client's
    deadline). ``after=True`` runs the real handler first, so the side effect happens and the response is
    lost. ``drop=True`` closes the connection without any response. A fault fires on the ``nth`` matching
    call, or on each matching call with probability ``rate``, or on the next ``count`` matching calls.
    """

    status: int | None = 500
    method: str | None = None
    path: str | None = None
    #: Request headers (name -> regex) the request must match, e.g. {"X-Amz-Target": "CreateTrainingJob"}.
    match_headers: dict[str, str] = field(default_factory=dict)
    count: int | None = 1
    rate: float | None = None
    nth: int | None = None
    after: bool = False
    drop: bool = False
    hang: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> bool:
        if self.method and self.method.upper() != method:
            return False
        if self.path and not re.search(self.path, path):
            return False
        headers = headers or {}
        return all(re.search(pattern, headers.get(name.lower(), "")) for name, pattern in self.match_headers.items())

    def should_fire(self, rng: random.Random) -> bool:
        self.seen += 1
        if self.nth is not None:
            return self.seen == self.nth
        if self.rate is not None:
            return rng.random() < self.rate
        return self.count is None or self.fired < self.count

    @property
    def exhausted(self) -> bool:
        if self.nth is not None:
            return self.seen >= self.nth
        return self.rate is None and self.count is not None and self.fired >= self.count

    def describe(self) -> str:
        if self.drop:
            return "drop"
        if self.hang and self.status is None:
            return f"hang {self.hang}s"
        return f"{'lost-' if self.after else ''}{self.status}"


class JobScript:
    """A scripted sequence of states for one job. Each poll (``advance``) moves one step; the last step sticks.

    Steps are whatever the fake uses to describe a state (a string, or a dict with state and message).
    """

    def __init__(self, steps: Iterable[Any]):
        self.steps = list(steps)
        if not self.steps:
            raise ValueError("a job script needs at least one step")
        self.index = 0

    @property
    def current(self) -> Any:
        return self.steps[self.index]

    @property
    def finished(self) -> bool:
        return self.index >= len(self.steps) - 1

    def advance(self) -> Any:
        step = self.steps[self.index]
        if self.index < len(self.steps) - 1:
            self.index += 1
        return step

    def jump_to_end(self, step: Any) -> None:
        self.steps = [*self.steps[: self.index + 1], step]
        self.index = len(self.steps) - 1


class FakeService:
    """Base class of every fake. Subclasses add ``@route`` handlers and keep their own job state.

    Handlers take a :class:`FakeRequest` (plus named groups of the route pattern) and return a
    :class:`FakeResponse`, a JSON-able value (200), or raise :class:`FakeHTTPError`.
    """

    #: The connector name this fake stands in for (``flyteconnectors fake <name>``).
    name: str = "service"
    #: States a new job walks through when no script was queued for it.
    default_script: tuple[Any, ...] = ()

    def __init__(self, *, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self.journal: list[JournalEntry] = []
        self.faults: list[Fault] = []
        self.latency: Callable[[], float] | None = None
        self.scripts: dict[str, JobScript] = {}
        self._queued_scripts: list[list[Any]] = []
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = self._collect_routes()

    # ----------------------------------------------------------------- routing
    def _collect_routes(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        routes = []
        for klass in type(self).__mro__:
            for attr in vars(klass).values():
                for method, pattern in getattr(attr, "_fake_routes", []):
                    routes.append((method, pattern, attr.__get__(self)))
        return routes

    def fallback(self, request: FakeRequest) -> Any:
        """Called when no route matches. Subclasses may proxy to another implementation (e.g. moto)."""
        raise FakeHTTPError(404, {"error": f"fake {self.name}: no route for {request.method} {request.path}"})

    def next_id(self) -> int:
        return next(self._ids)

    # ----------------------------------------------------------------- scripting
    def script_next_job(self, *steps: Any) -> None:
        """Queue a state script for the next job the fake creates."""
        with self.lock:
            self._queued_scripts.append(list(steps))

    def script_job(self, job_id: str, *steps: Any) -> JobScript:
        with self.lock:
            script = self.scripts[str(job_id)] = JobScript(steps)
            return script

    def new_job_script(self, job_id: str) -> JobScript:
        """Give a newly created job its script: the next queued one, else ``default_script``."""
        with self.lock:
            steps = self._queued_scripts.pop(0) if self._queued_scripts else list(self.default_script)
            script = self.scripts[str(job_id)] = JobScript(steps)
            return script

    # ----------------------------------------------------------------- faults and latency
    def fault_body(self, status: int) -> Any:
        """The body of an injected error response. Override to speak the service's error format (SDKs parse it)."""
        return {"error": f"injected fault (HTTP {status})"}

    def inject_fault(self, status: int | None = 500, **kwargs: Any) -> Fault:
        fault = Fault(status=status, **kwargs)
        if fault.body is None and status is not None:
            fault.body = self.fault_body(status)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def set_latency(self, seconds: float | tuple[float, float] | Callable[[], float] | None) -> None:
        """Fixed latency, a uniform (low, high) range, or any callable returning seconds."""
        if seconds is None:
            self.latency = None
        elif callable(seconds):
            self.latency = seconds
        elif isinstance(seconds, tuple):
            low, high = seconds
            self.latency = lambda: self._rng.uniform(low, high)
        else:
            value = float(seconds)
            self.latency = lambda: value

    def reset(self) -> None:
        with self.lock:
            self.journal.clear()
            self.faults.clear()
            self.scripts.clear()
            self._queued_scripts.clear()
            self.latency = None
            self.reset_state()

    def reset_state(self) -> None:
        """Subclasses drop their jobs here."""

    # ----------------------------------------------------------------- journal
    def requests(self, method: str | None = None, path: str | None = None) -> list[JournalEntry]:
        """Journal entries that reached the service, optionally filtered by method and path regex."""
        with self.lock:
            return [
                e
                for e in self.journal
                if (method is None or e.method == method.upper()) and (path is None or re.search(path, e.path))
            ]

    # ----------------------------------------------------------------- the one entry point
    def handle(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict, bytes]:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path or "/"
        method = method.upper()
        lowered = {k.lower(): v for k, v in headers.items()}
        request = FakeRequest(method, path, query, lowered, body or b"")
        if path.startswith("/_fake/"):
            return self._control(request).encode()
        entry = JournalEntry(method, path, query, lowered, request.body)
        with self.lock:
            self.journal.append(entry)
            fault = next(
                (f for f in self.faults if f.matches(method, path, lowered) and f.should_fire(self._rng)),
                None,
            )
            if fault is not None:
                fault.fired += 1
                entry.fault = fault.describe()
            self.faults = [f for f in self.faults if not f.exhausted]
            latency = self.latency() if self.latency else 0.0
        if latency > 0:
            time.sleep(latency)
        if fault is not None and fault.hang:
            time.sleep(fault.hang)
        if fault is not None and not fault.after and not fault.drop and fault.status is not None:
            entry.status = fault.status
            return FakeResponse(fault.status, fault.body or {"error": "injected fault"}, fault.headers).encode()
        response = self._dispatch(request)
        if fault is not None and (fault.after or fault.drop):
            if fault.drop or fault.status is None:
                entry.status = None
                raise DroppedResponse(f"{method} {path}")
            entry.status = fault.status
            return FakeResponse(fault.status, fault.body or {"error": "injected fault"}, fault.headers).encode()
        entry.status = response.status
        return response.encode()

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        try:
            for method, pattern, handler in self._routes:
                if method != request.method:
                    continue
                match = pattern.fullmatch(request.path)
                if match:
                    result = handler(request, **match.groupdict())
                    break
            else:
                result = self.fallback(request)
        except FakeHTTPError as err:
            return err.response
        if isinstance(result, FakeResponse):
            return result
        if isinstance(result, tuple):
            status, body = result
            return FakeResponse(status, body)
        return FakeResponse(200, result)

    # ----------------------------------------------------------------- control API
    def control(self, action: str, request: FakeRequest) -> Any:
        """Extra ``/_fake/<action>`` endpoints of a subclass: return a response, or None for "not mine"."""
        return None

    def _control(self, request: FakeRequest) -> FakeResponse:
        action = request.path[len("/_fake/") :].strip("/")
        try:
            extra = self.control(action, request)
        except FakeHTTPError as err:
            return err.response
        if extra is not None:
            return extra if isinstance(extra, FakeResponse) else FakeResponse(200, extra)
        if action == "health":
            return FakeResponse(200, {"ok": True, "service": self.name})
        if action == "requests":
            return FakeResponse(200, [e.to_dict() for e in self.requests()])
        if action == "reset" and request.method == "POST":
            self.reset()
            return FakeResponse(200, {"ok": True})
        if action == "faults" and request.method == "POST":
            spec = request.json()
            status = spec.pop("status", 500)
            self.inject_fault(status, **spec)
            return FakeResponse(200, {"ok": True})
        if action == "latency" and request.method == "POST":
            spec = request.json()
            value = spec.get("seconds")
            self.set_latency(tuple(value) if isinstance(value, list) else value)
            return FakeResponse(200, {"ok": True})
        if action == "script" and request.method == "POST":
            spec = request.json()
            if "job_id" in spec:
                self.script_job(spec["job_id"], *spec["steps"])
            else:
                self.script_next_job(*spec["steps"])
            return FakeResponse(200, {"ok": True})
        return FakeResponse(404, {"error": f"unknown control action {request.method} {action}"})

    # ----------------------------------------------------------------- transports
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> FakeService:
        """Serve on a daemon thread. Returns self; use as a context manager to stop it."""
        server = ThreadingHTTPServer((host, port), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake is not serving; call serve() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeService:
        if self._server is None:
            self.serve()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def mount_responses(self, rsps: Any, base_url: str) -> None:
        """Route every request to ``base_url`` through this fake inside a ``responses.RequestsMock``.

        Every HTTP method is mounted, so create the mock with ``assert_all_requests_are_fired=False``.
        """
        import requests  # the testing extra; only needed for this transport

        base = base_url.rstrip("/")
        pattern = re.compile(re.escape(base).replace(r"\:443", r"(?::443)?") + r"(/.*)?$")

        def callback(prepared: Any) -> tuple[int, dict, bytes]:
            body = prepared.body or b""
            if isinstance(body, str):
                body = body.encode()
            suffix = prepared.url[len(base) :] if prepared.url.startswith(base) else urlsplit(prepared.url).path
            try:
                return self.handle(prepared.method, suffix or "/", dict(prepared.headers), body)
            except DroppedResponse as err:
                raise requests.ConnectionError(f"connection dropped by fake: {err}") from None

        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
            rsps.add_callback(method, pattern, callback=callback)


def _make_handler(service: FakeService) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without it every small response waits ~40 ms for the client's delayed ACK (Nagle).
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = _read_chunked(self.rfile)
            try:
                status, headers, payload = service.handle(self.command, self.path, dict(self.headers), body)
            except DroppedResponse:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            except Exception:  # a bug in the fake must be visible to the test, not a hung client
                log.exception("fake %s failed on %s %s", service.name, self.command, self.path)
                status, headers, payload = 500, {"Content-Type": "application/json"}, b'{"error":"fake crashed"}'
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("fake %s: " + format, service.name, *args)

    return _Handler


def _read_chunked(stream: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int(stream.readline().strip() or b"0", 16)
        if size == 0:
            stream.readline()
            return b"".join(chunks)
        chunks.append(stream.read(size))
        stream.readline()


def iter_fake_names() -> Iterator[str]:
    from importlib.metadata import entry_points

    for ep in entry_points(group="flyteconnectors.fakes"):
        yield ep.name


def load_fake(name: str) -> type[FakeService]:
    """The fake class a connector package registers under the ``flyteconnectors.fakes`` entry-point group."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="flyteconnectors.fakes"):
        if ep.name == name:
            return ep.load()  # type: ignore[no-any-return]
    known = ", ".join(sorted(iter_fake_names())) or "none installed"
    raise LookupError(f"no fake named {name!r} (installed: {known})")
