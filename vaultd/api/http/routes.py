"""The WorkOS Vault routes: which vaultd method each one calls, and its JSON in and out.

Paths are matched on the raw (still percent-encoded) path, split into segments, each decoded
on its own, so an id can never smuggle a '/' into another route. A name is everything after
`/vault/v1/kv/name/`, decoded: names may contain '/', whether the client encodes it
(`%2F`, as both SDKs do) or not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from google.protobuf.message import Message

from vaultd.api.http import shapes
from vaultd.api.http.shapes import Json
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import object_service_pb2 as opb

_OBJECTS = "/vaultd.v1.ObjectService/"
_KEYS = "/vaultd.v1.KeyService/"

# (path parameters, query parameters, JSON body or None) -> request message
Build = Callable[[list[str], dict[str, str], Any], Message]
Render = Callable[[Any], Json]


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # the full gRPC method name the route calls
    build: Build
    render: Render
    status: int = 200
    idempotent_post: bool = False  # replays a repeated Idempotency-Key (create only)


def _create(params: list[str], query: dict[str, str], body: Any) -> Message:
    b = shapes.body_object(body)
    return opb.CreateObjectRequest(
        name=shapes.string(b, "name"),
        value=shapes.text_bytes(b, "value"),
        key_context=shapes.context(b, "key_context"),
    )


def _list(params: list[str], query: dict[str, str], body: Any) -> Message:
    request = opb.ListObjectsRequest(
        limit=shapes.query_int(query, "limit"),
        before=query.get("before", ""),
        after=query.get("after", ""),
        order=shapes.query_order(query),  # type: ignore[arg-type]
        # WorkOS's `search` filters by name; vaultd filters by name prefix (docs/HTTP.md).
        name_prefix=query.get("search", ""),
    )
    updated_after = shapes.query_timestamp(query, "updatedAfter") or shapes.query_timestamp(
        query, "updated_after"
    )
    if updated_after is not None:
        request.updated_after.CopyFrom(updated_after)
    return request


def _update(params: list[str], query: dict[str, str], body: Any) -> Message:
    b = shapes.body_object(body)
    request = opb.UpdateObjectRequest(id=params[0], value=shapes.text_bytes(b, "value"))
    check = shapes.string(b, "version_check", required=False)
    if check is not None:
        request.version_check = check
    return request


def _delete(params: list[str], query: dict[str, str], body: Any) -> Message:
    request = opb.DeleteObjectRequest(id=params[0])
    if "version_check" in query:
        request.version_check = query["version_check"]
    return request


def _data_key(params: list[str], query: dict[str, str], body: Any) -> Message:
    return kpb.CreateDataKeyRequest(key_context=shapes.context(shapes.body_object(body), "context"))


def _decrypt(params: list[str], query: dict[str, str], body: Any) -> Message:
    return kpb.DecryptDataKeyRequest(
        encrypted_keys=shapes.base64_bytes(shapes.body_object(body), "keys")
    )


def _rekey(params: list[str], query: dict[str, str], body: Any) -> Message:
    b = shapes.body_object(body)
    return kpb.RekeyDataKeyRequest(
        encrypted_keys=shapes.base64_bytes(b, "encrypted_keys"),
        key_context=shapes.context(b, "context"),
    )


def _by_id(cls: Any) -> Build:
    return lambda params, query, body: cls(id=params[0])


def _deleted(response: Any) -> Json:
    return {"success": True}


def _version(params: list[str], query: dict[str, str], body: Any) -> Message:
    return opb.GetObjectVersionRequest(id=params[0], version_id=params[1])


# (HTTP method, path pattern): "*" is one path segment, the route's parameters in order.
ROUTES: dict[tuple[str, tuple[str, ...]], Route] = {
    ("POST", ("kv",)): Route(
        _OBJECTS + "CreateObject",
        _create,
        lambda r: shapes.metadata(r.metadata),
        status=201,
        idempotent_post=True,
    ),
    ("GET", ("kv",)): Route(_OBJECTS + "ListObjects", _list, shapes.object_list),
    ("GET", ("kv", "*")): Route(
        _OBJECTS + "GetObject", _by_id(opb.GetObjectRequest), lambda r: shapes.with_value(r.object)
    ),
    ("PUT", ("kv", "*")): Route(
        _OBJECTS + "UpdateObject", _update, lambda r: shapes.without_value(r.metadata)
    ),
    ("DELETE", ("kv", "*")): Route(_OBJECTS + "DeleteObject", _delete, _deleted),
    ("GET", ("kv", "*", "metadata")): Route(
        _OBJECTS + "DescribeObject",
        _by_id(opb.DescribeObjectRequest),
        lambda r: shapes.without_value(r.metadata),
    ),
    ("GET", ("kv", "*", "versions")): Route(
        _OBJECTS + "ListObjectVersions",
        _by_id(opb.ListObjectVersionsRequest),
        shapes.version_list,
    ),
    # Not in the WorkOS SDKs: a past version's value, as vaultd's GetObjectVersion gives it.
    ("GET", ("kv", "*", "versions", "*")): Route(
        _OBJECTS + "GetObjectVersion", _version, lambda r: shapes.with_value(r.object)
    ),
    ("POST", ("keys", "data-key")): Route(_KEYS + "CreateDataKey", _data_key, shapes.data_key),
    ("POST", ("keys", "decrypt")): Route(_KEYS + "DecryptDataKey", _decrypt, shapes.decrypted_key),
    ("POST", ("keys", "rekey")): Route(_KEYS + "RekeyDataKey", _rekey, shapes.data_key),
}

BY_NAME = Route(
    _OBJECTS + "GetObjectByName",
    lambda params, query, body: opb.GetObjectByNameRequest(name=params[0]),
    lambda r: shapes.with_value(r.object),
)

PREFIX = "/vault/v1/"
_NAME_PREFIX = PREFIX + "kv/name/"


@dataclass(frozen=True, slots=True)
class Match:
    route: Route | None  # None: the path exists, but not for this method
    params: list[str]


def match(http_method: str, raw_path: str) -> Match | None:
    """The route for a request, None when no route has this path."""
    if raw_path.startswith(_NAME_PREFIX):
        name = unquote(raw_path[len(_NAME_PREFIX) :])
        return Match(BY_NAME if http_method == "GET" else None, [name])
    if not raw_path.startswith(PREFIX):
        return None
    segments = [unquote(s) for s in raw_path[len(PREFIX) :].split("/")]
    found = False
    for (method, pattern), route in ROUTES.items():
        if len(pattern) != len(segments) or not all(
            p == "*" or p == s for p, s in zip(pattern, segments, strict=True)
        ):
            continue
        params = [s for p, s in zip(pattern, segments, strict=True) if p == "*"]
        # A literal segment beats "*": /kv/name is not the object named "name".
        if any(not p for p in params):
            continue
        found = True
        if method == http_method:
            return Match(route, params)
    return Match(None, []) if found else None
