"""A hypothesis-driven fuzzer of every RPC the host serves, sending raw bytes through a generic gRPC channel.

Requests are built as protobufs (so they decode) but carry wrong contents — unknown task types and versions,
custom fields missing or of the wrong type, inputs that do not match the interface, random or altered
resource_meta, pickles — or are raw bytes: random, truncated or bit-flipped valid requests, and oversized
messages. ExecuteTaskSync streams get only a header, two headers, inputs first, or nothing.

Every answer is classified: its gRPC code (or, for OK answers carrying a Resource, its phase), and whether it
is a clear answer to an input error. Not clear: INTERNAL or UNKNOWN, no answer within the deadline
(UNAVAILABLE, DEADLINE_EXCEEDED), a Python traceback in the details, phase UNDEFINED, or FAILED without a
message.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.core import literals_pb2, tasks_pb2, types_pb2
from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import Phase as HPhase
from hypothesis import strategies as st

from flyteconnectors.core import literals
from flyteconnectors.core.testing import builders
from relsuite.lab import Recorder
from relsuite.profiles import PHASE_NAMES

TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|\bline \d+, in \w+")
NOT_CLEAR = {"INTERNAL", "UNKNOWN", "DATA_LOSS", "UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"}


# ============================================================================================== the RPCs
@dataclass(frozen=True)
class Rpc:
    service: str
    method: str
    request: type[Any]
    response: type[Any]
    kind: str  # unary | server_stream | bidi

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"

    @property
    def name(self) -> str:
        wire = "v2" if self.service.startswith("flyteidl2") else "v1"
        return f"{wire} {self.method}"


def rpcs() -> list[Rpc]:
    a = agent_pb2
    found = [
        Rpc("flyteidl.service.AsyncAgentService", "CreateTask", a.CreateTaskRequest, a.CreateTaskResponse, "unary"),
        Rpc("flyteidl.service.AsyncAgentService", "GetTask", a.GetTaskRequest, a.GetTaskResponse, "unary"),
        Rpc("flyteidl.service.AsyncAgentService", "DeleteTask", a.DeleteTaskRequest, a.DeleteTaskResponse, "unary"),
        Rpc("flyteidl.service.AsyncAgentService", "GetTaskMetrics", a.GetTaskMetricsRequest,
            a.GetTaskMetricsResponse, "unary"),
        Rpc("flyteidl.service.AsyncAgentService", "GetTaskLogs", a.GetTaskLogsRequest, a.GetTaskLogsResponse,
            "server_stream"),
        Rpc("flyteidl.service.SyncAgentService", "ExecuteTaskSync", a.ExecuteTaskSyncRequest,
            a.ExecuteTaskSyncResponse, "bidi"),
        Rpc("flyteidl.service.AgentMetadataService", "GetAgent", a.GetAgentRequest, a.GetAgentResponse, "unary"),
        Rpc("flyteidl.service.AgentMetadataService", "ListAgents", a.ListAgentsRequest, a.ListAgentsResponse,
            "unary"),
    ]
    try:
        from flyteidl2.connector import connector_pb2 as c
    except ImportError:
        return found
    s = "flyteidl2.connector.AsyncConnectorService"
    m = "flyteidl2.connector.ConnectorMetadataService"
    found += [
        Rpc(s, "CreateTask", c.CreateTaskRequest, c.CreateTaskResponse, "unary"),
        Rpc(s, "GetTask", c.GetTaskRequest, c.GetTaskResponse, "unary"),
        Rpc(s, "DeleteTask", c.DeleteTaskRequest, c.DeleteTaskResponse, "unary"),
        Rpc(s, "GetTaskMetrics", c.GetTaskMetricsRequest, c.GetTaskMetricsResponse, "unary"),
        Rpc(s, "GetTaskLogs", c.GetTaskLogsRequest, c.GetTaskLogsResponse, "server_stream"),
        Rpc(m, "GetConnector", c.GetConnectorRequest, c.GetConnectorResponse, "unary"),
        Rpc(m, "ListConnectors", c.ListConnectorsRequest, c.ListConnectorsResponse, "unary"),
    ]
    return found


# ============================================================================================== context
@dataclass
class Seeds:
    """What valid requests look like on this host: served task types, a valid task per type, real metas."""

    task_types: list[tuple[str, int, bool]]  # (name, version, is_sync)
    cases: dict[str, tuple[Any, dict[str, Any]]]  # task type -> (template, inputs)
    metas: dict[str, bytes]  # async task type -> resource_meta of a real job
    pickle_marker: str

    def names(self, sync: bool | None = None) -> list[str]:
        return sorted({n for n, _v, s in self.task_types if sync is None or s == sync})


def pickle_probe(sender: Sender, seeds: Seeds, folder: str, wire: str = "v1") -> list[str]:
    """GetTask and DeleteTask with a pickle as resource_meta for every served async task type; the task types
    whose host unpickled it (the pickle creates a marker file when loaded)."""
    import os

    executed = []
    by_name = {r.name: r for r in rpcs()}
    for name, version, is_sync in seeds.task_types:
        if is_sync:
            continue
        marker = os.path.join(folder, f"unpickled-{len(executed)}-{abs(hash(name))}")
        blob = pickle.dumps(_Marker(marker))
        for method in ("GetTask", "DeleteTask"):
            rpc = by_name[f"{wire} {method}"]
            category = type(rpc.request().task_category)(name=name, version=version)
            request = rpc.request(task_category=category, resource_meta=blob)
            if "task_type" in rpc.request.DESCRIPTOR.fields_by_name:
                request.task_type = name
            sender.send(rpc, request.SerializeToString())
        if os.path.exists(marker):
            executed.append(name)
    return executed


class _Marker:
    """A pickle that, if anything ever unpickles it, creates the marker file (open(path, "w"))."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


