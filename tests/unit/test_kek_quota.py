"""KekQuota's bookkeeping on a real store: a call the durable per-key total refuses spends
nothing of the in-process quotas (their tokens and the environment's total are given back)."""

from __future__ import annotations

import pytest
from ulid import ULID

from vaultd.core.errors import KekQuotaExceeded
from vaultd.core.quota import KekQuota, KekQuotaLimits
from vaultd.storage.sqlite import SqliteStore


async def refused(quota: KekQuota, env: str, api_key_id: str) -> str:
    with pytest.raises(KekQuotaExceeded) as caught:
        await quota.admit(env, api_key_id)
    return caught.value.metadata["quota"]


@pytest.mark.parametrize(
    "limits, spent",
    [
        (
            KekQuotaLimits(per_environment_per_minute=3, per_key_total=2),
            "per_environment_per_minute",
        ),
        (KekQuotaLimits(per_environment_total=3, per_key_total=2), "per_environment_total"),
    ],
)
async def test_a_refusal_by_the_key_total_gives_back_what_it_took(
    sqlite_store: SqliteStore, limits: KekQuotaLimits, spent: str
) -> None:
    quota = KekQuota(sqlite_store, limits, clock=lambda: 1000.0)
    env, first, second = f"env_{ULID()}", f"key_{ULID()}", f"key_{ULID()}"
    await quota.admit(env, first)
    await quota.admit(env, first)
    assert await refused(quota, env, first) == "per_key_total"
    assert await sqlite_store.new_keks_of(env, first) == 2
    # The environment's third admission is still there for another key, and only then spent.
    await quota.admit(env, second)
    assert await refused(quota, env, second) == spent
    assert await sqlite_store.new_keks_of(env, second) == 1, "a refused call counts nothing"
