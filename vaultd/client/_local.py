"""Local encrypt and decrypt, written once for both clients.

Each is a generator that yields the Call it needs answered and receives the parsed result, so the
same steps drive a blocking channel (`run`) and an asyncio one (`run_async`). The crypto is
vaultd.core.blob's, the code the server's Encrypt and Decrypt use, so both write one format.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from vaultd.client import _rpc
from vaultd.client.errors import from_core_error
from vaultd.client.models import DataKey
from vaultd.core.blob import LocalBlob, LocalSealer, open_local, seal_local
from vaultd.core.errors import VaultError

T = TypeVar("T")
Flow = Generator[_rpc.Call[Any], Any, T]
ContextKey = tuple[tuple[str, str], ...]


@contextmanager
def _local_errors() -> Iterator[None]:
    """vaultd.core's errors as the client's exceptions, as if the server had refused."""
    try:
        yield
    except VaultError as exc:
        raise from_core_error(exc) from None


class DataKeyCache:
    """Data keys for encrypt, per key context, reused for `ttl` seconds.

    Reuse saves a CreateDataKey round trip per encrypt. The cost: blobs sealed within one TTL
    share a data key (random 96-bit IVs keep that safe far beyond any TTL's worth of calls), and
    a revoked tenant key stops new encrypts only once the cached key expires.
    """

    def __init__(
        self,
        ttl: float,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        committing: bool = True,
    ) -> None:
        self._ttl = ttl
        self._committing = committing
        self._max_entries = max_entries
        self._clock = clock
        self._keys: OrderedDict[ContextKey, tuple[float, DataKey, LocalSealer]] = OrderedDict()
        # The sync client may be shared by threads; the lock only guards the dict.
        self._lock = threading.Lock()

    @staticmethod
    def _key(key_context: Mapping[str, str]) -> ContextKey:
        return tuple(sorted(key_context.items()))

    def get(self, key_context: Mapping[str, str]) -> DataKey | None:
        with self._lock:
            found = self._keys.get(self._key(key_context))
            if found is None or found[0] <= self._clock():
                return None
            return found[1]

    def sealer(self, key_context: Mapping[str, str]) -> LocalSealer | None:
        """What seals under the context's cached data key, made when the key was cached."""
        found = self._keys.get(self._key(key_context))  # a dict read: atomic under the GIL
        if found is None or found[0] <= self._clock():
            return None
        return found[2]

    def put(self, key_context: Mapping[str, str], key: DataKey) -> None:
        sealer = LocalSealer(key.key, key.encrypted_keys, self._committing)
        with self._lock:
            context_key = self._key(key_context)
            self._keys[context_key] = (self._clock() + self._ttl, key, sealer)
            self._keys.move_to_end(context_key)  # the oldest entry goes first when full
            while len(self._keys) > self._max_entries:
                self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)


def encrypt(
    data: bytes,
    key_context: Mapping[str, str],
    associated_data: bytes | None,
    cache: DataKeyCache | None,
    committing: bool = True,
) -> Flow[bytes]:
    """Seal `data` under a data key of `key_context` into the local-encryption blob: the
    key-committing variant unless `committing` is False (the WorkOS layout)."""
    sealer = cache.sealer(key_context) if cache is not None else None
    if sealer is not None:
        return sealer.seal(data, associated_data or b"")
    key = yield _rpc.create_data_key(key_context)
    if cache is not None:
        cache.put(key_context, key)
    return seal_local(key.key, key.encrypted_keys, data, associated_data or b"", committing)


def cached_encrypt(
    data: bytes,
    key_context: Mapping[str, str],
    associated_data: bytes | None,
    cache: DataKeyCache | None,
) -> bytes | None:
    """`encrypt` without a flow when the context's data key is cached; None when it is not."""
    sealer = cache.sealer(key_context) if cache is not None else None
    return None if sealer is None else sealer.seal(data, associated_data or b"")


def decrypt(
    blob: bytes, associated_data: bytes | None, require_commitment: bool = False
) -> Flow[bytes]:
    """Open a local-encryption blob: parse it here, one DecryptDataKey, open it here. Either
    variant, unless `require_commitment` refuses the WorkOS layout."""
    with _local_errors():
        parsed = LocalBlob.parse(blob)
    key: DataKey = yield _rpc.decrypt_data_key(parsed.encrypted_keys)
    with _local_errors():
        return open_local(key.key, parsed, associated_data or b"", require_commitment)


def run(flow: Flow[T], invoke: Callable[[_rpc.Call[Any]], Any]) -> T:
    """Drive a flow, answering each Call it yields with a blocking `invoke`."""
    try:
        call = next(flow)
        while True:
            call = flow.send(invoke(call))
    except StopIteration as done:
        result: T = done.value
        return result


async def run_async(flow: Flow[T], invoke: Callable[[_rpc.Call[Any]], Awaitable[Any]]) -> T:
    """Drive a flow, answering each Call it yields with an awaited `invoke`."""
    try:
        call = next(flow)
        while True:
            call = flow.send(await invoke(call))
    except StopIteration as done:
        result: T = done.value
        return result
