"""Registering servicers so that a request that is not valid protobuf gets INVALID_ARGUMENT.

The generated ``add_*_to_server`` functions let grpc's deserializer fail on bad bytes, which answers UNKNOWN
(or INTERNAL with a logged traceback on streams). Here each method's deserializer turns a decode error into a
marker that the handler refuses with INVALID_ARGUMENT before the servicer sees it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError

from flyteconnectors.core.errors import InvalidTaskConfig


class _Undecodable:
    def __init__(self, type_name: str, error: Exception) -> None:
        self.message = f"the request is not a valid {type_name} message: {error}"


def _deserializer(message_class: Any) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as err:
            return _Undecodable(message_class.DESCRIPTOR.full_name, err)

    return decode


async def _checked_stream(requests: Any) -> AsyncIterator[Any]:
    # grpc.aio's request stream only offers __anext__ (no __aiter__).
    while True:
        try:
            request = await requests.__anext__()
        except StopAsyncIteration:
            return
        if isinstance(request, _Undecodable):
            # The servicer maps this to INVALID_ARGUMENT like any other input error.
            raise InvalidTaskConfig("request", request.message)
        yield request


def _handler(method: Any, fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    decode, encode = _deserializer(request_class), response_class.SerializeToString

    if method.client_streaming and method.server_streaming:
        # grpc.aio tells handler kinds apart by inspection: this must itself be an async generator.
        async def stream_stream(requests: Any, context: Any) -> Any:
            async for response in fn(_checked_stream(requests), context):
                yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, request_deserializer=decode,
                                                     response_serializer=encode)
    if method.client_streaming:
        async def stream_unary(requests: Any, context: Any) -> Any:
            return await fn(_checked_stream(requests), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, request_deserializer=decode,
                                                    response_serializer=encode)
    if method.server_streaming:
        async def unary_stream(request: Any, context: Any) -> Any:
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            async for response in fn(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, request_deserializer=decode,
                                                    response_serializer=encode)

    async def unary_unary(request: Any, context: Any) -> Any:
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return await fn(request, context)

    return grpc.unary_unary_rpc_method_handler(unary_unary, request_deserializer=decode, response_serializer=encode)


def add_servicer(server: grpc.aio.Server, service: ServiceDescriptor, servicer: Any) -> None:
    handlers = {method.name: _handler(method, getattr(servicer, method.name)) for method in service.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    # Registered methods are matched in grpc's core, not by a Python generic-handler lookup on every RPC (about
    # 10 % more trivial RPCs per second). Registered takes precedence; the generic handler serves older grpcio.
    register = getattr(server, "add_registered_method_handlers", None)
    if register is not None:
        register(service.full_name, handlers)
