"""How many failed authentications each peer address may cost (docs/SECURITY.md section 5).

Kept apart from auth.py and ratelimit.py, which both use it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from vaultd.core.ratelimit import TokenBuckets

log = logging.getLogger(__name__)

_MAX_REPORTED_PEERS = 10_000


def peer_host(peer: str) -> str:
    """The address part of a gRPC peer: "ipv4:10.0.0.1:5000" -> "ipv4:10.0.0.1",
    "ipv6:[::1]:5000" -> "ipv6:[::1]"; any other form as it is."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rpartition(":")[0]
    return peer


class FailedAuthentications:
    """A budget of failed authentications per peer address (SECURITY.md section 5).

    Each failed authentication takes a token from its peer's bucket. Once a peer's bucket is
    empty, its calls are refused (RateLimited) before any key lookup and without an audit
    event each, unless they present a key the process already knows to be valid, until the
    bucket refills. So a flood of fresh random tokens costs at most `burst` plus `rate` a
    second store lookups and audit writes per peer, like a flood of one repeated bad token.
    Refusals are counted and reported in one log line per peer and `report_seconds`.
    """

    def __init__(
        self,
        buckets: TokenBuckets[str],
        *,
        report_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buckets = buckets
        self._report_seconds = report_seconds
        self._clock = clock
        # peer -> (refusals not yet reported, when the last report was made)
        self._refused: dict[str, tuple[int, float]] = {}

    def wait(self, peer: str) -> float:
        """Seconds until `peer` may fail again; 0.0 while it has budget left."""
        return self._buckets.peek(peer_host(peer))

    def failed(self, peer: str) -> None:
        self._buckets.take(peer_host(peer))

    def refused(self, peer: str) -> None:
        host = peer_host(peer)
        count, reported = self._refused.get(host, (0, float("-inf")))
        count += 1
        now = self._clock()
        if now - reported >= self._report_seconds:
            log.warning(
                "refused %d call(s) from %s without a key lookup: too many failed "
                "authentications from that address",
                count,
                host,
            )
            count, reported = 0, now
        self._refused[host] = (count, reported)
        if len(self._refused) > _MAX_REPORTED_PEERS:
            self._refused.pop(next(iter(self._refused)))
