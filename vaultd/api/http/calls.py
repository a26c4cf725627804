"""One HTTP request as one call of a wrapped gRPC handler, in process, without the network.

The gRPC server wraps every vaultd method once (server.py: Observe, ErrorMapping, RateLimit,
Authentication, in that order) and the registrar keeps the wrapped handlers. An HTTP request
is turned into the method's request message, serialized, and handed to the same wrapped
handler the gRPC server runs, with a `CallContext` standing in for grpc's ServicerContext:
the Authorization and X-Request-ID headers as its metadata, the HTTP peer as its peer. So an
HTTP call is authenticated, permission-checked, rate limited, audited, logged and counted by
the very code that does it for gRPC, and its errors are the statuses ErrorMapping makes.
Nothing here decides anything about objects, keys or callers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message

# An empty field number: every protobuf parser refuses it. Sent in place of a request the HTTP
# layer could not turn into a message, so the call is still authenticated, limited and audited
# (as the gRPC server does for a malformed message) before it is refused.
MALFORMED = b"\x00"

Metadata = tuple[tuple[str, str | bytes], ...]


class Aborted(Exception):
    """What CallContext.abort raises: the call ended with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Metadata) -> None:
        super().__init__(code.name)
        self.code = code
        self.details = details
        self.trailing = trailing


class CallContext:
    """The part of grpc.aio.ServicerContext the wrappers and servicers use, for one HTTP call.

    HTTP requests carry no deadline: `time_remaining` is None, as for a gRPC call without one.
    """

    def __init__(self, metadata: Metadata, peer: str) -> None:
        self._metadata = metadata
        self._peer = peer
        self._trailing: Metadata = ()
        self._code: grpc.StatusCode | None = None

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self._trailing = tuple(metadata)

    def trailing_metadata(self) -> Metadata:
        return self._trailing

    def code(self) -> grpc.StatusCode | None:
        return self._code

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        self._code = code
        self._trailing = tuple(trailing_metadata)
        raise Aborted(code, details, self._trailing)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A call's response message (None when it failed), its trailing metadata, its error."""

    response: Message | None
    trailing: Mapping[str, str | bytes]
    error: Aborted | None


class Calls:
    """Calls the wrapped handlers the gRPC server registered, by full method name."""

    def __init__(self, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self._handlers = dict(handlers)

    async def call(self, method: str, request: Message | bytes, context: CallContext) -> Outcome:
        handler = self._handlers[method]
        # Authentication, the innermost layer, parses the bytes once the caller is known.
        raw = request if isinstance(request, bytes) else request.SerializeToString()
        try:
            if handler.stream_unary is not None:
                # BodyGate (outermost) takes the request as a stream it reads only once the
                # caller is authenticated; here it is already in memory.
                response = await handler.stream_unary(_one(raw), context)
            else:
                response = await handler.unary_unary(raw, context)
        except Aborted as error:
            return Outcome(None, dict(error.trailing), error)
        return Outcome(response, dict(context.trailing_metadata()), None)


async def _one(raw: bytes) -> AsyncIterator[bytes]:
    yield raw