# ============================================================================================== strategies
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False, width=32),
                    st.text(max_size=24))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=12), inner, max_size=3), max_leaves=6)
NAMES = st.text(min_size=0, max_size=40)
TYPES: list[Any] = [int, float, str, bool, dict, list[int], dict[str, int], builders.FILE,
                    builders.STRUCTURED_DATASET]


def _seeded_bytes(size_seed: tuple[int, int]) -> bytes:
    size, seed = size_seed
    return random.Random(seed).randbytes(size)


def st_blob(max_size: int = 600) -> st.SearchStrategy[bytes]:
    small = st.binary(max_size=max_size)
    large = st.tuples(st.integers(20_000, 1_000_000), st.integers(0, 2**32)).map(_seeded_bytes)
    return st.one_of(*([small] * 9), large)


def st_mutated(valid: Sequence[bytes]) -> st.SearchStrategy[tuple[str, bytes]]:
    """Truncated or bit-flipped copies of valid messages."""
    valid = [v for v in valid if v]
    if not valid:
        return st.tuples(st.just("random bytes"), st.binary(max_size=200))

    @st.composite
    def truncated(draw: Any) -> tuple[str, bytes]:
        raw = draw(st.sampled_from(valid))
        return "truncated", raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]

    @st.composite
    def flipped(draw: Any) -> tuple[str, bytes]:
        raw = bytearray(draw(st.sampled_from(valid)))
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, len(raw) - 1))
            raw[at] = draw(st.integers(0, 255))
        return "bit-flipped", bytes(raw)

    return st.one_of(truncated(), flipped())


