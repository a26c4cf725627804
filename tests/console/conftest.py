"""A vaultd with its web console on a free port, and headless Chromium driven by Playwright.

Without Debian's chromium the browser tests are skipped, unless VAULTD_REQUIRE_BROWSER=1 (set by
.ci/run), where its absence fails them (testkit/console.py says where the browser comes from).

Screenshots go to the test's tmp dir, or to $VAULTD_CONSOLE_SCREENSHOTS when set (the committed
ones in docs/console/ were made with VAULTD_CONSOLE_SCREENSHOTS=docs/console).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from testkit.auth import add_api_key
from testkit.console import CHROMIUM, HAVE_CHROMIUM, READ_ONLY_KEY, ConsoleServer
from testkit.running import running_vaultd
from testkit.standins.hcvault import HcVaultStandIn


@pytest.fixture(scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, hcvault_standin: HcVaultStandIn
) -> AsyncIterator[ConsoleServer]:
    async with running_vaultd(
        "sqlite",
        tmp_path_factory.mktemp("console"),
        None,
        console_listen="127.0.0.1:0",
        access_log=False,
        # A rewrap waits one cache TTL before it scans; paced so its progress can be watched.
        kek_cache={"ttl_seconds": 0.2, "max_entries": 1000},
        keys={"rewrap_versions_per_second": 10},
        # Run-time BYOK keys (added over gRPC by the tests) live in an OpenBao stand-in.
        providers={"hcvault": hcvault_standin.provider_settings},
    ) as running:
        console = running.vaultd.console
        assert console is not None
        await add_api_key(
            running.vaultd.store, READ_ONLY_KEY, permissions=("objects:read",), name="reader"
        )
        url = f"http://127.0.0.1:{console.port}/console"
        yield ConsoleServer(running.vaultd, running.channel, url, hcvault_standin)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        if os.environ.get("VAULTD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no chromium at {CHROMIUM}: apt-get install chromium")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield browser
        await browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("VAULTD_CONSOLE_SCREENSHOTS") or tmp_path / "shots")
    target.mkdir(parents=True, exist_ok=True)
    return target
