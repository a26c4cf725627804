"""Console sessions: a random id in an HttpOnly cookie, everything else in this process.

The cookie carries 32 random bytes and nothing else; the server keeps, under the id's hash,
which API key signed in, its environment, the CSRF token of the session and when it ends. The
API key's secret is checked once at sign-in and never kept. A session ends at sign-out, at its
fixed lifetime (SESSION_SECONDS, not extended by use), or as soon as its key is revoked
(checked on every request). Sessions do not survive a restart: sign in again.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from vaultd.console.services import Signed

SESSION_SECONDS = 30 * 60
MAX_SESSIONS = 1000
"""Oldest sessions are dropped past this many: memory stays bounded whatever sign-ins cost."""


@dataclass(frozen=True, slots=True)
class Session:
    who: Signed
    csrf: str
    expires_at: float


def _digest(token: str) -> str:
    # Kept by hash, so a dump of this process's memory does not hold live cookie values.
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._by_digest: dict[str, Session] = {}
        self._clock = clock

    def open(self, who: Signed) -> tuple[str, Session]:
        """A new session for `who`: the cookie value, and the session."""
        self._drop_expired()
        while len(self._by_digest) >= MAX_SESSIONS:
            self._by_digest.pop(next(iter(self._by_digest)))
        token = secrets.token_urlsafe(32)
        session = Session(who, secrets.token_urlsafe(32), self._clock() + SESSION_SECONDS)
        self._by_digest[_digest(token)] = session
        return token, session

    def find(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._by_digest.get(_digest(token))
        if session is None:
            return None
        if session.expires_at <= self._clock():
            self.close(token)
            return None
        return session

    def close(self, token: str | None) -> None:
        if token:
            self._by_digest.pop(_digest(token), None)

    def close_key(self, api_key_id: str) -> None:
        """End every session of a key (it was revoked)."""
        for digest, session in list(self._by_digest.items()):
            if session.who.api_key_id == api_key_id:
                del self._by_digest[digest]

    def _drop_expired(self) -> None:
        now = self._clock()
        for digest, session in list(self._by_digest.items()):
            if session.expires_at <= now:
                del self._by_digest[digest]
