"""Every error of the HTTP API, at the HTTP level: status, `code`, `message`, `errors`, headers.

The body is what the WorkOS SDKs read (`code`, `message`, `errors`); `code` is vaultd's stable
reason, the same the gRPC ErrorInfo carries. Each answer has an X-Request-ID.
"""

from __future__ import annotations

import base64
import uuid
from urllib.parse import quote

import grpc

from testkit.auth import bearer
from testkit.http_client import Reply, call
from testkit.http_server import HttpVaultd
from vaultd.v1 import object_service_pb2 as opb
from vaultd.v1 import object_service_pb2_grpc as opb_grpc

CONTEXT = {"organization_id": "org_errors"}
MISSING_ID = "secret_01J00000000000000000000000"


def assert_error(reply: Reply, status: int, code: str) -> dict:
    assert reply.status == status, (reply.status, reply.raw)
    assert reply.headers["content-type"] == "application/json"
    body = reply.json
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    # `errors` only when there are fields at fault (400 and some 422s): the Node SDK takes
    # a body with `code` and `errors` for a 400 whatever the status.
    assert body.get("errors", None) != []
    assert "error" not in body  # the Node SDK would take it for an OAuth error
    assert reply.headers.get("x-request-id") or (
        status in (404, 405, 413)
        and code
        in (
            "ROUTE_NOT_FOUND",
            "METHOD_NOT_ALLOWED",
            "REQUEST_TOO_LARGE",
        )
    )
    return dict(body)


async def create(server: HttpVaultd, key: str, name: str, value: str = "v") -> dict:
    reply = await call(
        server.base_url,
        "POST",
        "/vault/v1/kv",
        api_key=key,
        body={"name": name, "value": value, "key_context": CONTEXT},
    )
    assert reply.status == 201, reply.raw
    return dict(reply.json)


async def test_401_for_a_missing_malformed_or_unknown_key(http_server: HttpVaultd) -> None:
    url = http_server.base_url
    assert_error(await call(url, "GET", "/vault/v1/kv"), 401, "API_KEY_MISSING")
    reply = await call(url, "GET", "/vault/v1/kv", headers={"Authorization": "Basic abc"})
    assert_error(reply, 401, "API_KEY_MALFORMED")
    reply = await call(url, "GET", "/vault/v1/kv", api_key="sk_" + "y" * 43)
    assert_error(reply, 401, "API_KEY_INVALID")
    # Authentication comes first: an unknown caller's bad body is still a 401, not a 400.
    reply = await call(url, "POST", "/vault/v1/kv", api_key="sk_" + "y" * 43, raw=b"{nope")
    assert_error(reply, 401, "API_KEY_INVALID")


async def test_403_without_the_permission(http_server: HttpVaultd) -> None:
    reader = await http_server.new_key(permissions=["objects:read"])
    reply = await call(
        http_server.base_url,
        "POST",
        "/vault/v1/kv",
        api_key=reader,
        body={"name": "x", "value": "v", "key_context": CONTEXT},
    )
    assert_error(reply, 403, "PERMISSION_DENIED")
    reply = await call(
        http_server.base_url,
        "POST",
        "/vault/v1/keys/data-key",
        api_key=reader,
        body={"context": CONTEXT},
    )
    assert_error(reply, 403, "PERMISSION_DENIED")


async def test_404_for_objects_routes_and_other_environments(http_server: HttpVaultd) -> None:
    key = await http_server.new_key()
    url = http_server.base_url
    for path in (
        f"/vault/v1/kv/{MISSING_ID}",
        f"/vault/v1/kv/{MISSING_ID}/metadata",
        f"/vault/v1/kv/{MISSING_ID}/versions",
        "/vault/v1/kv/name/no%2Fsuch",
    ):
        assert_error(await call(url, "GET", path, api_key=key), 404, "OBJECT_NOT_FOUND")
    # Another environment's object does not exist for this key.
    mine = await create(http_server, key, "mine")
    other = await http_server.new_key()
    reply = await call(url, "GET", f"/vault/v1/kv/{mine['id']}", api_key=other)
    assert_error(reply, 404, "OBJECT_NOT_FOUND")
    assert_error(await call(url, "GET", "/vault/v1/nothing", api_key=key), 404, "ROUTE_NOT_FOUND")
    assert_error(await call(url, "GET", "/elsewhere", api_key=key), 404, "ROUTE_NOT_FOUND")
    reply = await call(url, "PATCH", f"/vault/v1/kv/{mine['id']}", api_key=key, body={})
    assert_error(reply, 405, "METHOD_NOT_ALLOWED")