def st_meta(seeds: Seeds) -> st.SearchStrategy[tuple[str, bytes]]:
    """resource_meta: random bytes, altered real metas, envelope look-alikes, pickles, huge blobs."""
    metas = list(seeds.metas.values())
    keys = st.sampled_from(["v", "t", "tv", "m", "o", "f", "c", "x", "p", "s"])

    @st.composite
    def lookalike(draw: Any) -> tuple[str, bytes]:
        body = draw(st.dictionaries(keys, JSON, max_size=6))
        if draw(st.booleans()):
            body.setdefault("v", draw(st.sampled_from([1, 1, 2, "1", None])))
        return "envelope look-alike", json.dumps(body).encode()

    @st.composite
    def retyped(draw: Any) -> tuple[str, bytes]:
        meta = json.loads(draw(st.sampled_from(metas)))
        target = meta
        if "p" in meta and isinstance(meta["p"], str):  # signed: alter the payload, keep the signature
            target = json.loads(meta["p"])
        key = draw(st.sampled_from([*sorted(target), "m"]))
        target[key] = draw(JSON)
        if isinstance(target.get("m"), dict) and target["m"] and draw(st.booleans()):
            inner = draw(st.sampled_from(sorted(target["m"])))
            target["m"][inner] = draw(JSON)
        if target is not meta:
            meta["p"] = json.dumps(target)
        return "altered envelope", json.dumps(meta).encode()

    @st.composite
    def pickled(draw: Any) -> tuple[str, bytes]:
        payload = draw(st.sampled_from([_Marker(seeds.pickle_marker), {"job_id": "x"}]))
        return "pickle", pickle.dumps(payload, protocol=draw(st.integers(2, 5)))

    options = [st.tuples(st.just("random bytes"), st_blob()), lookalike(), pickled(),
               st.tuples(st.just("empty"), st.just(b""))]
    if metas:
        options += [retyped(), st_mutated(metas)]
    return st.one_of(*options)


def st_category(seeds: Seeds, sync: bool | None = False) -> st.SearchStrategy[tuple[str, int]]:
    served = [(n, v) for n, v, s in seeds.task_types if sync is None or s == sync] or [("none", 0)]
    return st.one_of(st.sampled_from(served), st.sampled_from(served), st.tuples(NAMES, st.just(0)),
                     st.tuples(st.sampled_from([n for n, _ in served]), st.integers(-(2**31), 2**31 - 1)))


