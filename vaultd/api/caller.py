"""Who is calling: the environment and actor an RPC acts for.

Authentication (auth.py) authenticates every call before its servicer runs and sets the caller
in a context variable; each call runs in its own task with its own copy of the context, so no
call can see another's caller. A servicer reached without it (a wiring mistake) refuses the
call rather than acting for nobody in particular.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

import grpc

from vaultd.core.errors import Unauthenticated
from vaultd.core.objects import Actor


@dataclass(frozen=True, slots=True)
class Caller:
    environment_id: str
    actor: Actor


CALLER: ContextVar[Caller | None] = ContextVar("vaultd_caller", default=None)


def caller_of(context: grpc.aio.ServicerContext) -> Caller:
    caller = CALLER.get()
    if caller is None:
        raise Unauthenticated("the call was not authenticated")
    return caller