async def test_409_for_a_taken_name_and_a_stale_version(http_server: HttpVaultd) -> None:
    key = await http_server.new_key()
    url = http_server.base_url
    first = await create(http_server, key, "taken")
    reply = await call(
        url,
        "POST",
        "/vault/v1/kv",
        api_key=key,
        body={"name": "taken", "value": "v", "key_context": CONTEXT},
    )
    assert_error(reply, 409, "NAME_TAKEN")
    path = f"/vault/v1/kv/{first['id']}"
    moved = await call(url, "PUT", path, api_key=key, body={"value": "2"})
    assert moved.status == 200
    current = moved.json["metadata"]["version_id"]
    stale = {"value": "3", "version_check": first["version_id"]}
    body = assert_error(
        await call(url, "PUT", path, api_key=key, body=stale), 409, "VERSION_CONFLICT"
    )
    assert body["metadata"]["current_version_id"] == current
    reply = await call(url, "DELETE", f"{path}?version_check={first['version_id']}", api_key=key)
    assert_error(reply, 409, "VERSION_CONFLICT")
    # Nothing was lost: the value is the one written with the right version.
    assert (await call(url, "GET", path, api_key=key)).json["value"] == "2"
    # Deleted (soft: DeleteObject over the same core), the object is 404 at once, and its name
    # stays reserved while it can be undeleted.
    assert (await call(url, "DELETE", path, api_key=key)).status == 200
    assert_error(await call(url, "GET", path, api_key=key), 404, "OBJECT_NOT_FOUND")
    reply = await call(
        url,
        "POST",
        "/vault/v1/kv",
        api_key=key,
        body={"name": first["name"], "value": "v", "key_context": CONTEXT},
    )
    assert_error(reply, 409, "NAME_TAKEN")


async def test_422_for_requests_that_break_a_rule(http_server: HttpVaultd) -> None:
    key = await http_server.new_key()
    url = http_server.base_url
    cases = [
        ({"name": "n", "value": "v", "key_context": {}}, "INVALID_KEY_CONTEXT"),
        ({"name": "n", "value": "v"}, "INVALID_KEY_CONTEXT"),
        ({"name": "n", "value": "v", "key_context": {"": "x"}}, "INVALID_KEY_CONTEXT"),
        ({"name": "", "value": "v", "key_context": CONTEXT}, "INVALID_NAME"),
        (
            {"name": "big", "value": "x" * (64 * 1024 + 1), "key_context": CONTEXT},
            "VALUE_TOO_LARGE",
        ),
    ]
    for body, code in cases:
        reply = await call(url, "POST", "/vault/v1/kv", api_key=key, body=body)
        errors = assert_error(reply, 422, code)["errors"]
        assert errors and all(e["field"] and e["code"] == code for e in errors), errors
    reply = await call(url, "GET", "/vault/v1/kv?after=not-a-cursor", api_key=key)
    assert_error(reply, 422, "INVALID_CURSOR")
    assert_error(await call(url, "GET", "/vault/v1/kv/nope", api_key=key), 422, "INVALID_ID")
    garbage = base64.b64encode(b"\x01not encrypted keys").decode()
    reply = await call(url, "POST", "/vault/v1/keys/decrypt", api_key=key, body={"keys": garbage})
    assert_error(reply, 422, "DECRYPTION_FAILED")
    reply = await call(url, "POST", "/vault/v1/keys/data-key", api_key=key, body={"context": {}})
    assert_error(reply, 422, "INVALID_KEY_CONTEXT")


