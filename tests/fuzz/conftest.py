"""The fuzz suite's servers, its hypothesis profile, and the counts it prints at the end.

The fuzz tests get their own vaultd per store, built like tests/conftest.py's `running` but on
a Redis database of their own (testkit/redis_dbs.py): thousands of hostile objects, KEKs and API
keys stay out of what the other suites list and count, and two servers with different root keys
never meet over one KEK (each would find the other's KEK unwrappable: FAILED_PRECONDITION).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings

from testkit.fuzz_stats import STATS
from testkit.fuzz_strategies import VALUE_LIMIT
from testkit.redis_dbs import RedisDb, redis_db_url
from testkit.running import Running, running_vaultd


@pytest.fixture(scope="session", params=["sqlite", "redis"])
async def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    redis_url = None
    if request.param == "redis":
        redis_url = redis_db_url(request.getfixturevalue("redis_server").url, RedisDb.FUZZ)
    data_dir = tmp_path_factory.mktemp(f"fuzz-vaultd-{request.param}")
    async with running_vaultd(
        request.param, data_dir, redis_url, max_value_bytes=VALUE_LIMIT
    ) as server:
        yield server


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = STATS.lines()
    if lines:
        terminalreporter.section("vaultd fuzz: requests fuzzed and statuses seen")
        for line in lines:
            terminalreporter.write_line(line)
