"""A vaultd with its web console on a free port, and headless Chromium driven by Playwright.

The browser is Debian's chromium (/usr/bin/chromium, `apt-get install chromium`), launched by the
Python `playwright` package, so no browser is downloaded. Without it the browser tests are
skipped, unless VAULTD_REQUIRE_BROWSER=1 (set by .ci/run), where its absence fails them.

Screenshots go to the test's tmp dir, or to $VAULTD_CONSOLE_SCREENSHOTS when set (the committed
ones in docs/console/ were made with VAULTD_CONSOLE_SCREENSHOTS=docs/console).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.server.conftest import settings_for
from tests.standins.hcvault import HcVaultStandIn
from tests.support.auth import add_api_key, channel
from vaultd.server import Vaultd, start
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

CHROMIUM = os.environ.get("VAULTD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
READ_ONLY_KEY = "sk_vaultd-tests-console-reader-000000000000000"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}


@dataclass
class ConsoleServer:
    vaultd: Vaultd
    channel: grpc.aio.Channel
    url: str  # http://127.0.0.1:PORT/console
    kms: HcVaultStandIn  # the KMS stand-in run-time BYOK keys live in

    @property
    def admin(self) -> apb_grpc.AdminServiceStub:
        return apb_grpc.AdminServiceStub(self.channel)

    @property
    def objects(self) -> pb_grpc.ObjectServiceStub:
        return pb_grpc.ObjectServiceStub(self.channel)

    async def seed(self, org: str, count: int) -> list[str]:
        """`count` objects under organization_id=org, made over gRPC; their ids."""
        ids = []
        for n in range(count):
            reply = await self.objects.CreateObject(
                pb.CreateObjectRequest(
                    name=f"console-{org}-{n}-{uuid.uuid4().hex[:6]}",
                    value=b"not shown by the console",
                    key_context={"organization_id": org},
                )
            )
            ids.append(reply.metadata.id)
        return ids


@pytest.fixture(scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, hcvault_standin: HcVaultStandIn
) -> AsyncIterator[ConsoleServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("console"),
        None,
        console_listen="127.0.0.1:0",
        access_log=False,
        # A rewrap waits one cache TTL before it scans; paced so its progress can be watched.
        kek_cache={"ttl_seconds": 0.2, "max_entries": 1000},
        keys={"rewrap_versions_per_second": 10},
        # Run-time BYOK keys (added over gRPC by the tests) live in an OpenBao stand-in.
        providers={"hcvault": hcvault_standin.provider_settings},
    )
    vaultd = await start(settings)
    assert vaultd.console is not None
    await add_api_key(vaultd.store, READ_ONLY_KEY, permissions=("objects:read",), name="reader")
    chan = channel(f"127.0.0.1:{vaultd.port}")
    url = f"http://127.0.0.1:{vaultd.console.port}/console"
    yield ConsoleServer(vaultd, chan, url, hcvault_standin)
    await chan.close()
    await vaultd.stop(None)


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
