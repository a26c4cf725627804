"""What every target is asked to do: the RPCs, their request bodies, and the data they need.

One workload for every generator and every target, so numbers compare: values and plaintexts
of `payload_bytes` random bytes, key contexts `{"organization_id": "org_bench_<k>"}` over a
small set of orgs (one context per org, so a warm KEK cache holds them all), and objects,
ciphertexts and encrypted data keys made once per server before any load runs.

Requests are serialized once here and sent as raw bytes: the load generators then spend no
time in protobuf, so they saturate later and measure the server, not themselves.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from vaultd.v1 import key_service_pb2 as keys_pb
from vaultd.v1 import object_service_pb2 as objects_pb

OBJECT_SERVICE = "vaultd.v1.ObjectService"
KEY_SERVICE = "vaultd.v1.KeyService"
PROBES = 3
"""Calls per RPC through gRPC before load: they must succeed and fix the expected answer size."""


@dataclass(frozen=True)
class Rpc:
    name: str
    service: str
    request: type[Any]
    response: type[Any]
    # True when every successful answer has the same size for the same request body; h2load's
    # byte count is then checked exactly, otherwise within RESPONSE_SLACK_BYTES (timestamps).
    fixed_size: bool
    # False when one request body cannot be sent twice (CreateObject: names are unique), which
    # rules out h2load, whose body is fixed for the whole run.
    repeatable: bool = True

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


RPCS: dict[str, Rpc] = {
    rpc.name: rpc
    for rpc in (
        Rpc(
            "CreateObject",
            OBJECT_SERVICE,
            objects_pb.CreateObjectRequest,
            objects_pb.CreateObjectResponse,
            fixed_size=False,
            repeatable=False,
        ),
        Rpc(
            "GetObject",
            OBJECT_SERVICE,
            objects_pb.GetObjectRequest,
            objects_pb.GetObjectResponse,
            True,
        ),
        Rpc(
            "UpdateObject",
            OBJECT_SERVICE,
            objects_pb.UpdateObjectRequest,
            objects_pb.UpdateObjectResponse,
            fixed_size=False,
        ),
        Rpc("Encrypt", KEY_SERVICE, keys_pb.EncryptRequest, keys_pb.EncryptResponse, True),
        Rpc("Decrypt", KEY_SERVICE, keys_pb.DecryptRequest, keys_pb.DecryptResponse, True),
        Rpc(
            "CreateDataKey",
            KEY_SERVICE,
            keys_pb.CreateDataKeyRequest,
            keys_pb.CreateDataKeyResponse,
            True,
        ),
        Rpc(
            "DecryptDataKey",
            KEY_SERVICE,
            keys_pb.DecryptDataKeyRequest,
            keys_pb.DecryptDataKeyResponse,
            True,
        ),
    )
}
# A protobuf Timestamp's nanos is a varint of 1 to 5 bytes; an answer carrying fresh
# timestamps (updated_at) may be that much shorter or longer than the probe's.
RESPONSE_SLACK_BYTES = 8


def grpc_frame(message: bytes) -> bytes:
    """gRPC's length-prefixed message: 1 byte "not compressed", 4 bytes big-endian length."""
    return b"\0" + struct.pack(">I", len(message)) + message


def org_context(org: int) -> dict[str, str]:
    return {"organization_id": f"org_bench_{org}"}


@dataclass
class Workload:
    payload_bytes: int = 256
    orgs: int = 4
    objects_per_org: int = 8
    payload: bytes = field(init=False)
    tag: str = field(init=False)

    def __post_init__(self) -> None:
        self.payload = os.urandom(self.payload_bytes)
        # Names made in this run never collide with names left by an earlier one.
        self.tag = os.urandom(4).hex()

    def context(self, i: int) -> dict[str, str]:
        return org_context(i % self.orgs)

    def create_body(self, i: int, prefix: str = "load") -> bytes:
        request = objects_pb.CreateObjectRequest(
            name=f"bench-{self.tag}-{prefix}-{i}", value=self.payload, key_context=self.context(i)
        )
        body: bytes = request.SerializeToString()
        return body


