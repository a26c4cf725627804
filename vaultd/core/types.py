"""What every core service shares: who acts, the size a value may have by default, and how a
storage outage reaches a client. Kept apart from any one service so none imports another's
module for a name it merely shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from vaultd.core.errors import BackendUnavailable
from vaultd.storage.errors import StoreUnavailable

DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
"""The largest object value or plaintext accepted unless `max_value_bytes` says otherwise."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: an API key's id and name."""

    id: str
    name: str


@contextmanager
def store_errors() -> Iterator[None]:
    """Storage outages become BACKEND_UNAVAILABLE for the client."""
    try:
        yield
    except StoreUnavailable as exc:
        # The cause (ENOSPC, NO_REPLICA, TIMEOUT, ...) tells the client's operator what is wrong
        # without a trip to the server's log; it never holds a value or a key.
        raise BackendUnavailable(
            f"storage is unavailable ({exc}); retry later", metadata={"cause": exc.cause}
        ) from None
