"""The one place domain errors become gRPC statuses (docs/ARCHITECTURE.md section 7).

Every VaultError becomes its status code with a google.rpc.Status carrying ErrorInfo (reason,
domain "vaultd", metadata), for bad fields BadRequest, and when a later retry may succeed (a
rate limit) RetryInfo. (A request that does not even parse is INVALID_ARGUMENT, raised by
authorization.py: parsing.py reads every request.) Anything else is a bug: it is logged with
an error id and answered with a generic INTERNAL that says nothing about the request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from providers.deadline import answer_within
from vaultd.core.errors import BackendUnavailable, VaultError

log = logging.getLogger(__name__)

DOMAIN = "vaultd"


def to_status(error: VaultError) -> Any:
    """The grpc.Status (code, message, trailing metadata with details) for a domain error."""
    code = grpc.StatusCode[error.code]
    status = status_pb2.Status(code=code.value[0], message=error.message)
    details: list[Any] = [
        error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    ]
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
    if error.retry_delay is not None:
        delay = duration_pb2.Duration()
        # Rounded up to the millisecond: a client that waits exactly this long finds a token.
        delay.FromMilliseconds(math.ceil(error.retry_delay * 1000))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return rpc_status.to_status(status)


class ErrorMapping:
    """Wraps every unary RPC so its errors leave as the documented statuses.

    A call whose client set no deadline gets `default_deadline` seconds: a hung store or KMS
    answers it UNAVAILABLE then, instead of holding it for as long as the backends' own
    timeouts add up to.
    """

    def __init__(self, default_deadline: float | None = None) -> None:
        self._default_deadline = default_deadline

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            error: VaultError
            try:
                # Bounds every backend wait (KMS retries included) by the client's deadline;
                # providers learn it too, so they give up in time for this call to answer
                # UNAVAILABLE with a retry hint rather than be cut off by the timeout.
                remaining = context.time_remaining()
                deadline = self._default_deadline if remaining is None else remaining
                with answer_within(deadline):
                    async with asyncio.timeout(deadline):
                        return await behavior(request, context)
            except VaultError as exc:
                error = exc
            except TimeoutError:
                error = BackendUnavailable("a backend did not answer within the deadline")
            except asyncio.CancelledError:
                raise
            except Exception:
                error_id = uuid.uuid4().hex
                log.exception("unhandled error in %s (error id %s)", method, error_id)
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"internal error (error id {error_id})"
                )
            status = to_status(error)
            # abort() replaces the trailing metadata; keep what outer wrappers set (the
            # request id) next to the status details.
            await context.abort(
                status.code,
                status.details,
                (*(context.trailing_metadata() or ()), *status.trailing_metadata),
            )

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
