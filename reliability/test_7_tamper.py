"""8. Tamper-evident resource_meta: with a signing key, a forged or altered blob is refused with a clear error
before any call reaches the service; a previous key keeps working during a rotation; without a key nothing
changes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
import secrets
from typing import Any

import grpc
import pytest
from relsuite.jobs import Job, Propeller

SECTION = "tamper"


def _sign(key: str, payload: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest()).decode().rstrip(
        "=")


@pytest.fixture(scope="module")
def keys(lab) -> dict[str, str]:
    found = {"old": f"k1{lab.canary}{secrets.token_hex(8)}", "new": f"k2{lab.canary}{secrets.token_hex(8)}"}
    for key in found.values():
        lab.recorder.add_canary(key)  # signing keys are secrets too: the leak check looks for them
    return found


def _job(lab: Any, name: str) -> tuple[Any, Any]:
    profile = lab.profile("example")
    case = profile.job(lab.fakes["example"])
    return case, Job(profile, case, execution=name).identity()


def _ask(lab: Any, client: Propeller, case: Any, meta: bytes) -> dict[str, Any]:
    """GetTask and DeleteTask with ``meta``: what each answered, and how many calls reached the service."""
    fake = lab.fakes["example"]
    before = len(fake.requests())
    try:
        resource = client.get(case.template, meta)
        get = {"phase": resource.phase, "message": resource.message}
    except grpc.RpcError as err:
        get = {"code": err.code().name, "message": err.details()}
    try:
        client.delete(case.template, meta)
        delete = {"code": "OK", "message": ""}
    except grpc.RpcError as err:
        delete = {"code": err.code().name, "message": err.details()}
    return {"get": get, "delete": delete, "service_calls": len(fake.requests()) - before}


def _forgeries(meta: bytes, other_job_meta: bytes, attacker_key: str) -> dict[str, bytes]:
    signed = json.loads(meta)
    payload = json.loads(signed["p"])
    other = json.loads(json.loads(other_job_meta)["p"])
    swapped = dict(payload, m=other["m"])
    flipped = signed["s"][:-1] + ("A" if signed["s"][-1] != "A" else "B")
    return {
        "payload pointing at another job, old signature": json.dumps(
            {"p": json.dumps(swapped, separators=(",", ":"), sort_keys=True), "s": signed["s"]}).encode(),
        "signature altered": json.dumps({"p": signed["p"], "s": flipped}).encode(),
        "signature removed (plain envelope)": signed["p"].encode(),
        "signed with another key": json.dumps({"p": json.dumps(swapped), "s": _sign(attacker_key,
                                                                                    json.dumps(swapped))}).encode(),
        "empty signature": json.dumps({"p": signed["p"], "s": ""}).encode(),
        "pickle": pickle.dumps({"job_id": payload["m"].get("job_id")}),
    }


def test_signed_resource_meta_refuses_forgeries_before_any_call_and_survives_a_key_rotation(lab, main_host, keys,
                                                                                           results):
    section = results.section(SECTION)
    lab.profile("example").set_outcome(lab.fakes["example"], ("RUNNING", "SUCCEEDED"))
    keyfile = lab.workdir / "signing-keys"
    keyfile.write_text(f"# the first key signs\n{keys['old']}\n")
    old = lab.host("signed-old", "--connectors", "example", "--signing-keys-file", str(keyfile), start=False)
    rotated = lab.host("signed-rotated", "--connectors", "example",
                       env={"FLYTECONNECTORS_SIGNING_KEYS": f"{keys['new']},{keys['old']}"}, start=False)
    new = lab.host("signed-new", "--connectors", "example", env={"FLYTECONNECTORS_SIGNING_KEYS": keys["new"]},
                   start=False)
    lab.start_all([old, rotated, new])
    checks: dict[str, Any] = {}
    try:
        channels = {name: h.channel() for name, h in (("old", old), ("rotated", rotated), ("new", new),
                                                       ("unsigned", main_host))}
        clients = {name: Propeller([c], lab.recorder) for name, c in channels.items()}
        case, ident = _job(lab, "sig-a")
        meta = clients["old"].create(case.template, case.inputs, ident)
        _, ident_b = _job(lab, "sig-b")
        other = clients["old"].create(case.template, case.inputs, ident_b)
        checks["signed meta is an HMAC envelope"] = sorted(json.loads(meta)) == ["p", "s"]
        checks["genuine meta on the signing host"] = _ask(lab, clients["old"], case, meta)

        forgeries = _forgeries(meta, other, f"attacker{secrets.token_hex(8)}")
        refused = {label: _ask(lab, clients["old"], case, blob) for label, blob in forgeries.items()}
        checks["forgeries on the signing host"] = refused

        checks["old key's meta on the rotated host (new, old)"] = _ask(lab, clients["rotated"], case, meta)
        _, ident_c = _job(lab, "sig-c")
        rotated_meta = clients["rotated"].create(case.template, case.inputs, ident_c)
        checks["rotated host's meta on a new-key-only host"] = _ask(lab, clients["new"], case, rotated_meta)
        checks["rotated host's meta on an old-key-only host"] = _ask(lab, clients["old"], case, rotated_meta)
        checks["old key's meta once the old key is retired"] = _ask(lab, clients["new"], case, meta)

        _, ident_d = _job(lab, "sig-d")
        plain = clients["unsigned"].create(case.template, case.inputs, ident_d)
        checks["no key: plain envelope"] = sorted(json.loads(plain)) != ["p", "s"]
        checks["no key: genuine meta"] = _ask(lab, clients["unsigned"], case, plain)
        checks["no key: a signed meta"] = _ask(lab, clients["unsigned"], case, meta)
        for channel in channels.values():
            if channel is not None:
                channel.close()
    finally:
        lab.reset_fakes()
        for host in (old, rotated, new):
            host.stop(10)
    section["checks"] = checks
    section["forgeries"] = len(forgeries)
    section["forgeries_refused_without_a_service_call"] = sum(
        1 for r in refused.values()
        if r["get"].get("phase") == 5 and r["delete"]["code"] == "INVALID_ARGUMENT" and r["service_calls"] == 0)

    def works(answer: dict[str, Any]) -> bool:
        return answer["get"].get("phase") in (1, 2, 3) and answer["delete"]["code"] == "OK" and \
            answer["service_calls"] >= 1

    def refused_clearly(answer: dict[str, Any], words: str) -> bool:
        return (answer["get"].get("phase") == 5 and words in answer["get"]["message"]
                and answer["delete"]["code"] == "INVALID_ARGUMENT" and answer["service_calls"] == 0)

    assert checks["signed meta is an HMAC envelope"]
    assert works(checks["genuine meta on the signing host"]), checks["genuine meta on the signing host"]
    for label, answer in refused.items():
        assert answer["service_calls"] == 0, f"{label}: {answer['service_calls']} call(s) reached the service"
        assert answer["get"].get("phase") == 5 and answer["get"]["message"], f"{label}: {answer['get']}"
        assert answer["delete"]["code"] == "INVALID_ARGUMENT", f"{label}: {answer['delete']}"
        assert "Traceback" not in answer["get"]["message"] + answer["delete"]["message"]
    assert refused_clearly(refused["payload pointing at another job, old signature"], "signature does not match")
    assert refused_clearly(refused["signature removed (plain envelope)"], "unsigned")
    assert works(checks["old key's meta on the rotated host (new, old)"])
    assert works(checks["rotated host's meta on a new-key-only host"])
    assert refused_clearly(checks["rotated host's meta on an old-key-only host"], "signature does not match")
    assert refused_clearly(checks["old key's meta once the old key is retired"], "signature does not match")
    assert checks["no key: plain envelope"]
    assert works(checks["no key: genuine meta"])
    assert refused_clearly(checks["no key: a signed meta"], "no signing key")