@dataclass
class Fixture:
    """The data made on one server for one run: what GetObject and the rest read."""

    workload: Workload
    object_ids: list[str]
    ciphertexts: list[bytes]  # one Encrypt result per org
    encrypted_keys: list[bytes]  # one CreateDataKey result per org
    bodies: dict[str, list[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w = self.workload
        orgs = range(w.orgs)
        self.bodies = {
            "GetObject": [_bytes(objects_pb.GetObjectRequest(id=i)) for i in self.object_ids],
            "UpdateObject": [
                _bytes(objects_pb.UpdateObjectRequest(id=i, value=w.payload))
                for i in self.object_ids
            ],
            "Encrypt": [
                _bytes(keys_pb.EncryptRequest(plaintext=w.payload, key_context=org_context(o)))
                for o in orgs
            ],
            "Decrypt": [_bytes(keys_pb.DecryptRequest(ciphertext=c)) for c in self.ciphertexts],
            "CreateDataKey": [
                _bytes(keys_pb.CreateDataKeyRequest(key_context=org_context(o))) for o in orgs
            ],
            "DecryptDataKey": [
                _bytes(keys_pb.DecryptDataKeyRequest(encrypted_keys=k)) for k in self.encrypted_keys
            ],
        }

    def body_maker(self, rpc: str, prefix: str = "load") -> Callable[[int], bytes]:
        """Request i of a run: cycles over the fixture's bodies (a fresh name for creates)."""
        if rpc == "CreateObject":
            return lambda i: self.workload.create_body(i, prefix)
        bodies = self.bodies[rpc]
        return lambda i: bodies[i % len(bodies)]

    def fixed_body(self, rpc: str) -> bytes:
        """The one body h2load repeats: the first object / org."""
        return self.bodies[rpc][0]


def _bytes(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


Metadata = Sequence[tuple[str, str]]


def auth_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


async def make_fixture(
    channel: grpc.aio.Channel, workload: Workload, metadata: Metadata
) -> Fixture:
    """Create the objects, ciphertexts and data keys the read RPCs need, through the API."""
    create = channel.unary_unary(RPCS["CreateObject"].path)
    encrypt = channel.unary_unary(RPCS["Encrypt"].path)
    create_key = channel.unary_unary(RPCS["CreateDataKey"].path)
    object_ids = []
    for i in range(workload.orgs * workload.objects_per_org):
        answer = await create(workload.create_body(i, "fixture"), metadata=metadata, timeout=30)
        object_ids.append(objects_pb.CreateObjectResponse.FromString(answer).metadata.id)
    ciphertexts, encrypted_keys = [], []
    for org in range(workload.orgs):
        plain = keys_pb.EncryptRequest(plaintext=workload.payload, key_context=org_context(org))
        answer = await encrypt(_bytes(plain), metadata=metadata, timeout=30)
        ciphertexts.append(keys_pb.EncryptResponse.FromString(answer).ciphertext)
        new_key = keys_pb.CreateDataKeyRequest(key_context=org_context(org))
        answer = await create_key(_bytes(new_key), metadata=metadata, timeout=30)
        encrypted_keys.append(keys_pb.CreateDataKeyResponse.FromString(answer).encrypted_keys)
    return Fixture(workload, object_ids, ciphertexts, encrypted_keys)


@dataclass(frozen=True)
class Probe:
    """What PROBES real gRPC calls with h2load's fixed body answered: sizes and one answer."""

    rpc: str
    min_bytes: int
    max_bytes: int
    answer: bytes

    def frame_range(self, fixed_size: bool) -> tuple[int, int]:
        """Bounds of one successful answer's DATA bytes on the wire (prefix included)."""
        slack = 0 if fixed_size else RESPONSE_SLACK_BYTES
        return self.min_bytes + 5 - slack, self.max_bytes + 5 + slack


async def probe(
    channel: grpc.aio.Channel, fixture: Fixture, rpc_name: str, metadata: Metadata
) -> Probe:
    """Send h2load's body through gRPC: it must answer OK with a real, checked answer."""
    rpc = RPCS[rpc_name]
    call = channel.unary_unary(rpc.path)
    sizes, answer = [], b""
    # Creates need names never used before, also by an earlier probe of the same server.
    prefix = f"probe-{os.urandom(4).hex()}"
    for i in range(PROBES):
        body = fixture.workload.create_body(i, prefix) if not rpc.repeatable else None
        answer = await call(body or fixture.fixed_body(rpc_name), metadata=metadata, timeout=30)
        _check_answer(rpc_name, rpc.response.FromString(answer), fixture)
        sizes.append(len(answer))
    if rpc.fixed_size and min(sizes) != max(sizes):
        raise RuntimeError(f"{rpc_name}: answers to one body differ in size: {sizes}")
    return Probe(rpc_name, min(sizes), max(sizes), answer)


def _check_answer(rpc: str, answer: Any, fixture: Fixture) -> None:
    """The answer is the real thing, not an empty message that happens to parse."""
    payload = fixture.workload.payload
    if rpc == "CreateObject":
        ok = answer.metadata.id.startswith("secret_")
    elif rpc == "GetObject":
        ok = answer.object.value == payload
    elif rpc == "UpdateObject":
        ok = answer.metadata.id == fixture.object_ids[0]
    elif rpc == "Encrypt":
        ok = len(answer.ciphertext) > len(payload)
    elif rpc == "Decrypt":
        ok = answer.plaintext == payload
    elif rpc == "CreateDataKey":
        ok = len(answer.data_key) == 32 and bool(answer.encrypted_keys)
    else:
        ok = len(answer.data_key) == 32
    if not ok:
        raise RuntimeError(f"{rpc}: the probe's answer is not a real answer")


def canned_answers(probes: Mapping[str, Probe]) -> dict[str, bytes]:
    """Method path -> answer bytes, for the transport floor to send back (same sizes)."""
    return {RPCS[name].path: p.answer for name, p in probes.items()}
