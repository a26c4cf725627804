"""JSON <-> protobuf for the WorkOS Vault shapes, as the WorkOS SDKs send and parse them.

Requests: snake_case fields; an object's `value` is text (stored as its UTF-8 bytes); a key
context is `key_context` on objects and `context` on data keys; `keys` and `encrypted_keys`
are base64. Responses: timestamps are ISO 8601 UTC with microseconds and a `Z`; `data_key`
and `encrypted_keys` are base64; metadata carries `context`, `key_id` (the first KEK version
id, as the SDKs parse one) and, beside it, vaultd's full `key_ids` list.

Only types and encodings are checked here; every rule about names, contexts, sizes and blobs
is core's, reached through the call.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Literal, overload

from google.protobuf.timestamp_pb2 import Timestamp

from vaultd.api.http.errors import BadRequest
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import object_service_pb2 as opb

Json = dict[str, Any]


class ValueNotText(Exception):
    """A stored value that is not UTF-8 text (written over gRPC), which JSON cannot carry as
    the SDKs expect it."""


# --- request fields ---


def body_object(body: Any) -> Json:
    if not isinstance(body, dict):
        raise BadRequest("body", "must be a JSON object")
    return body


@overload
def string(body: Json, field: str, *, required: Literal[True] = True) -> str: ...


@overload
def string(body: Json, field: str, *, required: bool) -> str | None: ...


def string(body: Json, field: str, *, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise BadRequest(field, "is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(field, "must be a string")
    _unicode(field, value)
    return value


def _unicode(field: str, value: str) -> None:
    """JSON may spell lone surrogates (\\ud800); they are not text, and protobuf refuses them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(field, "must be valid Unicode text") from None


def text_bytes(body: Json, field: str) -> bytes:
    """A text field as its UTF-8 bytes."""
    value = string(body, field)
    assert value is not None
    return value.encode("utf-8")


def context(body: Json, field: str) -> dict[str, str]:
    """A key context: an object of strings. Missing is empty, which core refuses by its rule."""
    value = body.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest(field, "must be an object whose values are strings")
    for key, item in value.items():
        _unicode(field, key)
        _unicode(field, item)
    return value


def base64_bytes(body: Json, field: str) -> bytes:
    value = string(body, field)
    assert value is not None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(field, "must be base64") from None


def query_int(query: dict[str, str], field: str) -> int:
    raw = query.get(field)
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(field, "must be an integer") from None
    if not -(2**31) <= value < 2**31:
        raise BadRequest(field, "is out of range")
    return value


def query_order(query: dict[str, str]) -> int:
    order = query.get("order")
    if order in (None, "", "desc"):
        return opb.LIST_ORDER_DESCENDING
    if order == "asc":
        return opb.LIST_ORDER_ASCENDING
    raise BadRequest("order", 'must be "asc" or "desc"')


def query_timestamp(query: dict[str, str], field: str) -> Timestamp | None:
    raw = query.get(field)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(field, "must be an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise BadRequest(field, "must name its time zone (e.g. a trailing Z)")
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# --- responses ---


def timestamp(stamp: Timestamp) -> str:
    moment = stamp.ToDatetime()
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}Z"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def metadata(meta: opb.ObjectMetadata) -> Json:
    return {
        "id": meta.id,
        "name": meta.name,
        "environment_id": meta.environment_id,
        "context": dict(meta.key_context),
        "key_id": meta.key_ids[0] if meta.key_ids else "",
        "key_ids": list(meta.key_ids),
        "version_id": meta.version_id,
        "version_number": meta.version_number,
        "created_at": timestamp(meta.created_at),
        "updated_at": timestamp(meta.updated_at),
        "updated_by": {"id": meta.updated_by.id, "name": meta.updated_by.name},
    }


def without_value(meta: opb.ObjectMetadata) -> Json:
    return {"id": meta.id, "name": meta.name, "metadata": metadata(meta)}


def with_value(obj: opb.Object) -> Json:
    try:
        value = obj.value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueNotText from None
    return {"id": obj.id, "name": obj.name, "value": value, "metadata": metadata(obj.metadata)}


def cursor(value: str) -> str | None:
    return value or None


def object_list(response: opb.ListObjectsResponse) -> Json:
    return {
        "object": "list",
        "data": [
            {"id": d.id, "name": d.name, "updated_at": timestamp(d.updated_at)}
            for d in response.objects
        ],
        "list_metadata": {
            "before": cursor(response.list_metadata.before),
            "after": cursor(response.list_metadata.after),
        },
    }


def version_list(response: opb.ListObjectVersionsResponse) -> Json:
    return {
        "object": "list",
        "data": [
            {
                "id": v.id,
                "created_at": timestamp(v.created_at),
                "current_version": v.current_version,
                "size": v.size,
                "etag": v.etag,
                "version_number": v.version_number,
            }
            for v in response.versions
        ],
        "list_metadata": {"before": None, "after": None},
    }


def data_key(response: kpb.CreateDataKeyResponse | kpb.RekeyDataKeyResponse) -> Json:
    return {
        "id": response.id,
        "data_key": b64(response.data_key),
        "encrypted_keys": b64(response.encrypted_keys),
        "context": dict(response.key_context),
        "key_ids": list(response.key_ids),
    }


def decrypted_key(response: kpb.DecryptDataKeyResponse) -> Json:
    return {"id": response.id, "data_key": b64(response.data_key)}
