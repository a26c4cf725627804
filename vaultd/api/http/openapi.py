"""The OpenAPI 3.1 description of the HTTP API, served at /openapi.json.

Built from the route table (routes.py) so a route cannot be served undocumented; the shapes
here are those shapes.py writes. docs/openapi.json is this document, committed for readers
and tools; a test checks that the two are the same and that live answers match it.
"""

from __future__ import annotations

from typing import Any

from vaultd.api.http import routes

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_STRING: Schema = {"type": "string"}
_TIME: Schema = {"type": "string", "format": "date-time"}
_CONTEXT: Schema = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "description": "A key context: 1 to 10 items, keys up to 120 and values up to 500 characters.",
}
_NULLABLE_STRING: Schema = {"type": ["string", "null"]}


def _object(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


SCHEMAS: dict[str, Schema] = {
    "Actor": _object({"id": _STRING, "name": _STRING}),
    "ObjectMetadata": _object(
        {
            "id": _STRING,
            "name": _STRING,
            "environment_id": _STRING,
            "context": _CONTEXT,
            "key_id": _STRING,
            "key_ids": {"type": "array", "items": _STRING},
            "version_id": _STRING,
            "version_number": {"type": "integer"},
            "created_at": _TIME,
            "updated_at": _TIME,
            "updated_by": _ref("Actor"),
        }
    ),
    "Object": _object(
        {"id": _STRING, "name": _STRING, "value": _STRING, "metadata": _ref("ObjectMetadata")}
    ),
    "ObjectWithoutValue": _object(
        {"id": _STRING, "name": _STRING, "metadata": _ref("ObjectMetadata")}
    ),
    "ListMetadata": _object({"before": _NULLABLE_STRING, "after": _NULLABLE_STRING}),
    "ObjectList": _object(
        {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": _object({"id": _STRING, "name": _STRING, "updated_at": _TIME}),
            },
            "list_metadata": _ref("ListMetadata"),
        }
    ),
    "VersionList": _object(
        {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": _object(
                    {
                        "id": _STRING,
                        "created_at": _TIME,
                        "current_version": {"type": "boolean"},
                        "size": {"type": "integer"},
                        "etag": _STRING,
                        "version_number": {"type": "integer"},
                    }
                ),
            },
            "list_metadata": _ref("ListMetadata"),
        }
    ),
    "Deleted": _object({"success": {"type": "boolean"}}),
    "DataKey": _object(
        {
            "id": _STRING,
            "data_key": {**_STRING, "contentEncoding": "base64"},
            "encrypted_keys": {**_STRING, "contentEncoding": "base64"},
            "context": _CONTEXT,
            "key_ids": {"type": "array", "items": _STRING},
        }
    ),
    "DecryptedKey": _object({"id": _STRING, "data_key": {**_STRING, "contentEncoding": "base64"}}),
    "Error": _object(
        {
            "code": {**_STRING, "description": "vaultd's stable reason, e.g. VERSION_CONFLICT"},
            "message": _STRING,
            "errors": {
                "type": "array",
                "items": _object({"field": _STRING, "code": _STRING, "message": _STRING}),
            },
            "metadata": {"type": "object", "additionalProperties": _STRING},
        },
        required=["code", "message"],
    ),
    "CreateObjectRequest": _object(
        {"name": _STRING, "value": _STRING, "key_context": _CONTEXT},
        required=["name", "value", "key_context"],
    ),
    "UpdateObjectRequest": _object(
        {"value": _STRING, "version_check": _NULLABLE_STRING}, required=["value"]
    ),
    "DataKeyRequest": _object({"context": _CONTEXT}),
    "DecryptRequest": _object({"keys": {**_STRING, "contentEncoding": "base64"}}),
    "RekeyRequest": _object(
        {"context": _CONTEXT, "encrypted_keys": {**_STRING, "contentEncoding": "base64"}}
    ),
}

