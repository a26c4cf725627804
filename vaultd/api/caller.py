"""Who is calling: the environment and actor an RPC acts for.

Authentication is not enforced yet (issue 5): the bearer key is read so clients can already
send it, and every caller acts in the default environment as the anonymous actor.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from vaultd.core.objects import Actor

DEFAULT_ENVIRONMENT = "default"
ANONYMOUS = Actor(id="anonymous", name="anonymous")


@dataclass(frozen=True, slots=True)
class Caller:
    environment_id: str
    actor: Actor


def caller_of(context: grpc.aio.ServicerContext) -> Caller:
    return Caller(DEFAULT_ENVIRONMENT, ANONYMOUS)
