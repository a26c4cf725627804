"""Acknowledged means replicated: with wait_replicas, a write no replica confirmed is not done."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ulid import ULID

from testkit.redis_server import RedisServer
from vaultd.storage import KekVersion, RedisStore, StoreUnavailable
from vaultd.storage.redis.urls import redis_client, wait_replicas


def test_wait_replicas_url_parameter() -> None:
    assert wait_replicas("redis://h:1/0?wait_replicas=2") == ("redis://h:1/0", 2)
    assert wait_replicas("redis+sentinel://h:1/m") == ("redis+sentinel://h:1/m", 1)
    assert wait_replicas("redis+sentinel://h:1/m?wait_replicas=0")[1] == 0
    assert wait_replicas("redis://h:1/0?socket_timeout=3")[1] == 0
    with pytest.raises(ValueError, match="whole number"):
        wait_replicas("redis://h:1/0?wait_replicas=many")
    with pytest.raises(ValueError, match="cluster"):
        wait_replicas("redis+cluster://h:1?wait_replicas=1")


def _kek(version: int) -> KekVersion:
    return KekVersion("org", "o1", version, "internal://root", b"wrapped", datetime.now(UTC))


async def test_writes_wait_for_the_replica_and_fail_without_it(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "primary") as primary:
        replica = RedisServer(
            tmp_path / "replica", extra_args=["--replicaof", "127.0.0.1", str(primary.port)]
        )
        with replica:
            url = f"{primary.url}?wait_replicas=1"
            plain, replicas = wait_replicas(url)
            store = RedisStore(redis_client(plain), wait_replicas=replicas, replica_timeout_ms=300)
            kek_id = "kek_" + "0" * 32
            # Replication may take a moment to connect; the first confirmed write proves it is up.
            for _ in range(50):
                try:
                    assert await store.add_kek_version("default", kek_id, _kek(1))
                    break
                except StoreUnavailable:
                    kek_id = "kek_" + ULID().hex[:32].lower()
            else:
                pytest.fail("the replica never confirmed a write")
        # The replica is gone: a write is refused as unavailable rather than acknowledged, and
        # the error says why (no replica connected), not only that the wait ran out.
        other = "kek_" + "1" * 32
        with pytest.raises(StoreUnavailable, match=r"only 0 replica\(s\) connected") as refused:
            await store.add_kek_version("default", other, _kek(1))
        assert refused.value.cause == "NO_REPLICA"
        await store.close()


async def test_no_write_is_acknowledged_while_its_replica_lags(tmp_path: Path) -> None:
    """Concurrent writes with the replica connected but stalled: none is acknowledged.

    WAIT counts only its own connection's writes, so each write and its WAIT share one
    connection (one pipeline). redis-py's pool here hands a task back the connection it just
    used, so sending WAIT separately passed this test too; Redis's documented semantics, not
    this test, are why the write and its WAIT now travel together."""
    with RedisServer(tmp_path / "primary") as primary:
        replica = RedisServer(
            tmp_path / "replica", extra_args=["--replicaof", "127.0.0.1", str(primary.port)]
        )
        with replica:
            plain, _ = wait_replicas(primary.url)
            store = RedisStore(redis_client(plain), wait_replicas=1, replica_timeout_ms=300)
            try:
                for _ in range(50):  # until the replica is connected and confirms
                    try:
                        assert await store.add_kek_version("default", _new_kek_id(), _kek(1))
                        break
                    except StoreUnavailable:
                        await asyncio.sleep(0.1)
                else:
                    pytest.fail("the replica never confirmed a write")
                # Connections whose own writes the replica has confirmed: a WAIT sent down one
                # of them returns at once, whatever another connection wrote since.
                await asyncio.gather(
                    *(store.add_kek_version("default", _new_kek_id(), _kek(1)) for _ in range(40))
                )
                os.kill(replica.pid, signal.SIGSTOP)  # connected, but acknowledging nothing
                try:
                    outcomes = await asyncio.gather(
                        *(
                            store.add_kek_version("default", _new_kek_id(), _kek(1))
                            for _ in range(20)
                        ),
                        return_exceptions=True,
                    )
                finally:
                    os.kill(replica.pid, signal.SIGCONT)
                assert [type(o) for o in outcomes] == [StoreUnavailable] * 20, outcomes
            finally:
                await store.close()


def _new_kek_id() -> str:
    return "kek_" + ULID().hex[:32].lower()