# route method name -> (summary, request body schema or None, success schema)
_DOCS: dict[str, tuple[str, str | None, str]] = {
    "CreateObject": ("Create an object", "CreateObjectRequest", "ObjectMetadata"),
    "ListObjects": ("List objects, a page at a time", None, "ObjectList"),
    "GetObject": ("Read an object by id", None, "Object"),
    "GetObjectByName": ("Read an object by name", None, "Object"),
    "DescribeObject": ("An object's metadata, without its value", None, "ObjectWithoutValue"),
    "UpdateObject": (
        "Write a new version of an object",
        "UpdateObjectRequest",
        "ObjectWithoutValue",
    ),
    "DeleteObject": ("Delete an object", None, "Deleted"),
    "ListObjectVersions": ("An object's versions", None, "VersionList"),
    "GetObjectVersion": ("A past version's value (vaultd only)", None, "Object"),
    "CreateDataKey": ("A new data key for a context", "DataKeyRequest", "DataKey"),
    "DecryptDataKey": ("Decrypt a data key", "DecryptRequest", "DecryptedKey"),
    "RekeyDataKey": ("The same data key under a new context", "RekeyRequest", "DataKey"),
}

_ERRORS = {
    "400": "The request cannot be read (not JSON, a field of the wrong type, bad base64)",
    "401": "No, malformed or unknown API key",
    "403": "The API key lacks the permission",
    "404": "No such object, version or route",
    "405": "A path that exists, with another method",
    "408": "The body did not arrive in time",
    "409": "Name taken, stale version_check, or a key revoked or shredded",
    "413": "The body is too large",
    "422": "The request breaks a rule (key context, name, size, cursor, id, blob)",
    "429": "Over the API key's rate limit; Retry-After says when to retry",
    "503": "A backend (Redis, a KMS) is unavailable",
}

_LIST_PARAMETERS: list[Schema] = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    {"name": "before", "in": "query", "schema": _STRING},
    {"name": "after", "in": "query", "schema": _STRING},
    {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
    {"name": "search", "in": "query", "schema": _STRING, "description": "A name prefix."},
    {"name": "updatedAfter", "in": "query", "schema": _TIME},
]


def _path_of(pattern: tuple[str, ...], names: list[str]) -> str:
    parts, index = [], 0
    for part in pattern:
        if part == "*":
            parts.append("{" + names[index] + "}")
            index += 1
        else:
            parts.append(part)
    return routes.PREFIX + "/".join(parts)


def _operation(route: routes.Route, parameters: list[Schema]) -> Schema:
    rpc = route.method.rsplit("/", 1)[1]
    summary, body, answer = _DOCS[rpc]
    operation: Schema = {
        "operationId": rpc,
        "summary": summary,
        "parameters": parameters,
        "responses": {
            str(route.status): {
                "description": "Success",
                "content": {"application/json": {"schema": _ref(answer)}},
            },
            **{
                status: {
                    "description": description,
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
                for status, description in _ERRORS.items()
            },
        },
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


def _path_parameter(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": _STRING}


def document() -> Schema:
    paths: dict[str, Schema] = {}
    for (method, pattern), route in routes.ROUTES.items():
        names = ["id", "version_id"][: pattern.count("*")]
        parameters = [_path_parameter(n) for n in names]
        if route.method.endswith("/ListObjects"):
            parameters += _LIST_PARAMETERS
        if route.method.endswith("/DeleteObject"):
            parameters.append({"name": "version_check", "in": "query", "schema": _STRING})
        paths.setdefault(_path_of(pattern, names), {})[method.lower()] = _operation(
            route, parameters
        )
    paths[routes.PREFIX + "kv/name/{name}"] = {
        "get": _operation(routes.BY_NAME, [_path_parameter("name")])
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vaultd: WorkOS Vault compatible HTTP API",
            "version": "1",
            "description": "The routes of WorkOS Vault that the WorkOS SDKs call (docs/HTTP.md).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
    }