@st.composite
def st_custom(draw: Any, valid: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """A template's custom: valid, a field missing, a field of the wrong type, an unknown field, or junk."""
    valid = dict(valid or {})
    op = draw(st.sampled_from(["missing field", "wrong type", "unknown field", "junk", "none", "valid"]))
    if op == "missing field" and valid:
        valid.pop(draw(st.sampled_from(sorted(valid))))
    elif op == "wrong type" and valid:
        valid[draw(st.sampled_from(sorted(valid)))] = draw(JSON)
    elif op == "unknown field":
        valid[draw(st.text(min_size=1, max_size=16))] = draw(JSON)
    elif op == "junk":
        valid = draw(st.dictionaries(st.text(max_size=12), JSON, max_size=4))
    elif op == "none":
        return op, None
    return op, valid


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@st.composite
def st_template(draw: Any, seeds: Seeds, sync: bool | None = False) -> tuple[str, Any, dict[str, Any]]:
    """A TaskTemplate and python inputs, mostly of a served type with something wrong in it."""
    name, version = draw(st_category(seeds, sync))
    base = seeds.cases.get(name)
    if base is not None:
        template = tasks_pb2.TaskTemplate()
        template.CopyFrom(base[0])
        inputs = dict(base[1])
    else:
        template = builders.task_template(name or "x", {})
        inputs = {}
    template.type = name
    template.task_type_version = version
    labels = [] if base is not None and version == base[0].task_type_version else ["unknown type/version"]
    from google.protobuf import json_format

    valid_custom = json_format.MessageToDict(template.custom) if template.HasField("custom") else None
    op, custom = draw(st_custom(valid_custom))
    template.ClearField("custom")
    if custom is not None:
        struct = struct_pb2.Struct()
        struct.update(_jsonable(custom))
        template.custom.CopyFrom(struct)
    labels.append(f"custom: {op}")
    what = draw(st.sampled_from(["inputs: valid", "inputs: wrong types", "inputs: missing", "inputs: extra",
                                 "interface: changed", "sql: junk", "container args: junk"]))
    if what == "inputs: wrong types":
        inputs = {k: draw(st.one_of(st.text(max_size=8), st.integers(), st.lists(st.integers(), max_size=3),
                                    st.booleans())) for k in inputs} or {"x": draw(st.integers())}
    elif what == "inputs: missing":
        inputs = {}
    elif what == "inputs: extra":
        inputs[draw(st.text(min_size=1, max_size=10))] = draw(st.one_of(st.integers(), st.text(max_size=8)))
    elif what == "interface: changed":
        names = draw(st.lists(st.text(min_size=1, max_size=8), max_size=3, unique=True))
        ins = {n: draw(st.sampled_from(TYPES)) for n in names}
        outs = {n: draw(st.sampled_from(TYPES)) for n in draw(st.lists(st.text(min_size=1, max_size=8),
                                                                        max_size=3, unique=True))}
        template.interface.CopyFrom(builders.task_template("x", inputs=ins, outputs=outs).interface)
    elif what == "sql: junk":
        template.sql.CopyFrom(tasks_pb2.Sql(statement=draw(st.text(max_size=60))))
    elif what == "container args: junk":
        template.container.CopyFrom(tasks_pb2.Container(image=draw(st.text(max_size=20)),
                                                        args=draw(st.lists(st.text(max_size=20), max_size=5))))
    labels.append(what)
    return " / ".join(labels), template, inputs


def _literal_map(template: Any, inputs: dict[str, Any]) -> literals_pb2.LiteralMap:
    """Inputs as literals, typed by the interface when the value fits, else by the value itself."""
    types = {n: v.type for n, v in template.interface.inputs.variables.items()}
    out = {}
    for name, value in inputs.items():
        try:
            out[name] = literals.to_literal(value, types.get(name), name)
        except Exception:
            try:
                out[name] = literals.to_literal(value, None, name)
            except Exception:
                out[name] = literals_pb2.Literal()
    return literals_pb2.LiteralMap(literals=out)


@st.composite
def st_exec_meta(draw: Any) -> agent_pb2.TaskExecutionMetadata:
    if draw(st.booleans()):
        return builders.execution_metadata(builders.identity(execution=f"fz{draw(st.integers(0, 10**9))}"))
    ident = builders.identity(execution=draw(NAMES), node_id=draw(NAMES), retry_attempt=draw(st.integers(0, 2**32 - 1)),
                              project=draw(NAMES), domain=draw(NAMES))
    meta = builders.execution_metadata(ident)
    meta.labels.update(draw(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)))
    return meta


@st.composite
def st_create_v1(draw: Any, seeds: Seeds) -> tuple[str, bytes]:
    label, template, inputs = draw(st_template(seeds, sync=False))
    request = agent_pb2.CreateTaskRequest(template=template, inputs=_literal_map(template, inputs),
                                          output_prefix=draw(st.sampled_from([builders.OUTPUT_PREFIX, "", "junk"])),
                                          task_execution_metadata=draw(st_exec_meta()))
    return label, request.SerializeToString()


def _category_v1(name: str, version: int) -> agent_pb2.TaskCategory:
    return agent_pb2.TaskCategory(name=name, version=version)


@st.composite
def st_by_meta_v1(draw: Any, seeds: Seeds, cls: type[Any]) -> tuple[str, bytes]:
    """GetTask / DeleteTask / GetTaskMetrics / GetTaskLogs with a wrong resource_meta or category."""
    label, meta = draw(st_meta(seeds))
    name, version = draw(st_category(seeds, sync=None))
    request = cls(task_category=_category_v1(name, version), resource_meta=meta)
    if "task_type" in cls.DESCRIPTOR.fields_by_name and draw(st.booleans()):
        request.task_type = name
    if "output_prefix" in cls.DESCRIPTOR.fields_by_name:
        request.output_prefix = draw(st.sampled_from([builders.OUTPUT_PREFIX, ""]))
    return f"resource_meta: {label}", request.SerializeToString()