async def test_400_for_requests_this_layer_cannot_read(http_server: HttpVaultd) -> None:
    key = await http_server.new_key()
    url = http_server.base_url
    bad_bodies: list[tuple[str, str, bytes, str]] = [
        ("POST", "/vault/v1/kv", b"{not json", "body"),
        ("POST", "/vault/v1/kv", b"[1, 2]", "body"),
        ("POST", "/vault/v1/kv", b'{"name": 1, "value": "v"}', "name"),
        ("POST", "/vault/v1/kv", b'{"name": "n"}', "value"),
        ("POST", "/vault/v1/kv", b'{"name": "n", "value": "\\ud800"}', "value"),
        (
            "POST",
            "/vault/v1/kv",
            b'{"name": "n", "value": "v", "key_context": {"a": 1}}',
            "key_context",
        ),
        (
            "PUT",
            f"/vault/v1/kv/{MISSING_ID}",
            b'{"value": "v", "version_check": 7}',
            "version_check",
        ),
        ("POST", "/vault/v1/keys/decrypt", b'{"keys": "not base64!"}', "keys"),
        ("POST", "/vault/v1/keys/rekey", b'{"context": {"a": "b"}}', "encrypted_keys"),
        ("POST", "/vault/v1/keys/data-key", b'{"context": ["a"]}', "context"),
        ("POST", "/vault/v1/kv", b'{"name": "\\udc00", "value": "v"}', "name"),
        ("POST", "/vault/v1/keys/data-key", b'{"context": {"\\ud800": "x"}}', "context"),
        ("POST", "/vault/v1/kv", b"[" * 100_000, "body"),
        ("POST", "/vault/v1/kv", b'{"name": "\xff"}', "body"),
    ]
    for method, path, raw, field in bad_bodies:
        body = assert_error(
            await call(url, method, path, api_key=key, raw=raw), 400, "INVALID_REQUEST"
        )
        assert body["errors"][0]["field"] == field, (raw, body)
    for query, field in (
        ("limit=ten", "limit"),
        ("limit=99999999999", "limit"),
        ("order=sideways", "order"),
        ("updatedAfter=yesterday", "updatedAfter"),
        ("updatedAfter=2026-01-01T00:00:00", "updatedAfter"),
    ):
        body = assert_error(
            await call(url, "GET", f"/vault/v1/kv?{query}", api_key=key), 400, "INVALID_REQUEST"
        )
        assert body["errors"][0]["field"] == field


async def test_413_for_a_body_past_the_limit(http_server: HttpVaultd) -> None:
    key = await http_server.new_key()
    huge = b'{"name": "n", "value": "' + b"x" * (4 * 1024 * 1024 + 1) + b'"}'
    reply = await call(http_server.base_url, "POST", "/vault/v1/kv", api_key=key, raw=huge)
    assert_error(reply, 413, "REQUEST_TOO_LARGE")


async def test_422_for_a_value_that_is_not_text(http_server: HttpVaultd) -> None:
    """A value written over gRPC as bytes that are not UTF-8 cannot be JSON text."""
    key = await http_server.new_key()
    async with grpc.aio.insecure_channel(http_server.grpc_target) as channel:
        made = await opb_grpc.ObjectServiceStub(channel).CreateObject(
            opb.CreateObjectRequest(name="binary", value=b"\xff\xfe", key_context=CONTEXT),
            metadata=bearer(key),
        )
    reply = await call(http_server.base_url, "GET", f"/vault/v1/kv/{made.metadata.id}", api_key=key)
    assert_error(reply, 422, "VALUE_NOT_TEXT")
    # Its metadata still reads.
    described = await call(
        http_server.base_url, "GET", f"/vault/v1/kv/{made.metadata.id}/metadata", api_key=key
    )
    assert described.status == 200 and "value" not in described.json


async def test_names_with_slashes_and_percent_signs(http_server: HttpVaultd) -> None:
    key = await http_server.new_key()
    name = f"a/b%2F/{uuid.uuid4().hex[:6]}/ü"
    made = await create(http_server, key, name)
    encoded = quote(name, safe="")  # as both SDKs encode a name: '/' is %2F
    reply = await call(http_server.base_url, "GET", f"/vault/v1/kv/name/{encoded}", api_key=key)
    assert reply.status == 200 and reply.json["id"] == made["id"] and reply.json["name"] == name
