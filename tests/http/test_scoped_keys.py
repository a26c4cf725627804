"""A context-scoped API key over the WorkOS HTTP adapter is refused exactly as over gRPC: the
adapter runs the same servicers, so the scope check is not a second copy (issue 16.1)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from ulid import ULID

from testkit.http_client import call
from testkit.http_server import HttpVaultd, new_secret
from tests.http.test_error_replies import assert_error
from vaultd.core.apikeys import secret_hash
from vaultd.storage import ApiKeyRecord

ORG = "organization_id"


async def scoped_key(server: HttpVaultd, environment: str, org: str) -> str:
    secret = new_secret()
    record = ApiKeyRecord(
        id=f"key_{ULID()}",
        name="tenant",
        environment_id=environment,
        permissions=("objects:read", "objects:write", "keys:use"),
        secret_hash=secret_hash(secret),
        created_at=datetime.now(UTC),
        context_constraints=((ORG, org),),
    )
    assert await server.vaultd.store.add_api_key(record)
    return secret


async def test_a_scoped_key_over_http_is_refused_another_tenants_data(
    http_server: HttpVaultd,
) -> None:
    environment = f"env_{secrets.token_hex(6)}"
    admin = await http_server.new_key(environment)
    tenant = await scoped_key(http_server, environment, "org_A")
    url = http_server.base_url

    async def as_admin(method: str, path: str, body: object = None) -> dict:
        reply = await call(url, method, path, api_key=admin, body=body)
        assert reply.status in (200, 201), reply.raw
        return dict(reply.json)

    theirs = await as_admin(
        "POST", "/vault/v1/kv", {"name": "b", "value": "B", "key_context": {ORG: "org_B"}}
    )
    oid = theirs["id"]
    for method, path in (
        ("GET", f"/vault/v1/kv/{oid}"),
        ("GET", f"/vault/v1/kv/{oid}/metadata"),
        ("GET", f"/vault/v1/kv/{oid}/versions"),
        ("GET", "/vault/v1/kv/name/b"),
        ("DELETE", f"/vault/v1/kv/{oid}"),
    ):
        reply = await call(url, method, path, api_key=tenant)
        assert_error(reply, 404, "OBJECT_NOT_FOUND")
    reply = await call(url, "PUT", f"/vault/v1/kv/{oid}", api_key=tenant, body={"value": "x"})
    assert_error(reply, 404, "OBJECT_NOT_FOUND")
    listed = await call(url, "GET", "/vault/v1/kv", api_key=tenant)
    assert listed.status == 200 and listed.json["data"] == []
    reply = await call(
        url,
        "POST",
        "/vault/v1/kv",
        api_key=tenant,
        body={"name": "c", "value": "v", "key_context": {ORG: "org_B"}},
    )
    assert_error(reply, 403, "CONTEXT_NOT_PERMITTED")

    body = {"context": {ORG: "org_B"}}
    reply = await call(url, "POST", "/vault/v1/keys/data-key", api_key=tenant, body=body)
    assert_error(reply, 403, "CONTEXT_NOT_PERMITTED")
    their_key = await as_admin("POST", "/vault/v1/keys/data-key", body)
    keys = their_key["encrypted_keys"]
    reply = await call(url, "POST", "/vault/v1/keys/decrypt", api_key=tenant, body={"keys": keys})
    assert_error(reply, 403, "CONTEXT_NOT_PERMITTED")
    lie = {"encrypted_keys": keys, "context": {ORG: "org_A"}}
    reply = await call(url, "POST", "/vault/v1/keys/rekey", api_key=tenant, body=lie)
    assert_error(reply, 403, "CONTEXT_NOT_PERMITTED")

    # Its own tenant works, and the admin still reads B's object.
    mine = await call(
        url, "POST", "/vault/v1/keys/data-key", api_key=tenant, body={"context": {ORG: "org_A"}}
    )
    assert mine.status == 200, mine.raw
    assert (await as_admin("GET", f"/vault/v1/kv/{oid}"))["value"] == "B"
