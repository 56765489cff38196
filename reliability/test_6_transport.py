"""7. Transport security: TLS and mutual TLS work end to end, and under mTLS a client without a valid
certificate (none, another CA's, self-signed, expired) is refused before anything reaches a connector."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from relsuite import certs
from relsuite.jobs import Fleet, Job, Propeller

SECTION = "transport"


@pytest.fixture(scope="module")
def pki(lab) -> dict[str, Any]:
    folder = lab.workdir / "pki"
    ca, rogue = certs.CA("flyteconnectors-test-ca"), certs.CA("rogue-ca")
    server_cert, server_key = ca.issue("connector-host", server=True)
    client = ca.issue("propeller", server=False)
    return {
        "ca": ca.pem,
        "rogue_ca": rogue.pem,
        "client": client,
        "rogue_client": rogue.issue("propeller", server=False),
        "self_signed_client": certs.self_signed_client(),
        "expired_client": ca.issue("propeller", server=False, expired=True),
        "args": ["--tls-cert", certs.write(folder, "server.pem", server_cert),
                 "--tls-key", certs.write(folder, "server.key", server_key)],
        "client_ca_args": ["--tls-client-ca", certs.write(folder, "ca.pem", ca.pem)],
    }


def _channel(host: Any, root: bytes | None, client: tuple[bytes, bytes] | None = None) -> grpc.Channel:
    if root is None:
        return grpc.insecure_channel(host.address)
    cert, key = client or (None, None)
    return grpc.secure_channel(host.address, grpc.ssl_channel_credentials(root, key, cert))


def _one_job(lab: Any, channel: grpc.Channel, execution: str) -> str:
    """Create and poll one example job; its final phase, or the gRPC code that refused it."""
    profile = lab.profile("example")
    client = Propeller([channel], lab.recorder, timeout=5)
    job = Job(profile, profile.job(lab.fakes["example"]), execution=execution)
    fleet = Fleet(client, [job], workers=1, max_attempts=1)
    fleet.create_one(job)
    if job.meta is None:
        return job.create_errors[0].split(":")[0]
    fleet.poll_until_done(limit=20, interval=0.02)
    return job.phase


def _refused(lab: Any, host: Any, channel: grpc.Channel, execution: str) -> tuple[str, int]:
    fake = lab.fakes["example"]
    before = len(fake.requests())
    outcome = _one_job(lab, channel, execution)
    return outcome, len(fake.requests()) - before


def test_tls_and_mtls_serve_jobs_and_mtls_refuses_clients_without_a_valid_certificate(lab, pki, results):
    section = results.section(SECTION)
    outcomes: dict[str, Any] = {}
    tls = lab.host("tls", "--connectors", "example", *pki["args"], tls_root=pki["ca"], start=False)
    mtls = lab.host("mtls", "--connectors", "example", *pki["args"], *pki["client_ca_args"], tls_root=pki["ca"],
                    client_cert=pki["client"], start=False)
    lab.start_all([tls, mtls])
    try:
        with _channel(tls, pki["ca"]) as channel:
            outcomes["TLS: client trusting the CA"] = _one_job(lab, channel, "tls-ok")
        with _channel(tls, None) as channel:
            outcomes["TLS: plaintext client"] = _refused(lab, tls, channel, "tls-plain")
        with _channel(tls, pki["rogue_ca"]) as channel:
            outcomes["TLS: client trusting another CA"] = _refused(lab, tls, channel, "tls-rogue-root")
        with _channel(mtls, pki["ca"], pki["client"]) as channel:
            outcomes["mTLS: client certificate from the CA"] = _one_job(lab, channel, "mtls-ok")
        for label, client in (("no client certificate", None), ("another CA's certificate", pki["rogue_client"]),
                              ("self-signed certificate", pki["self_signed_client"]),
                              ("expired certificate from the CA", pki["expired_client"])):
            with _channel(mtls, pki["ca"], client) as channel:
                outcomes[f"mTLS: {label}"] = _refused(lab, mtls, channel, f"mtls-{len(outcomes)}")
        with _channel(mtls, None) as channel:
            outcomes["mTLS: plaintext client"] = _refused(lab, mtls, channel, "mtls-plain")
        serving = {"tls": tls.health(), "mtls": mtls.health()}
    finally:
        tls.stop(10)
        mtls.stop(10)
    section["outcomes"] = {k: (v if isinstance(v, str) else {"answer": v[0], "service_calls": v[1]})
                           for k, v in outcomes.items()}
    section["health_after"] = serving
    assert outcomes["TLS: client trusting the CA"] == "SUCCEEDED"
    assert outcomes["mTLS: client certificate from the CA"] == "SUCCEEDED"
    refused = {k: v for k, v in outcomes.items() if isinstance(v, tuple)}
    assert all(answer == "UNAVAILABLE" and calls == 0 for answer, calls in refused.values()), refused
    assert serving == {"tls": "SERVING", "mtls": "SERVING"}
