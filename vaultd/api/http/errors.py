"""gRPC statuses (made by vaultd/api/errors.py, the one error mapping) as WorkOS-style errors.

The WorkOS SDKs pick their exception class by HTTP status (Node: 401 Unauthorized, 404
NotFound, 409 Conflict, 422 UnprocessableEntity, 429 RateLimitExceeded with Retry-After, a
400 with `code` and `errors` BadRequest; Python likewise plus 403) and read `code`, `message`
and `errors` from a JSON body. The body is:

    {"code": "<vaultd reason, e.g. VERSION_CONFLICT>", "message": "...",
     "errors": [{"field": "...", "code": "...", "message": "..."}]}   (errors: only when any)

`code` is the ErrorInfo reason the gRPC status carries, so a client sees the same stable
reason over both transports. No `error` field: the Node SDK would take the body for an OAuth
error. Messages are ErrorMapping's, which never hold a value or a key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from vaultd.api.http.calls import Aborted

_DETAILS_KEY = "grpc-status-details-bin"

# gRPC code -> HTTP status. INVALID_ARGUMENT is 422: the request was well-formed JSON but
# broke a rule (a key context, a name, a cursor, a blob); 400 is kept for requests this layer
# cannot read at all (BadRequest below). FAILED_PRECONDITION (a revoked or shredded key) is
# 409: the request conflicts with the state of a key, and retrying it as is will not help.
STATUS_OF: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.OUT_OF_RANGE: 422,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}


@dataclass
class HttpError:
    """An error response: status, JSON body, extra headers."""

    status: int
    code: str
    message: str
    errors: list[dict[str, str]] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        # Only when there are some: the Node SDK takes any other status whose body has `code`
        # and `errors` (even empty) for a 400 BadRequestException.
        if self.errors:
            body["errors"] = self.errors
        return {**body, **self.extra}


class BadRequest(Exception):
    """A request this layer cannot read (bad JSON, a field of the wrong type, bad base64)."""

    def __init__(self, field_name: str, description: str) -> None:
        super().__init__(f"{field_name} {description}")
        self.field = field_name
        self.description = description

    def to_http(self) -> HttpError:
        return HttpError(
            400,
            "INVALID_REQUEST",
            str(self),
            [{"field": self.field, "code": "INVALID_REQUEST", "message": self.description}],
        )


def from_aborted(error: Aborted, bad_request: BadRequest | None = None) -> HttpError:
    """The HTTP error for a call that ended with a status. `bad_request`: the call carried
    MALFORMED in place of a request this layer could not read; once the wrapped handler has
    authenticated and admitted the caller, its refusal is reported as that BadRequest."""
    status = status_pb2.Status()
    raw: bytes | None = None
    for key, value in error.trailing:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            raw = value
    if raw is not None:
        status.ParseFromString(raw)
    reason = error.code.name
    metadata: dict[str, str] = {}
    violations: list[dict[str, str]] = []
    retry_after: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [
                {"field": v.field, "code": reason, "message": v.description}
                for v in bad.field_violations
            ]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info_retry = error_details_pb2.RetryInfo()
            detail.Unpack(info_retry)
            retry_after = info_retry.retry_delay.ToTimedelta().total_seconds()
    if bad_request is not None and error.code is grpc.StatusCode.INVALID_ARGUMENT:
        return bad_request.to_http()
    for violation in violations:
        violation["code"] = reason
    http = HttpError(
        STATUS_OF.get(error.code, 500),
        reason,
        error.details or status.message or error.code.name,
        violations,
        extra={"metadata": metadata} if metadata else {},
    )
    if error.code is grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is not None:
        # Whole seconds, rounded up: both SDKs read Retry-After as delay-seconds.
        http.headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
    return http
