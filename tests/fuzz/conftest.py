"""The fuzz suite's servers, its hypothesis profile, and the counts it prints at the end.

The fuzz tests get their own vaultd per store, built like tests/server's `running` but on a
Redis database of their own: thousands of hostile objects, KEKs and API keys stay out of what
the other suites list and count, and two servers with different root keys never meet over one
KEK (each would find the other's KEK unwrappable: FAILED_PRECONDITION).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.strategies import VALUE_LIMIT
from tests.server.conftest import Running, settings_for
from tests.support.auth import BOOTSTRAP_API_KEY, add_api_key, channel
from vaultd.server import start

FUZZ_REDIS_DB = 8


@pytest.fixture(scope="session", params=["sqlite", "redis"])
async def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    redis_url = None
    if request.param == "redis":
        shared = request.getfixturevalue("redis_server").url
        redis_url = shared.rsplit("/", 1)[0] + f"/{FUZZ_REDIS_DB}"
    data_dir = tmp_path_factory.mktemp(f"fuzz-vaultd-{request.param}")
    vaultd = await start(settings_for(data_dir, redis_url, max_value_bytes=VALUE_LIMIT))
    # Bootstrap only happens on an empty store: make sure the key exists either way.
    await add_api_key(vaultd.store, BOOTSTRAP_API_KEY, name="bootstrap")
    client = channel(f"127.0.0.1:{vaultd.port}")
    yield Running(request.param, vaultd, data_dir, redis_url, client)
    await client.close()
    await vaultd.stop(None)


# Deterministic and bounded for CI: the same examples on every run, no example database (so
# nothing to keep out of git), no per-example deadline (a first KEK per context can take a
# moment). VAULTD_FUZZ_EXAMPLES raises the count for a longer local hunt; VAULTD_FUZZ_RANDOM=1
# draws new examples each run.
settings.register_profile(
    "vaultd-fuzz",
    max_examples=int(os.environ.get("VAULTD_FUZZ_EXAMPLES", "16")),
    derandomize=os.environ.get("VAULTD_FUZZ_RANDOM") != "1",
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


class FuzzStats:
    """Requests sent and statuses seen, per store, RPC and kind of request."""

    def __init__(self) -> None:
        self.statuses: defaultdict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)

    def record(self, store: str, rpc: str, kind: str, status: str) -> None:
        """`kind`: "structured" or "raw"."""
        self.statuses[(store, rpc, kind)][status] += 1

    def sent(self) -> dict[tuple[str, str, str], Counter[str]]:
        """The requests that went to the server."""
        return dict(self.statuses)

    def for_store(self, store: str) -> dict[str, Counter[str]]:
        """Statuses per RPC on one store, structured and raw requests together."""
        per_rpc: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for (s, rpc, _), seen in self.sent().items():
            if s == store:
                per_rpc[rpc] += seen
        return per_rpc

    def lines(self) -> list[str]:
        if not self.statuses:
            return []
        overall: Counter[str] = sum(self.sent().values(), Counter())
        out = [f"{overall.total()} requests fuzzed"]
        out.append(f"{'store':<7} {'rpc':<42} {'kind':<10} {'count':>5}  statuses")
        for (store, rpc, kind), seen in sorted(self.statuses.items()):
            shown = ", ".join(f"{code} {n}" for code, n in seen.most_common())
            out.append(f"{store:<7} {rpc:<42} {kind:<10} {seen.total():>5}  {shown}")
        out.append("all statuses: " + ", ".join(f"{c} {n}" for c, n in overall.most_common()))
        return out


STATS = FuzzStats()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = STATS.lines()
    if lines:
        terminalreporter.section("vaultd fuzz: requests fuzzed and statuses seen")
        for line in lines:
            terminalreporter.write_line(line)
