"""The outermost wrapper: a request id, an access log line and metrics for every call.

The request id comes from the client's `x-request-id` metadata when it is a plausible id, or is
made here; it is set in vaultd.logs.REQUEST_ID for the whole call, so every log line and audit
event of the call carries it, and it goes back to the client in the trailing metadata.

Being outermost, this sees each call's final status: ErrorMapping answers errors with
`context.abort`, which records the code on the context before it raises, so `context.code()`
is the real code (NOT_FOUND, RESOURCE_EXHAUSTED, ...), never a guess from the exception.
The access line holds the method, code, duration and peer: never a request field or header.
It can be turned off (`access_log: false`) where a line per call costs too much; request ids
still go back to clients and into every other line and the audit events.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import grpc

from vaultd.logs import REQUEST_ID
from vaultd.metrics import Metrics

log = logging.getLogger("vaultd.access")

REQUEST_ID_HEADER = "x-request-id"
# What a client may choose as its request id: it is echoed into logs and metadata, so no
# spaces, quotes or control characters, and nothing long enough to bloat every log line.
_PLAUSIBLE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def request_id_from(metadata: Sequence[tuple[str, Any]] | None) -> str:
    """The client's x-request-id when it is plausible, else a new random one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and _PLAUSIBLE_ID.fullmatch(value):
            return value
    return os.urandom(16).hex()


class Observe:
    """Request ids always; the access log line when `access_log`; RPC metrics when `metrics`."""

    def __init__(self, metrics: Metrics | None, access_log: bool = True) -> None:
        self._metrics = metrics
        self._access_log = access_log

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # Streaming methods (health Watch, reflection) are operators' tools; not observed.
        if handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary
        name = method.lstrip("/")
        metrics = self._metrics
        access_log = self._access_log

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            request_id = request_id_from(context.invocation_metadata())
            REQUEST_ID.set(request_id)  # this call's task has its own copy of the context
            context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
            if metrics is not None:
                metrics.rpcs_in_flight.inc()
            started = time.perf_counter()
            fallback = grpc.StatusCode.OK
            try:
                return await behavior(request, context)
            except asyncio.CancelledError:
                fallback = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                fallback = grpc.StatusCode.UNKNOWN  # what grpc answers for an escaped exception
                raise
            finally:
                seconds = time.perf_counter() - started
                code = (context.code() or fallback).name
                if metrics is not None:
                    metrics.rpcs_in_flight.dec()
                    metrics.rpc_done(name, code, seconds)
                if access_log and log.isEnabledFor(logging.INFO):
                    log.info(
                        "%s %s %.1f ms",
                        name,
                        code,
                        seconds * 1000,
                        extra={
                            "method": name,
                            "code": code,
                            "duration_ms": round(seconds * 1000, 3),
                            "peer": context.peer(),
                        },
                    )

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
