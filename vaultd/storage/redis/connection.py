"""The Redis store's plumbing, shared by its aggregate mixins: the client, its scripts, the
error guard, replica-confirmed writes and auto-pipelining.

The client made by `from_url` does not retry commands: a reply lost to a dropped connection
leaves the write's outcome unknown, and a replayed create would report NameTaken for its own
name. Such failures surface as StoreUnavailable, which the caller may retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, ParamSpec, Self, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from vaultd.storage.errors import StoreUnavailable
from vaultd.storage.records import Durability
from vaultd.storage.redis import context_scripts, purge_scripts, scripts
from vaultd.storage.redis.autopipeline import AutoPipeline
from vaultd.storage.redis.durability import read_persistence, summarize
from vaultd.storage.redis.urls import RedisClient, redis_client, wait_replicas

REPLICA_TIMEOUT_MS = 2000
DEFAULT_TIMEOUT_SECONDS = 5.0
SCAN_BUDGET = 256
"""Most ids one scan step examines, so a filtered scan of a huge environment never holds Redis
for more than a moment; the scan continues in further steps."""

# BusyLoadingError (a restarted server still reading its data) is a ConnectionError, and
# MasterDownError a ClusterDownError. A read-only replica (failover) or a full memory cannot take
# the write now, but may soon: the caller should retry, as for a network failure.
_UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
)

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)


def available(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn Redis being unreachable, loading, failing over, full or slow into StoreUnavailable.

    A method of RedisStore: the whole operation, however many commands it sends, is bounded by
    the store's timeout, so a call with no deadline of its own still fails in bounded time.
    """

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        timeout: float | None = getattr(args[0], "timeout", None)
        try:
            async with asyncio.timeout(timeout):
                return await method(*args, **kwargs)
        except TimeoutError:
            raise StoreUnavailable(
                f"redis did not answer within {timeout:g}s (store_timeout_seconds)", "TIMEOUT"
            ) from None
        except _UNAVAILABLE as exc:
            # The class name only: enough to tell a timeout from a refusal, and never a value.
            raise StoreUnavailable(
                f"redis is unavailable ({type(exc).__name__})", _cause(exc)
            ) from exc
        except redis_errors.ResponseError as exc:
            if not str(exc).startswith("MISCONF"):
                raise
            # Redis refuses writes while it cannot persist them (its disk is full, say).
            cause = "ENOSPC" if "No space left" in str(exc) else "MISCONF"
            log.error("redis refuses writes: it cannot persist them (%s)", cause)
            raise StoreUnavailable(f"redis cannot persist writes ({cause})", cause) from exc

    return wrapper


def _cause(error: Exception) -> str:
    """The StoreUnavailable cause for one of the _UNAVAILABLE errors."""
    if isinstance(error, redis_errors.TimeoutError):
        return "TIMEOUT"
    if isinstance(error, redis_errors.ReadOnlyError):
        return "READONLY"
    if isinstance(error, redis_errors.OutOfMemoryError):
        return "OOM"
    if isinstance(error, redis_errors.BusyLoadingError):
        return "LOADING"
    return "UNREACHABLE"


class Scripts:
    """Every script of scripts.py and purge_scripts.py, registered on one client (each is sent
    by its SHA-1, and loaded into Redis on first use)."""

    def __init__(self, client: RedisClient) -> None:
        register = client.register_script
        self.create = register(scripts.CREATE)
        self.get = register(scripts.GET)
        self.list_versions = register(scripts.LIST_VERSIONS)
        self.update = register(scripts.UPDATE)
        self.delete = register(scripts.DELETE)
        self.scan = register(scripts.SCAN)
        self.scan_context = register(context_scripts.SCAN_CONTEXT)
        self.index_object = register(context_scripts.INDEX_OBJECT)
        self.get_contexts = register(context_scripts.GET_CONTEXTS)
        self.get_versions = register(scripts.GET_VERSIONS)
        self.replace_keys = register(scripts.REPLACE_KEYS)
        self.get_keks = register(scripts.GET_KEKS)
        self.add_kek = register(scripts.ADD_KEK)
        self.index_kek = register(scripts.INDEX_KEK)
        self.rewrap_kek = register(scripts.REWRAP_KEK)
        self.set_min_version = register(scripts.SET_MIN_VERSION)
        self.shred_kek = register(scripts.SHRED_KEK)
        self.save_rewrap_job = register(scripts.SAVE_REWRAP_JOB)
        self.add_api_key = register(scripts.ADD_API_KEY)
        self.get_api_key = register(scripts.GET_API_KEY)
        self.revoke_api_key = register(scripts.REVOKE_API_KEY)
        self.list_api_keys = register(scripts.LIST_API_KEYS)
        self.create_identity = register(scripts.CREATE_IDENTITY)
        self.add_root_fingerprints = register(scripts.ADD_ROOT_FINGERPRINTS)
        self.add_byok_key = register(scripts.ADD_BYOK_KEY)
        self.replace_byok_key = register(scripts.REPLACE_BYOK_KEY)
        self.delete_byok_key = register(scripts.DELETE_BYOK_KEY)
        self.admit_new_kek = register(scripts.ADMIT_NEW_KEK)
        self.undelete = register(purge_scripts.UNDELETE)
        self.purge = register(purge_scripts.PURGE)
        self.count_live = register(purge_scripts.COUNT_LIVE)
        self.take_lease = register(purge_scripts.TAKE_LEASE)
        self.release_lease = register(purge_scripts.RELEASE_LEASE)


