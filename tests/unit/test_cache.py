"""TtlCache: TTL, LRU bound, and one load for concurrent misses."""

from __future__ import annotations

import asyncio

import pytest

from vaultd.core.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_misses_share_one_load() -> None:
    cache: TtlCache[str, int] = TtlCache(60, 10)
    calls = 0
    release = asyncio.Event()

    async def load() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    waiters = [asyncio.create_task(cache.get_or_load("k", load)) for _ in range(200)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == [42] * 200
    assert calls == 1 and cache.stats.loads == 1 and cache.stats.misses == 200


async def test_ttl_expiry_and_lru_bound() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(10, 2, clock=clock)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now most recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    clock.now = 10.0
    assert cache.get("a") is None and cache.get("c") is None


async def test_failed_load_is_not_cached() -> None:
    cache: TtlCache[str, int] = TtlCache(60, 10)
    attempts = 0

    async def flaky() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("provider down")
        return 7

    with pytest.raises(RuntimeError):
        await cache.get_or_load("k", flaky)
    assert await cache.get_or_load("k", flaky) == 7
    assert attempts == 2


async def test_waiters_reload_when_the_loaders_caller_is_cancelled() -> None:
    cache: TtlCache[str, int] = TtlCache(60, 10)
    started = asyncio.Event()

    async def slow() -> int:
        started.set()
        await asyncio.sleep(3600)
        return 1

    async def fast() -> int:
        return 2

    first = asyncio.create_task(cache.get_or_load("k", slow))
    await started.wait()
    second = asyncio.create_task(cache.get_or_load("k", fast))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == 2


async def test_zero_ttl_disables_caching() -> None:
    cache: TtlCache[str, int] = TtlCache(0, 10)
    cache.put("k", 1)
    assert cache.get("k") is None


class _OutOfTime(Exception):
    deadline_reached = True


class _Outage(Exception):
    pass


async def test_waiters_reload_when_the_loaders_caller_ran_out_of_time() -> None:
    """The shared load failed only because its caller's deadline was short: a waiter with time
    left loads again for itself; a plain failure is shared as it is."""
    cache: TtlCache[str, int] = TtlCache(60, 10)
    release = asyncio.Event()

    async def short_deadline() -> int:
        await release.wait()
        raise _OutOfTime()

    async def fine() -> int:
        return 5

    first = asyncio.create_task(cache.get_or_load("k", short_deadline))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get_or_load("k", fine))
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(_OutOfTime):
        await first
    assert await second == 5

    async def down() -> int:
        await release.wait()
        raise _Outage()

    release.clear()
    cache.clear()
    first = asyncio.create_task(cache.get_or_load("j", down))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get_or_load("j", fine))
    await asyncio.sleep(0)
    release.set()
    for task in (first, second):
        with pytest.raises(_Outage):
            await task


async def test_grace_serves_an_expired_value_only_on_accepted_errors_and_only_inside_it() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(
        10, 10, clock=clock, grace_seconds=30, serve_stale_on=lambda e: isinstance(e, _Outage)
    )
    cache.put("k", 1)

    async def down() -> int:
        raise _Outage()

    async def refused() -> int:
        raise RuntimeError("denied")

    clock.now = 15.0
    assert cache.get("k") is None, "past the TTL it is no hit"
    assert await cache.get_or_load("k", down) == 1
    assert cache.stats.stale_served == 1
    with pytest.raises(RuntimeError):
        await cache.get_or_load("k", refused)
    clock.now = 40.0
    with pytest.raises(_Outage):
        await cache.get_or_load("k", down)


async def test_discard_where_drops_a_stale_entry_too() -> None:
    clock = Clock()
    cache: TtlCache[tuple[str, str], int] = TtlCache(
        10, 10, clock=clock, grace_seconds=30, serve_stale_on=lambda e: True
    )
    cache.put(("a", "x"), 1)
    cache.put(("b", "x"), 2)
    clock.now = 15.0
    assert cache.discard_where(lambda key: key[0] == "a") == 1

    async def down() -> int:
        raise _Outage()

    with pytest.raises(_Outage):
        await cache.get_or_load(("a", "x"), down)
    assert await cache.get_or_load(("b", "x"), down) == 2
