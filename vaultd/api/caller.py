"""Who is calling: the environment and actor an RPC acts for, and the origin its audit events
name.

Authentication (auth.py) authenticates every call before its servicer runs and sets the caller
in a context variable; each call runs in its own task with its own copy of the context, so no
call can see another's caller. A servicer reached without it (a wiring mistake) refuses the
call rather than acting for nobody in particular.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

import grpc

from vaultd.api.observe import request_id_from
from vaultd.core import audit
from vaultd.core.apikeys import actor_of
from vaultd.core.errors import Unauthenticated
from vaultd.core.records import ApiKeyRecord
from vaultd.core.scope import UNSCOPED, ContextScope
from vaultd.core.types import Actor
from vaultd.logs import REQUEST_ID


@dataclass(frozen=True, slots=True)
class Caller:
    environment_id: str
    actor: Actor
    scope: ContextScope = UNSCOPED
    """The key contexts the caller's API key may touch; every servicer hands it to core."""


CALLER: ContextVar[Caller | None] = ContextVar("vaultd_caller", default=None)


def caller_of(context: grpc.aio.ServicerContext) -> Caller:
    caller = CALLER.get()
    if caller is None:
        raise Unauthenticated("the call was not authenticated")
    return caller


def origin_of(
    method: str, key: ApiKeyRecord | None, context: grpc.aio.ServicerContext
) -> audit.Origin:
    """Who made a call and through which request, for its audit events."""
    return audit.Origin(
        environment_id=key.environment_id if key else audit.UNAUTHENTICATED_ENVIRONMENT,
        actor=actor_of(key) if key else None,
        # The id Observe chose for the call's logs, so the two can be joined.
        request_id=REQUEST_ID.get() or request_id_from(context.invocation_metadata()),
        method=method,
        peer=context.peer(),
    )
