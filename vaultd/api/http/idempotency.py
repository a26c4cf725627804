"""Idempotency-Key on object creation: a retried POST gets the first answer, not a second try.

The WorkOS Python SDK sends an Idempotency-Key with every POST, and both SDKs retry on
timeouts and some 5xx answers. For `POST /vault/v1/kv` a retry after a lost answer would
otherwise meet 409 (the name is taken, by its own first attempt). So the first successful
answer is kept, per caller (the SHA-256 of the Authorization header, so one key's entries are
never another's) and Idempotency-Key, and a repeat within the TTL gets it again, without a
second call. A repeat that arrives while the first is running waits for it. The same key with
a different body is refused (422 IDEMPOTENCY_KEY_REUSED). Failures are not kept: retrying a
failed create runs it again, which is what the caller wants.

Only metadata (ids, names, contexts) is kept, never a value: a create's answer holds none.
Data-key POSTs are not kept either: their answers hold plaintext keys, and repeating them is
harmless (another data key; the same key decrypted again).

The entries live in this process. Under `--workers N` a retry can reach another worker, which
runs the create again and answers 409 NAME_TAKEN: never a second object.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vaultd.api.http.calls import Metadata
from vaultd.api.http.errors import HttpError

if TYPE_CHECKING:
    from vaultd.api.http.app import Response

_KEY_LIMIT = 255  # longer keys are refused rather than hashed: no client needs more


@dataclass
class Replay:
    key: bytes
    body_hash: bytes
    cached: Response | None = None
    done: asyncio.Future[Response | None] | None = field(default=None)


@dataclass
class _Entry:
    body_hash: bytes
    expires: float
    response: Response | None = None
    done: asyncio.Future[Response | None] | None = None


class IdempotencyKeys:
    def __init__(
        self,
        ttl_seconds: float = 3600.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def begin(
        self, metadata: Metadata, path: str, idempotency_key: str, body: bytes
    ) -> Replay | HttpError:
        """A Replay to run the call under (its `cached` answer, if one is kept), or the error
        for a key reused with another body."""
        if len(idempotency_key) > _KEY_LIMIT:
            return HttpError(
                400, "INVALID_REQUEST", f"Idempotency-Key is longer than {_KEY_LIMIT} characters"
            )
        caller = hashlib.sha256(
            b"\n".join(str(v).encode() for k, v in metadata if k == "authorization")
        ).digest()
        key = hashlib.sha256(b"\0".join((caller, path.encode(), idempotency_key.encode()))).digest()
        body_hash = hashlib.sha256(body).digest()
        now = self._clock()
        self._expire(now)
        entry = self._entries.get(key)
        if entry is not None and entry.body_hash != body_hash:
            return HttpError(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used with a different request body",
            )
        if entry is not None and entry.response is not None:
            return Replay(key, body_hash, cached=entry.response)
        if entry is not None and entry.done is not None:
            return Replay(key, body_hash, done=entry.done)
        self._entries[key] = _Entry(
            body_hash, now + self._ttl, done=asyncio.get_running_loop().create_future()
        )
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return Replay(key, body_hash)

    async def wait(self, replay: Replay) -> Response | None:
        """For a repeat that found the first still running: its answer, if it succeeded."""
        assert replay.done is not None
        return await asyncio.shield(replay.done)

    def finish(self, replay: Replay, response: Response | None) -> None:
        """The first call's end: keep a success; forget a failure so a retry runs again."""
        entry = self._entries.get(replay.key)
        if entry is None or entry.done is None:
            return
        done = entry.done
        if response is not None and 200 <= response.status < 300:
            entry.response, entry.done = response, None
        else:
            del self._entries[replay.key]
        if not done.done():
            done.set_result(entry.response)

    def _expire(self, now: float) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires > now or entry.done is not None:
                break
            del self._entries[key]