@st.composite
def st_sync_stream(draw: Any, seeds: Seeds) -> tuple[str, list[bytes]]:
    """ExecuteTaskSync message sequences: header only, two headers, inputs first, empty, or too many."""
    label, template, inputs = draw(st_template(seeds, sync=True))
    header = agent_pb2.ExecuteTaskSyncRequest(header=agent_pb2.CreateRequestHeader(
        template=template, output_prefix=builders.OUTPUT_PREFIX,
        task_execution_metadata=draw(st_exec_meta()))).SerializeToString()
    body = agent_pb2.ExecuteTaskSyncRequest(inputs=_literal_map(template, inputs)).SerializeToString()
    shape = draw(st.sampled_from(["header + inputs", "header only", "two headers", "inputs first", "inputs only",
                                  "empty stream", "header + inputs + inputs", "header + junk"]))
    messages = {
        "header + inputs": [header, body],
        "header only": [header],
        "two headers": [header, header],
        "inputs first": [body, header],
        "inputs only": [body],
        "empty stream": [],
        "header + inputs + inputs": [header, body, body],
        "header + junk": [header, draw(st.binary(max_size=80))],
    }[shape]
    return f"stream: {shape} / {label}", messages


def _v2(cls_name: str) -> Any:
    from flyteidl2.connector import connector_pb2

    return getattr(connector_pb2, cls_name)


@st.composite
def st_create_v2(draw: Any, seeds: Seeds) -> tuple[str, bytes]:
    from flyteidl2.core import literals_pb2 as l2
    from flyteidl2.core import security_pb2
    from flyteidl2.core import tasks_pb2 as t2
    from flyteidl2.task import common_pb2

    label, template, inputs = draw(st_template(seeds, sync=False))
    v1_inputs = _literal_map(template, inputs)
    named = [common_pb2.NamedLiteral(name=n, value=l2.Literal.FromString(lit.SerializeToString()))
             for n, lit in v1_inputs.literals.items()]
    if draw(st.booleans()) and named:
        named.append(named[0])  # the same input twice
        label += " / duplicate input"
    request = _v2("CreateTaskRequest")(
        template=t2.TaskTemplate.FromString(template.SerializeToString()),
        inputs=common_pb2.Inputs(literals=named), output_prefix=builders.OUTPUT_PREFIX,
        task_execution_metadata=_v2("TaskExecutionMetadata").FromString(
            draw(st_exec_meta()).SerializeToString()),
        connection=security_pb2.Connection(task_type=template.type, secrets=draw(
            st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=2))),
    )
    return label, request.SerializeToString()


@st.composite
def st_by_meta_v2(draw: Any, seeds: Seeds, cls_name: str) -> tuple[str, bytes]:
    label, meta = draw(st_meta(seeds))
    name, version = draw(st_category(seeds, sync=None))
    cls = _v2(cls_name)
    request = cls(task_category=_v2("TaskCategory")(name=name, version=version), resource_meta=meta)
    if "output_prefix" in cls.DESCRIPTOR.fields_by_name:
        request.output_prefix = builders.OUTPUT_PREFIX
    return f"resource_meta: {label}", request.SerializeToString()


def strategy_for(rpc: Rpc, seeds: Seeds, valid: Sequence[bytes]) -> st.SearchStrategy[tuple[str, Any]]:
    """What the fuzzer sends to one RPC: mostly well-formed protobufs with bad contents, else bad bytes."""
    raw = st.tuples(st.just("random bytes"), st.binary(max_size=400))
    mutated = st_mutated(valid)
    wire = rpc.service.startswith("flyteidl2")
    structured: st.SearchStrategy[tuple[str, Any]] | None = None
    if rpc.method == "CreateTask":
        structured = st_create_v2(seeds) if wire else st_create_v1(seeds)
    elif rpc.method in ("GetTask", "DeleteTask", "GetTaskMetrics", "GetTaskLogs"):
        structured = (st_by_meta_v2(seeds, f"{rpc.method}Request") if wire
                      else st_by_meta_v1(seeds, rpc.request))
    elif rpc.method in ("GetAgent", "GetConnector"):
        names = st.one_of(NAMES, st.sampled_from(seeds.names() or ["x"]))
        if wire:
            structured = names.map(lambda n: ("name", _v2("GetConnectorRequest")(name=n).SerializeToString()))
        else:
            structured = names.map(lambda n: ("name", agent_pb2.GetAgentRequest(name=n).SerializeToString()))
    if rpc.kind == "bidi":
        as_stream = st.one_of(raw, mutated).map(lambda case: (case[0], [case[1]]))
        many = st.lists(st.binary(max_size=100), min_size=1, max_size=3).map(lambda ms: ("random messages", ms))
        return st.one_of(st_sync_stream(seeds), st_sync_stream(seeds), st_sync_stream(seeds), as_stream, many)
    if structured is None:
        return st.one_of(raw, mutated)
    return st.one_of(structured, structured, structured, raw, mutated)


