"""A fresh environment with an admin key and context-scoped keys made through CreateApiKey: what
the scoped-key tests (tests/security/test_scoped_keys.py, tests/http) stand on."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from testkit.auth import add_api_key, channel
from testkit.running import Running
from vaultd.core.apikeys import new_secret
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc
from vaultd.v1 import object_service_pb2_grpc as opb_grpc

USER = ("objects:read", "objects:write", "keys:use")


@dataclass
class Client:
    channel: grpc.aio.Channel
    objects: opb_grpc.ObjectServiceStub
    keys: kpb_grpc.KeyServiceStub
    admin: apb_grpc.AdminServiceStub
    secret: str


def client(running: Running, secret: str) -> Client:
    chan = channel(running.target, secret)
    return Client(
        chan,
        opb_grpc.ObjectServiceStub(chan),
        kpb_grpc.KeyServiceStub(chan),
        apb_grpc.AdminServiceStub(chan),
        secret,
    )


async def fresh_admin(running: Running) -> Client:
    """An admin key of an environment no other test uses, so listings hold only ours."""
    secret = new_secret()
    environment = f"scoped-{uuid.uuid4().hex[:12]}"
    await add_api_key(running.vaultd.store, secret, environment, name="scoped-admin")
    return client(running, secret)


async def scoped_key(
    admin: Client, running: Running, constraints: Sequence[str], permissions: Sequence[str] = USER
) -> Client:
    made = await admin.admin.CreateApiKey(
        apb.CreateApiKeyRequest(
            name="tenant key", permissions=permissions, context_constraints=constraints
        )
    )
    assert list(made.metadata.context_constraints) == list(dict.fromkeys(constraints))
    return client(running, made.api_key)
