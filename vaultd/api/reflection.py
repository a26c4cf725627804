"""gRPC server reflection for tools (grpcurl, `buf curl`, Postman): the schema, open by default.

The schema is public (it is protos/ in this repository), so by default reflection needs no API
key: `buf curl` sends no `-H` header on its reflection requests, and a tool refused at
reflection reports "service not found" instead of the real problem, a missing or bad key. With
`reflection: {require_api_key: true}` reflection goes through Authentication like any call
(and leaves an audit event).

Both reflection versions are served: `grpc.reflection.v1` (what current grpcurl and buf ask
first) and `grpc.reflection.v1alpha` (older tools). Their messages are the same on the wire, so
one servicer answers both. Reflection also serves `google/rpc/status.proto` and
`google/rpc/error_details.proto`, so a tool that receives a `grpc-status-details-bin` trailer
can resolve `type.googleapis.com/google.rpc.ErrorInfo` and print the details decoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.rpc import error_details_pb2, status_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from vaultd.api.wrapping import WrappingRegistrar

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
# Files served for decoding error details; imported above, so the default pool holds them.
ERROR_FILES = (status_pb2.DESCRIPTOR.name, error_details_pb2.DESCRIPTOR.name)


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """grpc.reflection.v1's file in the pool (grpcio-reflection ships only v1alpha's), so a
    tool that asks reflection about the v1 service gets an answer. Same messages, new package."""
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = V1_FILE
    proto.package = "grpc.reflection.v1"
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old) :]
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old) :]
            method.output_type = new + method.output_type[len(old) :]
    pool.Add(proto)


def _v1_handler(servicer: reflection.aio.ReflectionServicer) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )


def add_reflection(registrar: WrappingRegistrar, service_names: Sequence[str]) -> tuple[str, ...]:
    """Serve reflection (v1 and v1alpha) for `service_names` through `registrar`, whose wrappers
    decide whether a key is needed; returns every service name reflection lists."""
    pool = descriptor_pool.Default()
    _add_v1_descriptor(pool)
    names = (*service_names, V1_SERVICE_NAME, reflection.SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names, pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, registrar)
    registrar.add_generic_rpc_handlers((_v1_handler(servicer),))
    return names