# ============================================================================================== cheap variants
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_TEXTS = ["", "\x00", "é€😀", "../../etc/passwd", "{{ .inputs.x }}", "a" * 300, "null", "-1", "SELECT 1; DROP",
          "\ud7ff"]


def _random_scalar(fd: Any, rng: random.Random) -> Any:
    if fd.type == FieldDescriptor.TYPE_STRING:
        return rng.choice(_TEXTS) if rng.random() < 0.5 else "".join(
            chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 20)))
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.randint(0, 64))
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if fd.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return rng.choice([0.0, -1.0, 1e308, -1e-308, float("inf"), rng.uniform(-1e6, 1e6)])
    if fd.type == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in fd.enum_type.values]
        return rng.choice([*values, max(values) + rng.randint(1, 1000)])
    low, high = _INT_RANGES.get(fd.type, (0, 2**31 - 1))
    return rng.choice([low, high, 0, -1 if low < 0 else 1, rng.randint(low, high)])


def mutate_message(message: Any, rng: random.Random, depth: int = 0) -> str:
    """Change one field somewhere in ``message`` (clear it or give it a random value of its type)."""
    fields = list(message.DESCRIPTOR.fields)
    if not fields:
        return "nothing to change"
    fd = rng.choice(fields)
    is_map = fd.message_type is not None and fd.message_type.GetOptions().map_entry
    repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == FieldDescriptor.LABEL_REPEATED
    try:
        if rng.random() < 0.25:
            message.ClearField(fd.name)
            return f"cleared {fd.name}"
        if is_map:
            container = getattr(message, fd.name)
            key_fd, value_fd = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
            key = _random_scalar(key_fd, rng)
            if value_fd.message_type is None:
                container[key] = _random_scalar(value_fd, rng)
            else:
                mutate_message(container[key], rng, depth + 1)
            return f"map entry in {fd.name}"
        if fd.message_type is not None:
            if repeated:
                container = getattr(message, fd.name)
                target = container[rng.randrange(len(container))] if len(container) and rng.random() < 0.7 \
                    else container.add()
            else:
                target = getattr(message, fd.name)
            if depth < 6:
                return f"{fd.name}.{mutate_message(target, rng, depth + 1)}"
            return fd.name
        if repeated:
            getattr(message, fd.name).append(_random_scalar(fd, rng))
            return f"appended to {fd.name}"
        setattr(message, fd.name, _random_scalar(fd, rng))
        return f"set {fd.name}"
    except (TypeError, ValueError, AttributeError, KeyError):
        return "unchanged"


def _mutate_raw(raw: bytes, rng: random.Random) -> tuple[str, bytes]:
    choice = rng.random()
    if choice < 0.4 and raw:
        return "truncated", raw[: rng.randrange(len(raw))]
    if choice < 0.8 and raw:
        data = bytearray(raw)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return "bit-flipped", bytes(data)
    return "random bytes", rng.randbytes(rng.randint(0, 300))


