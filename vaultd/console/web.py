"""The console's HTTP plumbing over plain ASGI: requests in, responses out, with the security
headers every response carries.

Every response carries a strict Content-Security-Policy (scripts and styles from this origin
only, no inline script or style, no framing), no-referrer, nosniff and no-store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

MAX_FORM_BYTES = 64 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Headers = [
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
}
"""The HTTP status of a core error's code; any other code is a 500."""


@dataclass
class Response:
    status: int
    body: bytes | AsyncIterator[bytes]
    content_type: str = "text/html; charset=utf-8"
    headers: Headers = field(default_factory=list)


def html(status: int, text: str, headers: Headers | None = None) -> Response:
    return Response(status, text.encode(), headers=headers or [])


def redirect(location: str, headers: Headers | None = None) -> Response:
    return Response(303, b"", headers=[(b"location", location.encode()), *(headers or [])])


@dataclass
class Request:
    method: str
    path: str  # below the root, "" for the root itself
    query: dict[str, str]
    headers: dict[str, str]
    peer: str
    form: dict[str, list[str]] = field(default_factory=dict)

    def value(self, name: str) -> str:
        return (self.form.get(name) or [""])[0]

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None


class Refused(Exception):
    """A request the console will not serve, with its status and a message for the page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


async def read_request(scope: Scope, receive: Receive, root: str) -> Request | None:
    """The request below `root` (None: not the console's), with its form when it is a POST."""
    path: str = scope["path"]
    if path != root and not path.startswith(root + "/"):
        return None
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
    client = scope.get("client") or ("unknown", 0)
    peer = (
        f"ipv6:[{client[0]}]:{client[1]}" if ":" in client[0] else f"ipv4:{client[0]}:{client[1]}"
    )
    request = Request(scope["method"], path[len(root) :].rstrip("/"), query, headers, peer)
    if request.method == "POST":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_FORM_BYTES:
                raise Refused(413, "Too large", "The form is larger than the console accepts.")
            if not message.get("more_body"):
                break
        request.form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return request


async def send_response(response: Response, send: Send, *, tls: bool) -> None:
    headers = [*SECURITY_HEADERS, (b"content-type", response.content_type.encode())]
    if tls:
        headers.append((b"strict-transport-security", b"max-age=31536000"))
    headers += response.headers
    if isinstance(response.body, bytes):
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        return
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    async for chunk in response.body:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
