"""Run a connector package's fake in its own process, configured for a load benchmark.

    python benchmarks/fake_runner.py NAME --port-file F [--latency 0.05] [--script '["RUNNING", ...]']
        [--kwargs '{"execute_python": false}'] [--setup JSON] [--tls-cert C --tls-key K]

* ``--latency``: seconds added to every service request (``FakeService.set_latency``);
* ``--script``: JSON list, the fake's ``default_script`` (the states a new job walks, one step per status read);
* ``--tls-cert/--tls-key``: serve HTTPS (for SDKs that hard-code ``https://``, e.g. flytekit's Databricks
  connector); each connection's handshake runs on its own handler thread;
* ``--setup``: JSON naming per-fake preparation (a Snowflake user with a public key, an uploaded OpenAI batch
  file); the port file then holds ``{"port": N, "setup": {...}}``;
* ``GET /_fake/bench`` answers ``{"jobs": <remote jobs created>, "requests": <journal size>, "statuses": {...}}``,
  so the harness can count orphaned jobs (remote jobs the client never learned of).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import ssl
import sys
import threading
from collections import Counter
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

from flyteconnectors.core.testing.fake import FakeRequest, FakeResponse, FakeService, _make_handler, load_fake


def _snowflake_jobs(fake: Any) -> int:
    return sum(1 for q in fake.queries.values() if "bench_marker" in q.sql.lower())


#: How many remote jobs each fake holds (what a benchmark job creates: a run, a query job, a batch, ...).
REMOTE_JOBS: dict[str, Callable[[Any], int]] = {
    "databricks": lambda fake: len(fake.runs),
    "bigquery": lambda fake: len(fake.jobs),
    "snowflake": _snowflake_jobs,
    "openai": lambda fake: len(fake.batches),
    "sagemaker": lambda fake: len(fake.names("training")),
}


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake happens here, on the connection's own thread, not in the accept loop.
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()


def setup(fake: FakeService, spec: dict[str, Any]) -> dict[str, Any]:
    """Per-fake preparation named in ``--setup``; returns what the harness needs to know (file ids, ...)."""
    out: dict[str, Any] = {}
    if spec.get("snowflake_user"):
        fake.add_user(spec["snowflake_user"], public_key=spec["public_key"])  # type: ignore[attr-defined]
    if spec.get("batch_file"):
        lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"prompt {i}"}]}}
                 for i in range(2)]
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        out["file_id"] = fake._add_file("bench.jsonl", content, "batch")["id"]  # type: ignore[attr-defined]
    return out


def configure(fake: FakeService, latency: float, script: list[Any] | None) -> None:
    if script:
        fake.default_script = tuple(script)  # instance attribute: new jobs walk this
    if latency > 0:
        fake.set_latency(latency)
    count = REMOTE_JOBS.get(fake.name, lambda f: len(f.scripts))
    original = fake._control

    def control(request: FakeRequest) -> FakeResponse:
        if request.path.rstrip("/") == "/_fake/bench":
            with fake.lock:
                statuses = Counter(str(e.status) for e in fake.journal)
                size = len(fake.journal)
            return FakeResponse(200, {"jobs": count(fake), "requests": size, "statuses": dict(statuses)})
        return original(request)

    fake._control = control  # type: ignore[method-assign]


def serve_tls(fake: FakeService, cert: str, key: str) -> None:
    warm = getattr(fake, "_warm_up", None)
    if callable(warm):
        warm()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = _TLSServer(("127.0.0.1", 0), _make_handler(fake), context)
    fake._server = server
    fake._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    fake._thread.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--script", default="")
    parser.add_argument("--kwargs", default="{}")
    parser.add_argument("--setup", default="{}", help="JSON: per-fake preparation (see setup())")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args(argv)
    socket.setdefaulttimeout(None)
    fake = load_fake(args.name)(**json.loads(args.kwargs))
    prepared = setup(fake, json.loads(args.setup))
    configure(fake, args.latency, json.loads(args.script) if args.script else None)
    if args.tls_cert:
        serve_tls(fake, args.tls_cert, args.tls_key)
    else:
        fake.serve("127.0.0.1", 0)
    tmp = f"{args.port_file}.tmp"
    with open(tmp, "w") as fh:
        json.dump({"port": fake.port, "setup": prepared}, fh)
    os.replace(tmp, args.port_file)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
