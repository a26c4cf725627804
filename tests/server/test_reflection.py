"""Reflection for tools: open without a key by default, v1 and v1alpha, and the google.rpc
files a tool needs to print error details decoded; `require_api_key` closes it again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from testkit.auth import channel
from testkit.grpc_errors import details_of
from testkit.running import Running, settings_for
from vaultd.api.reflection import V1_SERVICE_NAME
from vaultd.server import SERVICE_NAMES, start
from vaultd.settings import ReflectionSettings

V1_METHOD = f"/{V1_SERVICE_NAME}/ServerReflectionInfo"


async def ask(
    chan: grpc.aio.Channel, request: reflection_pb2.ServerReflectionRequest, v1: bool = False
) -> reflection_pb2.ServerReflectionResponse:
    """One reflection request and its one answer, over v1alpha or v1 (same messages)."""
    if v1:
        call = chan.stream_stream(
            V1_METHOD,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )(iter([request]))
    else:
        call = reflection_pb2_grpc.ServerReflectionStub(chan).ServerReflectionInfo(iter([request]))
    answers = [answer async for answer in call]
    assert len(answers) == 1
    return answers[0]


def file_names(answer: reflection_pb2.ServerReflectionResponse) -> set[str]:
    protos = answer.file_descriptor_response.file_descriptor_proto
    return {descriptor_pb2.FileDescriptorProto.FromString(raw).name for raw in protos}


@pytest.fixture
async def anonymous(running: Running) -> AsyncIterator[grpc.aio.Channel]:
    async with channel(running.target, None) as chan:
        yield chan


@pytest.mark.parametrize("v1", [False, True], ids=["v1alpha", "v1"])
async def test_lists_services_without_a_key(anonymous: grpc.aio.Channel, v1: bool) -> None:
    answer = await ask(anonymous, reflection_pb2.ServerReflectionRequest(list_services=""), v1)
    listed = {service.name for service in answer.list_services_response.service}
    assert set(SERVICE_NAMES) <= listed
    assert {V1_SERVICE_NAME, "grpc.reflection.v1alpha.ServerReflection"} <= listed
    assert "grpc.health.v1.Health" in listed


@pytest.mark.parametrize(
    ("symbol", "file"),
    [
        ("vaultd.v1.ObjectService", "vaultd/v1/object_service.proto"),
        ("google.rpc.ErrorInfo", "google/rpc/error_details.proto"),
        ("google.rpc.BadRequest", "google/rpc/error_details.proto"),
        ("google.rpc.Status", "google/rpc/status.proto"),
        (V1_SERVICE_NAME, "grpc/reflection/v1/reflection.proto"),
    ],
)
async def test_serves_the_files_tools_decode_with(
    anonymous: grpc.aio.Channel, symbol: str, file: str
) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    answer = await ask(anonymous, request, v1=True)
    assert file in file_names(answer), answer


async def test_v1_file_names_v1_messages(anonymous: grpc.aio.Channel) -> None:
    request = reflection_pb2.ServerReflectionRequest(
        file_by_filename="grpc/reflection/v1/reflection.proto"
    )
    answer = await ask(anonymous, request)
    [raw] = answer.file_descriptor_response.file_descriptor_proto
    proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
    method = proto.service[0].method[0]
    assert proto.package == "grpc.reflection.v1"
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"


async def test_require_api_key_closes_reflection(running: Running) -> None:
    settings = settings_for(
        running.data_dir, running.redis_url, reflection=ReflectionSettings(require_api_key=True)
    )
    closed = await start(settings)
    target = f"127.0.0.1:{closed.port}"
    try:
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async with channel(target, None) as anonymous:
            for v1 in (False, True):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await ask(anonymous, request, v1)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert details_of(caught.value).reason == "API_KEY_MISSING"
        async with channel(target, running.api_key) as keyed:
            answer = await ask(keyed, request, v1=True)
        assert "vaultd.v1.AdminService" in {s.name for s in answer.list_services_response.service}
    finally:
        await closed.stop(None)
