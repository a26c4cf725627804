"""Class 3 attacks: ambiguous encodings of context items and names (docs/SECURITY.md section 3).

Before: a KEK id's input joined environment, key and value with NUL, and keys and values could
hold NUL, so {"a": "b\\0c"} and {"a\\0b": "c"} were one KEK; names and items could hold
newlines, ESC, bidi overrides and zero-width characters (one thing shown, another stored), two
spellings of "é" were two items; ShredKek split "key=value" at the first "=", so an item whose
key holds "=" could not be named (and named another item instead), an item whose value ends in
"*" could not be shredded at all, and shredding an item that has no KEK reported success.
"""

from __future__ import annotations

import uuid

import grpc
import pytest

from testkit.crypto import all_keks, refused
from testkit.running import Running
from vaultd.core.keyring import kek_id_for
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc
from vaultd.v1 import object_service_pb2 as opb

ENV = "default"
BAD_CHARACTERS = {
    "NUL": "\x00",
    "newline": "\n",
    "ESC": "\x1b",
    "DEL": "\x7f",
    "C1 CSI": "\x9b",
    "right-to-left override": "\u202e",
    "left-to-right isolate": "\u2066",
    "right-to-left mark": "\u200f",
    "zero-width space": "\u200b",
    "zero-width joiner": "\u200d",
    "word joiner": "\u2060",
    "byte order mark": "\ufeff",
}
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _unique() -> str:
    return uuid.uuid4().hex[:12]


async def _kek_items(running: Running) -> set[tuple[str, str, bool]]:
    admin = apb_grpc.AdminServiceStub(running.channel)
    keks = await all_keks(admin)
    return {(k.item_key, k.item_value, k.HasField("shredded_at")) for k in keks}


async def _count_objects(running: Running, prefix: str) -> int:
    listed = await running.objects.ListObjects(
        opb.ListObjectsRequest(name_prefix=prefix, limit=100)
    )
    return len(listed.objects)


@pytest.mark.parametrize("what", sorted(BAD_CHARACTERS))
async def test_invisible_and_control_characters_are_refused(running: Running, what: str) -> None:
    bad = BAD_CHARACTERS[what]
    keys = kpb_grpc.KeyServiceStub(running.channel)
    tag = _unique()
    keks_before = await _kek_items(running)
    contexts = [
        {f"org{bad}": f"o_{tag}"},
        {"org": f"o_{tag}{bad}"},
        {"org": f"{bad}o_{tag}"},
        {"org": f"o_{tag}", f"ke{bad}y": "v"},
    ]
    for context in contexts:
        for call, request in (
            (keys.CreateDataKey, kpb.CreateDataKeyRequest(key_context=context)),
            (keys.Encrypt, kpb.EncryptRequest(plaintext=b"x", key_context=context)),
            (
                running.objects.CreateObject,
                opb.CreateObjectRequest(name=f"enc-{tag}", value=b"x", key_context=context),
            ),
        ):
            assert await refused(call, request) == (INVALID, "INVALID_KEY_CONTEXT")
    ok_context = {"org": f"o_{tag}"}
    for name in (f"enc-{tag}{bad}", f"enc-{tag}-{bad}x", f"{bad}enc-{tag}"):
        assert await refused(
            running.objects.CreateObject,
            opb.CreateObjectRequest(name=name, value=b"x", key_context=ok_context),
        ) == (INVALID, "INVALID_NAME")
        assert await refused(
            running.objects.GetObjectByName, opb.GetObjectByNameRequest(name=name)
        ) == (INVALID, "INVALID_NAME")
    # Nothing was stored: no object, no KEK.
    assert await _count_objects(running, f"enc-{tag}") == 0
    assert await _kek_items(running) == keks_before


async def test_items_that_shared_a_kek_id_input_are_refused(running: Running) -> None:
    keys = kpb_grpc.KeyServiceStub(running.channel)
    tag = _unique()
    # The old input, "vaultd/kek-id/v1\\0env\\0key\\0value", is the same for these two items:
    first, second = {"a": f"b{tag}\x00c"}, {f"a\x00b{tag}": "c"}
    assert kek_id_for(ENV, *next(iter(first.items()))) == kek_id_for(
        ENV, *next(iter(second.items()))
    )
    for context in (first, second):
        assert await refused(keys.CreateDataKey, kpb.CreateDataKeyRequest(key_context=context)) == (
            INVALID,
            "INVALID_KEY_CONTEXT",
        )


