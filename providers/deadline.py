"""How long provider calls may take: the caller's deadline, carried in a ContextVar.

The API layer knows how long its client will wait; providers, several layers down, decide how
long to wait for a KMS and whether another attempt still fits. The deadline travels between
them as context, not as a parameter through every core function:

    with providers.deadline.answer_within(context.time_remaining()):
        ...  # every provider call in here gives up in time to answer

Inside, `with_retries` (providers/_retry.py) bounds each attempt by what is left and retries
only while an attempt still fits, then raises ProviderUnavailableError — so the caller answers
UNAVAILABLE with a retry hint before its own client's deadline, instead of the client seeing
DEADLINE_EXCEEDED after a hung KMS ate all of it. A part of the time is kept back for that
answer to be built and travel back (ANSWER_RESERVE_*). Outside any `answer_within`, provider
calls are bounded only by their own attempt timeouts and attempt count.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

ANSWER_RESERVE_FRACTION = 0.1
ANSWER_RESERVE_MAX_SECONDS = 0.5
"""Of the time given, a tenth, and at most half a second, is kept for answering."""

_deadline: ContextVar[float | None] = ContextVar("vaultd_provider_deadline", default=None)


@contextmanager
def answer_within(seconds: float | None) -> Iterator[float | None]:
    """Provider calls inside give up (ProviderUnavailableError) in time for the caller to
    answer within `seconds` from now. None: no deadline. Nested, the earlier deadline wins.

    Yields the monotonic time by which provider calls end (None without a deadline).
    """
    outer = _deadline.get()
    deadline = outer
    if seconds is not None:
        reserve = min(ANSWER_RESERVE_MAX_SECONDS, max(seconds, 0.0) * ANSWER_RESERVE_FRACTION)
        mine = time.monotonic() + seconds - reserve
        deadline = mine if outer is None else min(outer, mine)
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left for provider calls in this context (may be <= 0); None without a deadline."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()
