"""Flyte literals <-> Python values, typed by the task interface.

flyteidl's ``core`` messages (Literal, LiteralType) are the value model of the core: both wires carry them
(flyteidl2's are wire-compatible and transcoded at the edge). Files, directories and structured datasets are
handed to connectors as URIs. Anything past that (dataclasses, pickles) goes through flytekit's TypeEngine,
imported only when such a value shows up, so the host starts without flytekit.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from typing import Any

from flyteidl.core import interface_pb2, literals_pb2, types_pb2
from google.protobuf import json_format, struct_pb2

from flyteconnectors.core.errors import InvalidTaskConfig

Literal = literals_pb2.Literal
LiteralType = types_pb2.LiteralType
S = types_pb2.SimpleType


class LiteralConversionError(InvalidTaskConfig):
    pass


# ---------------------------------------------------------------------------------------------- to Python
def to_python(literal: literals_pb2.Literal, name: str = "value") -> Any:
    which = literal.WhichOneof("value")
    if which == "collection":
        return [to_python(v, f"{name}[{i}]") for i, v in enumerate(literal.collection.literals)]
    if which == "map":
        return {k: to_python(v, f"{name}.{k}") for k, v in literal.map.literals.items()}
    if which != "scalar":
        raise LiteralConversionError(f"inputs.{name}", f"literal kind {which!r} is not supported")
    scalar = literal.scalar
    kind = scalar.WhichOneof("value")
    if kind == "primitive":
        p = scalar.primitive
        pk = p.WhichOneof("value")
        if pk == "integer":
            return p.integer
        if pk == "float_value":
            return p.float_value
        if pk == "string_value":
            return p.string_value
        if pk == "boolean":
            return p.boolean
        if pk == "datetime":
            return p.datetime.ToDatetime(tzinfo=dt.timezone.utc)
        if pk == "duration":
            return p.duration.ToTimedelta()
        raise LiteralConversionError(f"inputs.{name}", "empty primitive")
    if kind == "none_type":
        return None
    if kind == "blob":
        return scalar.blob.uri
    if kind == "structured_dataset":
        return scalar.structured_dataset.uri
    if kind == "schema":
        return scalar.schema.uri
    if kind == "generic":
        return json_format.MessageToDict(scalar.generic)
    if kind == "union":
        return to_python(scalar.union.value, name)
    if kind == "binary":
        return _binary_to_python(scalar.binary, name)
    raise LiteralConversionError(f"inputs.{name}", f"scalar kind {kind!r} is not supported")


def _binary_to_python(binary: literals_pb2.Binary, name: str) -> Any:
    if binary.tag == "msgpack":
        try:
            import msgpack  # flytekit brings it for dataclass/pydantic values
        except ImportError:
            raise LiteralConversionError(
                f"inputs.{name}", "a msgpack-encoded value needs flytekit (msgpack) installed in the host"
            ) from None
        return msgpack.unpackb(binary.value)
    return binary.value


def inputs_to_python(inputs: Mapping[str, literals_pb2.Literal]) -> dict[str, Any]:
    return {name: to_python(lit, name) for name, lit in inputs.items()}


# ---------------------------------------------------------------------------------------------- to literals
def to_literal(value: Any, ltype: types_pb2.LiteralType | None = None, name: str = "value") -> literals_pb2.Literal:
    """Convert ``value`` to a Literal of ``ltype`` (guessing the type from the value when it is None)."""
    if ltype is None or ltype.WhichOneof("type") is None:
        return _guess(value, name)
    kind = ltype.WhichOneof("type")
    if kind == "union_type":
        if value is None:
            return Literal(scalar=literals_pb2.Scalar(none_type=literals_pb2.Void()))
        errors = []
        for variant in ltype.union_type.variants:
            try:
                inner = to_literal(value, variant, name)
            except (LiteralConversionError, TypeError, ValueError) as err:
                errors.append(str(err))
                continue
            return Literal(scalar=literals_pb2.Scalar(union=literals_pb2.Union(value=inner, type=variant)))
        raise LiteralConversionError(f"outputs.{name}", f"no union variant accepts {type(value).__name__}")
    if kind == "collection_type":
        if not isinstance(value, (list, tuple)):
            raise LiteralConversionError(f"outputs.{name}", f"expected a list, got {type(value).__name__}")
        return Literal(
            collection=literals_pb2.LiteralCollection(
                literals=[to_literal(v, ltype.collection_type, f"{name}[{i}]") for i, v in enumerate(value)]
            )
        )
    if kind == "map_value_type":
        if not isinstance(value, Mapping):
            raise LiteralConversionError(f"outputs.{name}", f"expected a dict, got {type(value).__name__}")
        return Literal(
            map=literals_pb2.LiteralMap(
                literals={str(k): to_literal(v, ltype.map_value_type, f"{name}.{k}") for k, v in value.items()}
            )
        )
    if kind == "blob":
        return Literal(
            scalar=literals_pb2.Scalar(
                blob=literals_pb2.Blob(metadata=literals_pb2.BlobMetadata(type=ltype.blob), uri=_uri(value, name))
            )
        )
    if kind == "structured_dataset_type":
        return Literal(
            scalar=literals_pb2.Scalar(
                structured_dataset=literals_pb2.StructuredDataset(
                    uri=_uri(value, name),
                    metadata=literals_pb2.StructuredDatasetMetadata(structured_dataset_type=ltype.structured_dataset_type),
                )
            )
        )
    if kind == "schema":
        return Literal(scalar=literals_pb2.Scalar(schema=literals_pb2.Schema(uri=_uri(value, name), type=ltype.schema)))
    if kind == "enum_type":
        text = str(getattr(value, "value", value))
        if ltype.enum_type.values and text not in ltype.enum_type.values:
            raise LiteralConversionError(f"outputs.{name}", f"{text!r} is not one of {list(ltype.enum_type.values)}")
        return _primitive(string_value=text)
    if kind == "simple":
        return _simple(value, ltype.simple, name)
    return _via_type_engine(value, ltype, name)


def _uri(value: Any, name: str) -> str:
    for attr in ("uri", "remote_source", "path"):
        candidate = getattr(value, attr, None)
        if isinstance(candidate, str) and candidate:
            return candidate
    if isinstance(value, str):
        return value
    raise LiteralConversionError(f"outputs.{name}", f"expected a URI string, got {type(value).__name__}")


def _primitive(**kw: Any) -> literals_pb2.Literal:
    return Literal(scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(**kw)))


def _simple(value: Any, simple: int, name: str) -> literals_pb2.Literal:
    try:
        if simple == S.NONE:
            return Literal(scalar=literals_pb2.Scalar(none_type=literals_pb2.Void()))
        if simple == S.INTEGER:
            if isinstance(value, bool) or (not isinstance(value, (int, str)) and not hasattr(value, "__index__")):
                raise TypeError
            return _primitive(integer=int(value))
        if simple == S.FLOAT:
            if isinstance(value, bool):
                raise TypeError
            return _primitive(float_value=float(value))
        if simple == S.STRING:
            if isinstance(value, (dict, list)):
                raise TypeError
            return _primitive(string_value=str(value))
        if simple == S.BOOLEAN:
            if not isinstance(value, bool):
                raise TypeError
            return _primitive(boolean=value)
        if simple == S.DATETIME:
            if isinstance(value, str):
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if not isinstance(value, dt.datetime):
                raise TypeError
            lit = _primitive()
            lit.scalar.primitive.datetime.FromDatetime(value.astimezone(dt.timezone.utc).replace(tzinfo=None)
                                                       if value.tzinfo else value)
            return lit
        if simple == S.DURATION:
            if isinstance(value, (int, float)):
                value = dt.timedelta(seconds=value)
            if not isinstance(value, dt.timedelta):
                raise TypeError
            lit = _primitive()
            lit.scalar.primitive.duration.FromTimedelta(value)
            return lit
        if simple == S.STRUCT:
            if not isinstance(value, Mapping):
                raise TypeError
            return Literal(scalar=literals_pb2.Scalar(generic=to_struct(value)))
        if simple == S.BINARY:
            if isinstance(value, str):
                value = base64.b64decode(value)
            if not isinstance(value, (bytes, bytearray)):
                raise TypeError
            return Literal(scalar=literals_pb2.Scalar(binary=literals_pb2.Binary(value=bytes(value))))
    except (TypeError, ValueError, OverflowError):
        raise LiteralConversionError(
            f"outputs.{name}", f"cannot convert {type(value).__name__} to {_simple_name(simple)}"
        ) from None
    raise LiteralConversionError(f"outputs.{name}", f"simple type {_simple_name(simple)} is not supported")


def _simple_name(simple: int) -> str:
    return S.Name(simple) if simple in S.values() else f"unknown simple type {simple}"


def to_struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    """A protobuf Struct (TaskTemplate.custom, Resource.custom_info, generic literals) from a JSON-like mapping."""
    struct = struct_pb2.Struct()
    struct.update(_jsonable(value))
    return struct


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _guess(value: Any, name: str) -> literals_pb2.Literal:
    if value is None:
        return _simple(None, S.NONE, name)
    if isinstance(value, bool):
        return _simple(value, S.BOOLEAN, name)
    if isinstance(value, int):
        return _simple(value, S.INTEGER, name)
    if isinstance(value, float):
        return _simple(value, S.FLOAT, name)
    if isinstance(value, str):
        return _simple(value, S.STRING, name)
    if isinstance(value, dt.datetime):
        return _simple(value, S.DATETIME, name)
    if isinstance(value, dt.timedelta):
        return _simple(value, S.DURATION, name)
    if isinstance(value, (bytes, bytearray)):
        return _simple(value, S.BINARY, name)
    if isinstance(value, Mapping):
        return _simple(value, S.STRUCT, name)
    if isinstance(value, (list, tuple)):
        return Literal(
            collection=literals_pb2.LiteralCollection(literals=[_guess(v, f"{name}[{i}]") for i, v in enumerate(value)])
        )
    raise LiteralConversionError(f"outputs.{name}", f"cannot guess a Flyte type for {type(value).__name__}")


def _via_type_engine(value: Any, ltype: types_pb2.LiteralType, name: str) -> literals_pb2.Literal:
    try:
        from flytekit import FlyteContextManager
        from flytekit.core.type_engine import TypeEngine
        from flytekit.models.types import LiteralType as LT
    except ImportError:
        raise LiteralConversionError(
            f"outputs.{name}", f"type {ltype.WhichOneof('type')} needs flytekit installed in the host"
        ) from None
    lt = LT.from_flyte_idl(ltype)
    ctx = FlyteContextManager.current_context()
    lit = TypeEngine.to_literal(ctx, value, type(value), lt)
    return lit.to_flyte_idl()  # type: ignore[no-any-return]


def outputs_to_literals(
    values: Mapping[str, Any], types: Mapping[str, types_pb2.LiteralType] | None
) -> dict[str, literals_pb2.Literal]:
    """Convert a connector's output values with the interface's types.

    Outputs the interface declares but the connector did not return are an error naming them; values the
    interface does not declare are dropped (Propeller validates outputs against the interface).
    """
    if types is not None:
        missing = [n for n in types if n not in values]
        if missing:
            raise LiteralConversionError(f"outputs.{missing[0]}", f"the job returned no value for {', '.join(missing)}")
        return {n: to_literal(values[n], t, n) for n, t in types.items()}
    return {n: to_literal(v, None, n) for n, v in values.items()}


# ---------------------------------------------------------------------------------------------- interfaces
def variable_types(variables: interface_pb2.VariableMap) -> dict[str, types_pb2.LiteralType]:
    if not len(variables.variables):  # most interfaces of a side are empty; skip the map iteration
        return {}
    return {name: var.type for name, var in variables.variables.items()}


def pack_types(types: Mapping[str, types_pb2.LiteralType], limit: int = 2048) -> str | None:
    """Types as compact base64 protobuf for the resource_meta envelope, or None when too large."""
    if not types:
        return ""  # declares no outputs (None means: unknown, too large to keep)
    vm = interface_pb2.VariableMap(variables={n: interface_pb2.Variable(type=t) for n, t in types.items()})
    for var in vm.variables.values():
        var.type.ClearField("metadata")
        var.type.ClearField("annotation")
        var.type.ClearField("structure")
    packed = base64.b64encode(vm.SerializeToString()).decode()
    return packed if len(packed) <= limit else None


def unpack_types(packed: str | None) -> dict[str, types_pb2.LiteralType] | None:
    if packed is None:
        return None
    if not packed:
        return {}
    vm = interface_pb2.VariableMap()
    vm.ParseFromString(base64.b64decode(packed, validate=True))
    types = variable_types(vm)
    for name, ltype in types.items():
        _check_known(ltype, name)
    return types


def _check_known(ltype: types_pb2.LiteralType, name: str) -> None:
    """Refuse types this build of flyteidl cannot name (an altered or foreign interface)."""
    kind = ltype.WhichOneof("type")
    if kind == "simple" and ltype.simple not in S.values():
        raise ValueError(f"output {name!r} has an unknown simple type {ltype.simple}")
    if kind == "collection_type":
        _check_known(ltype.collection_type, name)
    if kind == "map_value_type":
        _check_known(ltype.map_value_type, name)
    if kind == "union_type":
        for variant in ltype.union_type.variants:
            _check_known(variant, name)