class RedisConnection:
    """What every aggregate mixin of RedisStore works through; also the StoreConnection part."""

    def __init__(
        self,
        client: RedisClient,
        *,
        scan_budget: int = SCAN_BUDGET,
        wait_replicas: int = 0,
        replica_timeout_ms: int = REPLICA_TIMEOUT_MS,
        timeout: float | None = None,
    ) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RedisStore needs a client with decode_responses=False")
        self._redis = client
        self.timeout = timeout
        """Most seconds one operation may take, all its commands together; None: unbounded."""
        self._scan_budget = scan_budget
        self._wait_replicas = wait_replicas
        self._replica_timeout_ms = replica_timeout_ms
        self._scripts = Scripts(client)
        # The hot path (object get, create, update, audit events) shares round trips between
        # concurrent calls. Not with wait_replicas: WAIT covers only its own connection's
        # writes, so those writes and their WAIT keep to one connection, unpipelined.
        self._auto = AutoPipeline(client) if not wait_replicas else None

    @classmethod
    def from_url(cls, url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Self:
        """A store on one server, a Cluster or a Sentinel-monitored master (urls.py), each
        operation bounded by `timeout` seconds."""
        plain_url, replicas = wait_replicas(url)
        return cls(redis_client(plain_url, timeout), wait_replicas=replicas, timeout=timeout)

    async def _write(
        self,
        script: AsyncScript,
        keys: Sequence[Any],
        args: Sequence[Any],
        changed: Callable[[Any], bool] = bool,
    ) -> Any:
        """Run a write script, and acknowledge what it changed only once enough replicas hold
        it (see urls.py).

        WAIT counts the writes of its own connection, so with wait_replicas the script and its
        WAIT go down one connection in one pipeline (and one round trip). `changed(reply)` says
        whether the script wrote anything; a refusal needs no replica.
        """
        if not self._wait_replicas:
            return await self._script(script, keys, args)
        assert isinstance(self._redis, Redis), "urls.py refuses wait_replicas on a Cluster"
        pipe = self._redis.pipeline(transaction=False)
        # Queued, not sent; the pipeline first loads the script if the server lacks it.
        await script(keys=keys, args=args, client=pipe)
        pipe.wait(self._wait_replicas, self._replica_timeout_ms)
        reply, confirmed = await pipe.execute()
        if changed(reply):
            await self._check_replicas(confirmed)
        return reply

    async def _check_replicas(self, confirmed: int) -> None:
        """StoreUnavailable, saying why, when fewer replicas confirmed a write than required."""
        if confirmed >= self._wait_replicas:
            return
        wanted = self._wait_replicas
        info = await self._redis.info("replication")
        connected = int(info.get("connected_slaves", 0)) if isinstance(info, dict) else -1
        if 0 <= connected < wanted:
            cause = "NO_REPLICA"
            why = f"only {connected} replica(s) connected, wait_replicas={wanted}"
        else:
            cause = "REPLICA_TIMEOUT"
            why = (
                f"{confirmed} of {wanted} replica(s) confirmed within {self._replica_timeout_ms} ms"
            )
        log.warning("a write was not confirmed: %s; its outcome is unknown", why)
        raise StoreUnavailable(f"write not confirmed ({why}); outcome unknown", cause)

    async def _script(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """One script call, auto-pipelined when that is on."""
        if self._auto is not None:
            return await self._auto.script(script, keys, args)
        return await script(keys=list(keys), args=list(args))

    @available
    async def ping(self) -> None:
        await self._redis.ping()

    @available
    async def durability(self) -> Durability:
        return summarize(await read_persistence(self._redis), self._wait_replicas)

    async def close(self) -> None:
        await self._redis.aclose()


def text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()


def as_bytes(value: bytes | str) -> bytes:
    # Replies are bytes (decode_responses is refused); redis-py's types allow str as well.
    return value if isinstance(value, bytes) else value.encode()
