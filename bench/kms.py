"""KMS calls per 10,000 operations, with the KEK cache on and off.

The KMS is the HashiCorp Vault stand-in of the BYOK tests (testkit/standins/hcvault.py): a real
OpenBao dev server behind a counting proxy. Here the proxy also waits `latency` before it
forwards each request, a remote KMS's round trip. One BYOK rule sends every bench org
(`organization_id: org_*`) to that Transit key, so every KEK vaultd touches is a remote one.

Per RPC: vaultd is restarted over the same store (KEKs exist, the cache is cold), runs exactly
`operations` calls at `concurrency` in flight, and the proxy's count of encrypt + decrypt
requests over that run is the answer. Cache on is the default TTL; off is `ttl_seconds: 0`.
Concurrent misses for one KEK share one provider call even with the cache off (singleflight),
so "off" is at most, not exactly, one call per KEK use.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.loadgen import GrpcLoad, closed_loop
from bench.servers import VaultdServer
from bench.workload import RPCS, Workload, auth_metadata, make_fixture

CACHE_ON_TTL_SECONDS = 300.0


@dataclass(frozen=True)
class KmsResult:
    rpc: str
    kek_cache: str  # "on" | "off"
    ttl_seconds: float
    operations: int
    errors: int
    kms_calls: int
    calls_per_10k: float
    distinct_contexts: int
    added_latency_ms: float
    concurrency: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def standin_available() -> str | None:
    """None when the stand-in can run here, else why not."""
    try:
        import testkit.standins.hcvault  # noqa: F401
    except ImportError as exc:  # needs the dev extra (pytest, hvac) and the repo checkout
        return f"testkit.standins.hcvault is not importable ({exc}); install the dev extra"
    from testkit.standins.hcvault import _bao_binary

    try:
        _bao_binary()
    except RuntimeError as exc:
        return str(exc)
    return None


def delayed_standin(directory: Path, latency: float) -> Any:
    from testkit.standins.hcvault import HcVaultStandIn

    class DelayedStandIn(HcVaultStandIn):
        """Every request the proxy forwards waits `latency` first (the proxy serves each
        connection on its own thread, so concurrent calls wait side by side)."""

        def _on_request(self, method: str, path: str) -> bytes | None:
            time.sleep(latency)
            return super()._on_request(method, path)

    return DelayedStandIn(directory)


async def measure(
    directory: Path,
    workload: Workload,
    rpcs: list[str],
    operations: int,
    concurrency: int,
    latency: float,
    api_key: str | None,
    on_step: Callable[[str], Awaitable[None]] | None = None,
) -> list[KmsResult]:
    standin = delayed_standin(directory / "openbao", latency)
    results = []
    try:
        key_uri = standin.create_key("bench-kms")
        for cache, ttl in (("on", CACHE_ON_TTL_SECONDS), ("off", 0.0)):
            config: dict[str, object] = {
                "providers": {"hcvault": standin.provider_settings},
                "byok": [{"match": {"organization_id": "org_*"}, "key": key_uri}],
                "kek_cache": {"ttl_seconds": ttl},
            }
            server = VaultdServer(
                directory / f"vaultd-cache-{cache}", config=config, api_key=api_key
            )
            server.start()
            try:
                metadata = auth_metadata(api_key)
                async with grpc.aio.insecure_channel(server.target) as channel:
                    fixture = await make_fixture(channel, workload, metadata)
                for rpc in rpcs:
                    if on_step is not None:
                        await on_step(f"KMS calls: {rpc}, KEK cache {cache}")
                    server.restart()  # a cold cache over KEKs that exist
                    load = GrpcLoad(server.target, min(concurrency, 8), metadata)
                    await load.ready()
                    before = sum(standin.calls.values())
                    outcome = await closed_loop(
                        load.call(RPCS[rpc].path, fixture.body_maker(rpc, f"kms-{cache}")),
                        concurrency,
                        total=operations,
                    )
                    calls = sum(standin.calls.values()) - before
                    await load.close()
                    results.append(
                        KmsResult(
                            rpc=rpc,
                            kek_cache=cache,
                            ttl_seconds=ttl,
                            operations=outcome.requests,
                            errors=outcome.errors,
                            kms_calls=calls,
                            calls_per_10k=calls * 10_000 / max(1, outcome.requests),
                            distinct_contexts=workload.orgs,
                            added_latency_ms=latency * 1000,
                            concurrency=concurrency,
                            seconds=outcome.seconds,
                        )
                    )
            finally:
                server.stop()
    finally:
        standin.close()
    return results
