"""The ASGI application of the WorkOS-compatible listener: HTTP in, one vaultd call, JSON out.

For each request: read the body (bounded), find the route, build the method's request
message, run it through the wrapped gRPC handler (calls.py: auth, permissions, rate limit,
audit, logs, metrics, errors), render the response or the error as the SDKs read them. A
request whose body or parameters cannot be read is still sent through the handler, as
MALFORMED, so it is authenticated, limited and audited like any call before it is refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from vaultd.api.http import openapi, routes
from vaultd.api.http.calls import MALFORMED, CallContext, Calls, Metadata
from vaultd.api.http.errors import BadRequest, HttpError, from_aborted
from vaultd.api.http.idempotency import IdempotencyKeys, Replay
from vaultd.api.http.shapes import ValueNotText
from vaultd.api.observe import REQUEST_ID_HEADER

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Headers passed to the call as its gRPC metadata; nothing else of the request is.
_FORWARDED = {b"authorization", REQUEST_ID_HEADER.encode()}
_JSON = (b"content-type", b"application/json")


# The whole body must arrive within this long of its headers: a client trickling it would
# otherwise hold a connection and its buffered bytes for ever.
BODY_TIMEOUT_SECONDS = 30.0


class TooLarge(Exception):
    pass


class Response:
    def __init__(
        self, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status = status
        self.body = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        self.headers = headers or []

    async def send(self, send: Send) -> None:
        headers = [*self.headers, (b"content-length", str(len(self.body)).encode())]
        if self.body:
            headers.append(_JSON)
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _error(error: HttpError, request_id: str | bytes | None = None) -> Response:
    headers = list(error.headers)
    if request_id:
        value = request_id if isinstance(request_id, bytes) else request_id.encode()
        headers.append((b"x-request-id", value))
    return Response(error.status, error.body(), headers)


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return "unknown"
    host, port = client[0], client[1]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


class HttpApp:
    def __init__(self, calls: Calls, max_body_bytes: int, idempotency: IdempotencyKeys) -> None:
        self._calls = calls
        self._max_body = max_body_bytes
        self._idempotency = idempotency
        self._openapi = openapi.document()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # Nothing to start or stop: vaultd's assembly owns every resource.
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        try:
            response = await self._respond(scope, receive)
        except Exception:
            # A bug, not the client's doing: logged with an id, answered without details, in
            # the JSON shape the SDKs parse (uvicorn's own 500 is plain text).
            error_id = uuid.uuid4().hex
            log.exception(
                "unhandled error serving HTTP %s (error id %s)", scope["method"], error_id
            )
            response = _error(HttpError(500, "INTERNAL", f"internal error (error id {error_id})"))
        await response.send(send)

    async def _respond(self, scope: Scope, receive: Receive) -> Response:
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        method = scope["method"]
        if path == "/openapi.json" and method == "GET":  # public, like the SDKs' docs
            return Response(200, self._openapi)
        found = routes.match(method, path)
        if found is None:
            return _error(HttpError(404, "ROUTE_NOT_FOUND", f"no route {path}"))
        if found.route is None:
            return _error(HttpError(405, "METHOD_NOT_ALLOWED", f"{method} is not served here"))
        try:
            async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
                body = await self._read_body(receive)
        except TimeoutError:
            return _error(
                HttpError(408, "REQUEST_TIMEOUT", "the body did not arrive in time; send it again")
            )
        except TooLarge:
            return _error(
                HttpError(413, "REQUEST_TOO_LARGE", f"the body exceeds {self._max_body} bytes")
            )
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        metadata: Metadata = tuple(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name in _FORWARDED
        )
        route = found.route
        idempotency_key = next(
            (v.decode("latin-1") for n, v in headers if n == b"idempotency-key"), None
        )
        if route.idempotent_post and idempotency_key:
            while True:
                replay = self._idempotency.begin(metadata, path, idempotency_key, body)
                if isinstance(replay, HttpError):
                    return _error(replay)
                if replay.cached is not None:
                    return replay.cached
                if replay.done is None:
                    return await self._with_replay(replay, scope, found, body, metadata)
                # The same request is running: its answer, or (it failed) another try.
                first = await self._idempotency.wait(replay)
                if first is not None:
                    return first
        return await self._call(scope, found, body, metadata)

    async def _with_replay(
        self, replay: Replay, scope: Scope, found: routes.Match, body: bytes, metadata: Metadata
    ) -> Response:
        response: Response | None = None
        try:
            response = await self._call(scope, found, body, metadata)
        finally:
            self._idempotency.finish(replay, response)
        return response

    async def _call(
        self, scope: Scope, found: routes.Match, body: bytes, metadata: Metadata
    ) -> Response:
        route = found.route
        assert route is not None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        bad: BadRequest | None = None
        request: Any = MALFORMED
        try:
            # JSONDecodeError and UnicodeDecodeError are ValueErrors; RecursionError is what
            # a deeply nested document costs Python's parser.
            parsed = json.loads(body) if body else None
        except (ValueError, RecursionError):
            bad = BadRequest("body", "is not valid JSON")
        else:
            try:
                request = route.build(found.params, query, parsed)
            except BadRequest as exc:
                bad = exc
        outcome = await self._calls.call(route.method, request, CallContext(metadata, _peer(scope)))
        request_id = outcome.trailing.get(REQUEST_ID_HEADER)
        if outcome.error is not None:
            return _error(from_aborted(outcome.error, bad), request_id)
        if bad is not None:  # cannot happen: the handler refuses MALFORMED
            return _error(bad.to_http(), request_id)
        try:
            rendered = route.render(outcome.response)
        except ValueNotText:
            return _error(
                HttpError(
                    422,
                    "VALUE_NOT_TEXT",
                    "the value is not UTF-8 text; read it over gRPC, which carries bytes",
                ),
                request_id,
            )
        headers = []
        if request_id:
            value = request_id if isinstance(request_id, bytes) else request_id.encode()
            headers.append((b"x-request-id", value))
        return Response(route.status, rendered, headers)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)
