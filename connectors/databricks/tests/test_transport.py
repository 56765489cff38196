"""The HTTP transport under the SDK's ApiClient: sized keep-alive pool, and requests' behaviour kept."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from requests.models import Request

from flyteconnectors.core.clients import ClientCache
from flyteconnectors.databricks._transport import LeanSession
from flyteconnectors.databricks.connector import DatabricksFunction, DatabricksSettings

TOKEN = "dapi-transport-test"


class _Workspace(ThreadingHTTPServer):
    """Counts the TCP connections it accepts; ``/api/2.0/wait`` holds each call until ``barrier`` is full."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.barrier: threading.Barrier | None = None
        self.seen: list[dict[str, Any]] = []

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Workspace

    def do_GET(self) -> None:
        self.server.seen.append({"path": self.path, "cookie": self.headers.get("Cookie"),
                                 "authorization": self.headers.get("Authorization")})
        headers: dict[str, str] = {}
        status, body = 200, {"ok": True}
        if "/.well-known/" in self.path:
            status, body = 404, {"error_code": "NOT_FOUND", "message": "no such page"}
        elif self.path.endswith("/api/2.0/wait"):
            assert self.server.barrier is not None
            try:
                self.server.barrier.wait()
            except threading.BrokenBarrierError:
                status, body = 503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "calls were queued"}
        elif self.path.endswith("/api/2.0/login"):
            headers["Set-Cookie"] = "lb=node-7; Path=/"
        payload = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {**headers, "Content-Type": "application/json",
                           "Content-Length": str(len(payload))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def workspace() -> Iterator[_Workspace]:
    server = _Workspace()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client_for(url: str, threads: int = 64) -> Any:
    connector = DatabricksFunction(DatabricksSettings(executor_threads=threads, retry_timeout_seconds=1),
                                   ClientCache())
    return connector._new_client(url, "pat", {"token": TOKEN})


def test_as_many_calls_run_at_once_as_the_package_has_threads_and_keep_their_connections(
    workspace: _Workspace,
) -> None:
    """The SDK's own pool keeps 20 connections and queues the 21st call (or, for http://, opens and drops one)."""
    client = client_for(f"http://127.0.0.1:{workspace.server_address[1]}", threads=40)
    before = workspace.connections

    def wait(_: int) -> Any:
        return client.api_client.do("GET", "/api/2.0/wait")

    with ThreadPoolExecutor(40) as pool:
        for _ in range(2):
            workspace.barrier = threading.Barrier(40, timeout=10)
            assert list(pool.map(wait, range(40))) == [{"ok": True}] * 40

    assert workspace.connections - before == 40  # the second round reused every connection of the first
    client.close()


def test_a_cookie_set_by_the_workspace_is_sent_back_like_requests_does(workspace: _Workspace) -> None:
    client = client_for(f"http://127.0.0.1:{workspace.server_address[1]}")
    client.api_client.do("GET", "/api/2.0/login")
    client.api_client.do("GET", "/api/2.0/after")
    assert workspace.seen[-1] == {"path": "/api/2.0/after", "cookie": "lb=node-7", "authorization": f"Bearer {TOKEN}"}


def test_a_proxy_from_the_environment_is_used(workspace: _Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{workspace.server_address[1]}")
    client = client_for("http://adb-1.databricks.invalid")
    assert client.api_client.do("GET", "/api/2.2/jobs/runs/get", query={"run_id": 7}) == {"ok": True}
    assert workspace.seen[-1]["path"] == "http://adb-1.databricks.invalid/api/2.2/jobs/runs/get?run_id=7"


def _auth(request: Any) -> Any:
    request.headers["Authorization"] = "Bearer x"
    return request


@pytest.mark.parametrize("call", [
    {"method": "GET", "url": "https://h.example.com/api/2.2/jobs/runs/get",
     "params": {"run_id": 5, "flag": True, "many": [1, "a b", None], "text": "é"},
     "headers": {"Accept": "application/json", "User-Agent": "sdk/1"}},
    {"method": "POST", "url": "https://h.example.com/api/2.2/jobs/runs/submit", "data": '{"a": 1}',
     "headers": {"Content-Type": "application/json", "user-agent": "sdk/2", "Accept-Encoding": None}},
    {"method": "GET", "url": "https://h.example.com/api/2.0/sql/statements/s-1?x=1", "params": {"y": 2}},
    {"method": "DELETE", "url": "http://127.0.0.1:8080/x", "headers": {"A": "b"}},
])
def test_the_lean_session_prepares_what_requests_would(call: dict[str, Any]) -> None:
    def prepare(session: requests.Session) -> Any:
        session.auth = _auth
        request = Request(method=call["method"], url=call["url"], headers=call.get("headers", {}),
                          data=call.get("data") or {}, params=call.get("params") or {})
        prepared = session.prepare_request(request)
        return prepared.method, prepared.url, list(prepared.headers.items()), prepared.body, prepared.hooks

    assert prepare(LeanSession()) == prepare(requests.Session())
