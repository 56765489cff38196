"""Job metadata (``resource_meta``): a typed model in a small, versioned JSON envelope.

Propeller stores these bytes in etcd and hands them back on every GetTask and DeleteTask, to any replica.
So they hold only what is needed to find the job again: never pickle (decoding must be safe for untrusted
bytes), never a credential, never more than a few KB. With a signing key configured the envelope carries an
HMAC, and a forged or altered blob is refused before any cloud call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from flyteconnectors.core.errors import InvalidResourceMeta

ENVELOPE_VERSION = 1
#: Upper bound for the encoded bytes; resource_meta shares the workflow CR's etcd budget.
MAX_META_BYTES = 4096

_CREDENTIAL_NAME = re.compile(
    r"(^|_)(token|secret|password|passwd|credential|credentials|api_?key|private_?key|auth|bearer)(_|$)",
    re.IGNORECASE,
)


#: What we say about metadata another connector host wrote (flytekit's writes JSON or cloudpickle).
FOREIGN = (
    "as written by another connector host such as flytekit's (pyflyte serve connector): jobs started there "
    "cannot be adopted by flyteconnectors; let them finish (drain that host) before switching, see "
    "docs/migrating-from-flytekit.md"
)


class JobMeta(BaseModel):
    """Base of every connector's job metadata: the few fields needed to find the job again."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


def _credential_fields(data: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if _CREDENTIAL_NAME.search(str(key)) and value not in (None, "", False):
                found.append(where)
            found.extend(_credential_fields(value, where))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found.extend(_credential_fields(value, f"{path}[{i}]"))
    return found


@dataclass
class Envelope:
    """What resource_meta decodes to: whose job it is, the connector's metadata, and core bookkeeping."""

    task_type: str
    task_version: int
    meta: dict[str, Any]
    #: Output interface (serialized flyteidl VariableMap, base64) so GetTask can type the outputs.
    outputs: str | None = None
    #: A permanent failure recorded at create time; GetTask answers FAILED with it, no cloud call.
    failure: str | None = None
    created_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class MetaCodec:
    """Encodes and decodes envelopes, optionally signing them (HMAC-SHA256).

    ``keys[0]`` signs; every key verifies, so a previous key keeps working during rotation.
    """

    def __init__(self, keys: Sequence[bytes] = (), *, max_bytes: int = MAX_META_BYTES) -> None:
        self.keys = [k for k in keys if k]
        self.max_bytes = max_bytes

    def encode(self, envelope: Envelope) -> bytes:
        bad = _credential_fields(envelope.meta)
        if bad:
            raise ValueError(f"job metadata must not carry credentials; refusing field(s) {', '.join(bad)}")
        body: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "t": envelope.task_type,
            "tv": envelope.task_version,
            "m": envelope.meta,
        }
        if envelope.outputs is not None:
            body["o"] = envelope.outputs
        if envelope.failure is not None:
            body["f"] = envelope.failure
        if envelope.created_at is not None:
            body["c"] = round(envelope.created_at, 3)
        if envelope.extra:
            body["x"] = envelope.extra
        payload = json.dumps(body, separators=(",", ":"), sort_keys=True)
        if self.keys:
            wrapped = {"p": payload, "s": _sign(self.keys[0], payload)}
            raw = json.dumps(wrapped, separators=(",", ":")).encode()
        else:
            raw = payload.encode()
        if len(raw) > self.max_bytes:
            raise ValueError(
                f"resource_meta is {len(raw)} bytes, over the {self.max_bytes}-byte limit: keep only the fields "
                "needed to find the job again"
            )
        return raw

    def decode(self, raw: bytes) -> Envelope:
        if not raw:
            raise InvalidResourceMeta("resource_meta is empty")
        if len(raw) > self.max_bytes * 4:
            raise InvalidResourceMeta(f"resource_meta is {len(raw)} bytes, far over the limit; not ours")
        if raw[:1] not in (b"{",):
            if raw[:1] == b"\x80":  # never unpickled: pickles execute code on load
                raise InvalidResourceMeta(f"resource_meta is a pickle, {FOREIGN}")
            raise InvalidResourceMeta("resource_meta is not a flyteconnectors envelope")
        try:
            outer = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise InvalidResourceMeta(f"resource_meta is not valid JSON: {err}") from None
        if not isinstance(outer, dict):
            raise InvalidResourceMeta("resource_meta is not a JSON object")
        if "p" in outer and "s" in outer:
            payload = outer["p"]
            if not isinstance(payload, str) or not isinstance(outer["s"], str):
                raise InvalidResourceMeta("resource_meta signature envelope is malformed")
            if not self.keys:
                raise InvalidResourceMeta("resource_meta is signed but this host has no signing key configured")
            ok = any(hmac.compare_digest(_sign(k, payload), outer["s"]) for k in self.keys)
            if not ok:
                raise InvalidResourceMeta("resource_meta signature does not match: refusing a forged or altered blob")
            try:
                body = json.loads(payload)
            except ValueError as err:
                raise InvalidResourceMeta(f"signed resource_meta payload is not JSON: {err}") from None
        else:
            if "v" not in outer and "m" not in outer:
                raise InvalidResourceMeta(f"resource_meta is plain JSON without our envelope, {FOREIGN}")
            if self.keys:
                raise InvalidResourceMeta("resource_meta is unsigned but this host requires signed metadata")
            body = outer
        if not isinstance(body, dict) or body.get("v") != ENVELOPE_VERSION:
            raise InvalidResourceMeta(
                f"resource_meta envelope version {body.get('v') if isinstance(body, dict) else '?'!r} is not supported"
            )
        try:
            task_type = body["t"]
            task_version = body["tv"]
            meta = body["m"]
        except KeyError as err:
            raise InvalidResourceMeta(f"resource_meta envelope lacks {err.args[0]!r}") from None
        if not isinstance(task_type, str) or not isinstance(task_version, int) or not isinstance(meta, dict):
            raise InvalidResourceMeta("resource_meta envelope fields have the wrong types")
        outputs = body.get("o")
        failure = body.get("f")
        created = body.get("c")
        extra = body.get("x") or {}
        if outputs is not None and not isinstance(outputs, str):
            raise InvalidResourceMeta("resource_meta envelope field 'o' has the wrong type")
        if failure is not None and not isinstance(failure, str):
            raise InvalidResourceMeta("resource_meta envelope field 'f' has the wrong type")
        if created is not None and not isinstance(created, (int, float)):
            raise InvalidResourceMeta("resource_meta envelope field 'c' has the wrong type")
        if not isinstance(extra, dict):
            raise InvalidResourceMeta("resource_meta envelope field 'x' has the wrong type")
        return Envelope(task_type, task_version, meta, outputs, failure, created, extra)


def _sign(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def parse_meta(model: type[JobMeta], data: dict[str, Any]) -> JobMeta:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors())
        raise InvalidResourceMeta(f"resource_meta does not match {model.__name__}: bad field(s) {fields}") from None