def variants(rpc: Rpc, payload: Any, seed: int, count: int) -> list[tuple[str, Any]]:
    """Cheap relatives of a generated request: half changed field by field (still protobuf), half byte-wise."""
    rng = random.Random(seed)
    out: list[tuple[str, Any]] = []
    messages = list(payload) if isinstance(payload, list) else [payload]
    for i in range(count):
        index = rng.randrange(len(messages)) if messages else 0
        raw = messages[index] if messages else b""
        if i % 2 == 0:
            try:
                message = rpc.request.FromString(raw)
            except DecodeError:
                message = rpc.request()
            for _ in range(rng.randint(1, 3)):
                mutate_message(message, rng)
            try:
                label, new = "field-mutated", message.SerializeToString()
            except Exception:  # a value protobuf refuses to encode
                label, new = _mutate_raw(raw, rng)
        else:
            label, new = _mutate_raw(raw, rng)
        if isinstance(payload, list):
            changed = list(messages) or [b""]
            changed[min(index, len(changed) - 1)] = new
            out.append((label, changed))
        else:
            out.append((label, new))
    return out


# ============================================================================================== sending
@dataclass
class Tally:
    """Outcomes of one RPC's fuzz run."""

    rpc: str
    sent: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    #: Requests the client itself could not decode: the host cannot either (judged separately).
    undecodable: Counter[str] = field(default_factory=Counter)
    undecodable_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "outcomes": dict(self.codes.most_common()),
                "undecodable_outcomes": dict(self.undecodable.most_common()),
                "problems": len(self.problems), "undecodable_problems": len(self.undecodable_problems),
                "problem_samples": self.problems[:5], "undecodable_samples": self.undecodable_problems[:3],
                "seconds": round(self.seconds, 1)}


def decodes(rpc: Rpc, payload: Any) -> bool:
    messages = payload if isinstance(payload, list) else [payload]
    try:
        for raw in messages:
            rpc.request.FromString(raw)
    except DecodeError:
        return False
    return True


def _resources(rpc: Rpc, answers: list[bytes]) -> list[Any]:
    found = []
    for raw in answers:
        message = rpc.response.FromString(raw)
        if rpc.method == "GetTask":
            found.append(message.resource)
        elif rpc.method == "ExecuteTaskSync" and message.HasField("header"):
            found.append(message.header.resource)
    return found


class Sender:
    def __init__(self, channel: grpc.Channel, recorder: Recorder, timeout: float = 10.0) -> None:
        self.channel = channel
        self.recorder = recorder
        self.timeout = timeout
        self._calls: dict[str, Any] = {}

    def _callable(self, rpc: Rpc) -> Any:
        if rpc.path not in self._calls:
            factory = {"unary": self.channel.unary_unary, "server_stream": self.channel.unary_stream,
                       "bidi": self.channel.stream_stream}[rpc.kind]
            self._calls[rpc.path] = factory(rpc.path, request_serializer=None, response_deserializer=None)
        return self._calls[rpc.path]

    def send(self, rpc: Rpc, payload: Any) -> tuple[str, str, list[bytes]]:
        """(code name, details, raw answers)."""
        call = self._callable(rpc)
        try:
            if rpc.kind == "unary":
                answers = [call(payload, timeout=self.timeout)]
            elif rpc.kind == "server_stream":
                answers = list(call(payload, timeout=self.timeout))
            else:
                answers = list(call(iter(payload), timeout=self.timeout))
        except grpc.RpcError as err:
            details = err.details() or ""
            self.recorder.scan("gRPC error details", details)
            return err.code().name, details, []
        return "OK", "", answers

    def judge(self, rpc: Rpc, code: str, details: str, answers: list[bytes]) -> tuple[str, str | None]:
        """The outcome label, and what is wrong with it (None: a clear answer)."""
        if code != "OK":
            if code in NOT_CLEAR:
                return code, f"{code}: {details[:200]}"
            if TRACEBACK.search(details):
                return code, f"traceback in details: {details[:200]}"
            if not details.strip():
                return code, f"{code} without a message"
            return code, None
        for resource in _resources(rpc, answers):
            self.recorder.scan_resource(resource)
            label = f"OK: {PHASE_NAMES.get(resource.phase, str(resource.phase))}"
            if resource.phase == 0:
                return label, "phase UNDEFINED (Propeller reads it as a retryable failure)"
            if resource.phase in (5, 8) and not resource.message.strip():
                return label, "FAILED without a message"
            if TRACEBACK.search(resource.message):
                return label, f"traceback in message: {resource.message[:200]}"
            return label, None
        if rpc.method == "CreateTask":
            for raw in answers:
                self.recorder.scan("resource_meta", rpc.response.FromString(raw).resource_meta)
        return "OK", None