async def test_two_spellings_are_one_item_and_one_name(running: Running) -> None:
    keys = kpb_grpc.KeyServiceStub(running.channel)
    tag = _unique()
    composed, decomposed = f"caf\u00e9-{tag}", f"cafe\u0301-{tag}"
    a = await keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context={"org": composed}))
    b = await keys.CreateDataKey(kpb.CreateDataKeyRequest(key_context={"org": decomposed}))
    assert list(a.key_ids) == list(b.key_ids)  # one KEK
    assert dict(b.key_context) == {"org": composed}

    made = await running.objects.CreateObject(
        opb.CreateObjectRequest(name=decomposed, value=b"one", key_context={"org": decomposed})
    )
    assert made.metadata.name == composed
    assert dict(made.metadata.key_context) == {"org": composed}
    for name in (composed, decomposed):
        got = await running.objects.GetObjectByName(opb.GetObjectByNameRequest(name=name))
        assert got.object.value == b"one"
    # No look-alike twin under the other spelling.
    assert await refused(
        running.objects.CreateObject,
        opb.CreateObjectRequest(name=composed, value=b"two", key_context={"org": composed}),
    ) == (grpc.StatusCode.ALREADY_EXISTS, "NAME_TAKEN")


async def test_shred_names_key_and_value_separately(running: Running) -> None:
    keys = kpb_grpc.KeyServiceStub(running.channel)
    admin = apb_grpc.AdminServiceStub(running.channel)
    tag = _unique()
    # Two different items whose "key=value" text is the same string.
    eq_key = {f"a={tag}": "c"}
    eq_value = {"a": f"{tag}=c"}
    # An item whose value ends in "*", and one that "*" as a pattern would match.
    star = {"org": f"acme{tag}*"}
    starred = {"org": f"acme{tag}*x"}
    made = {}
    for context in (eq_key, eq_value, star, starred):
        made[tuple(context.items())] = await keys.CreateDataKey(
            kpb.CreateDataKeyRequest(key_context=context)
        )

    async def alive(context: dict[str, str]) -> bool:
        blob = made[tuple(context.items())].encrypted_keys
        try:
            await keys.DecryptDataKey(kpb.DecryptDataKeyRequest(encrypted_keys=blob))
            return True
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
            return False

    # The value ending in "*" cannot be named as "key=value": it reads as a pattern.
    assert await refused(
        admin.ShredKek, apb.ShredKekRequest(item=f"org=acme{tag}*", confirm=True)
    ) == (INVALID, "INVALID_ARGUMENT")

    # Named as key and value, each item is shredded exactly, and nothing else.
    ((key, value),) = eq_key.items()
    shredded = await admin.ShredKek(
        apb.ShredKekRequest(item_key=key, item_value=value, confirm=True)
    )
    assert (shredded.kek.item_key, shredded.kek.item_value) == (key, value)
    assert not await alive(eq_key) and await alive(eq_value)
    ((key, value),) = star.items()
    await admin.ShredKek(apb.ShredKekRequest(item_key=key, item_value=value, confirm=True))
    assert not await alive(star) and await alive(starred) and await alive(eq_value)

    # Naming both ways at once is refused.
    assert await refused(
        admin.ShredKek,
        apb.ShredKekRequest(item="a=b", item_key="a", item_value="b", confirm=True),
    ) == (INVALID, "INVALID_ARGUMENT")


async def test_shredding_an_item_without_a_kek_is_an_error(running: Running) -> None:
    admin = apb_grpc.AdminServiceStub(running.channel)
    tag = _unique()
    before = await _kek_items(running)
    for request in (
        apb.ShredKekRequest(item=f"organization_id=org_none_{tag}", confirm=True),
        apb.ShredKekRequest(item_key="organization_id", item_value=f"org_none_{tag}", confirm=True),
    ):
        assert await refused(admin.ShredKek, request) == (
            grpc.StatusCode.NOT_FOUND,
            "KEK_NOT_FOUND",
        )
    # No tombstone was written: nothing changed.
    assert await _kek_items(running) == before
