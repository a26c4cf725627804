"""Objects made over gRPC the way the object tests make them: one call, the metadata back."""

from __future__ import annotations

from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

ORG = {"organization_id": "org_123"}


async def create(
    stub: pb_grpc.ObjectServiceStub, name: str, value: bytes, context: dict[str, str] | None = None
) -> pb.ObjectMetadata:
    response = await stub.CreateObject(
        pb.CreateObjectRequest(name=name, value=value, key_context=context or ORG)
    )
    metadata: pb.ObjectMetadata = response.metadata
    return metadata