def fuzz_rpc(sender: Sender, rpc: Rpc, strategy: st.SearchStrategy[tuple[str, Any]], examples: int,
             check: Callable[[int], None] | None = None, check_every: int = 500, fanout: int = 8,
             workers: int = 4, time_limit: float = 3600.0) -> Tally:
    """Send ``examples`` requests to one RPC: each hypothesis example is sent with ``fanout - 1`` cheap variants
    (field-wise and byte-wise mutations), ``workers`` at a time. Hypothesis re-runs until the count is met."""
    tally = Tally(rpc.name)
    lock = threading.Lock()
    start = time.monotonic()
    pool = ThreadPoolExecutor(workers)
    pending: list[Future[None]] = []

    def send_one(category: str, payload: Any) -> None:
        ok_bytes = decodes(rpc, payload)
        code, details, answers = sender.send(rpc, payload)
        label, problem = sender.judge(rpc, code, details, answers)
        with lock:
            tally.sent += 1
            if ok_bytes:
                tally.codes[label] += 1
                tally.categories[category.split(" / ")[0]] += 1
                if problem:
                    tally.problems.append(f"{category}: {problem}")
            else:
                tally.undecodable[label] += 1
                if problem:
                    tally.undecodable_problems.append(f"{category}: {problem}")
            due = check is not None and tally.sent % check_every == 0
        if due and check is not None:
            check(tally.sent)

    def one(case: tuple[str, Any], seed: int) -> None:
        queued = len(pending) + 0
        if queued >= examples:
            return
        batch = [case, *variants(rpc, case[1], seed, min(fanout - 1, examples - queued - 1))]
        for category, payload in batch:
            pending.append(pool.submit(send_one, category, payload))
        while sum(1 for f in pending[-4 * workers * fanout:] if not f.done()) > 2 * workers * fanout:
            time.sleep(0.001)

    rounds = 0
    try:
        while len(pending) < examples and time.monotonic() - start < time_limit and rounds < 50:
            rounds += 1
            run = settings(max_examples=max(1, (examples - len(pending)) // fanout + 1), deadline=None,
                           database=None, phases=[HPhase.generate], suppress_health_check=list(HealthCheck),
                           print_blob=False)(given(strategy, st.integers(0, 2**32))(one))
            run()
        for future in pending:
            future.result()
    finally:
        pool.shutdown(wait=True)
    tally.seconds = time.monotonic() - start
    return tally


def oversized(rpc: Rpc, size: int) -> Any:
    """A well-formed request over the message size limit (a huge field)."""
    if rpc.method in ("GetTask", "DeleteTask", "GetTaskMetrics", "GetTaskLogs"):
        raw = rpc.request(resource_meta=b"{" + b"x" * size).SerializeToString()
    elif rpc.method == "CreateTask":
        raw = rpc.request(output_prefix="s3://" + "x" * size).SerializeToString()
    elif rpc.method == "ExecuteTaskSync":
        return [agent_pb2.ExecuteTaskSyncRequest(header=agent_pb2.CreateRequestHeader(
            output_prefix="s3://" + "x" * size)).SerializeToString()]
    elif rpc.method in ("GetAgent", "GetConnector"):
        raw = rpc.request(name="x" * size).SerializeToString()
    else:
        raw = b"\x0a" + _varint(size) + b"x" * size  # an unknown length-delimited field 1
    return raw


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def literal_type_names() -> list[str]:
    return [types_pb2.SimpleType.Name(v) for v in types_pb2.SimpleType.values()]
