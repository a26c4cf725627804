"""Fault tests: each fills a FaultReport, and the counts are printed at the end of the run; and
the `kms` fixture, a vaultd before a slow KMS stand-in (testkit/slow_kms.py).

Issue 6 asks CI to show what the fault tests exercised (writes acknowledged, writes verified,
statuses seen), so a test that passes because it did nothing is visible as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from testkit.fault_load import API_KEY, FaultReport
from testkit.slow_kms import TENANT_ITEM, TENANT_PREFIX, Kms
from testkit.slow_proxy import SlowProxy
from testkit.standins.gcp import GcpKmsStandIn
from vaultd.server import start
from vaultd.settings import ByokRuleSettings, Settings

_REPORTS: dict[str, FaultReport] = {}


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Iterator[FaultReport]:
    """The counts of this test, printed in the terminal summary and kept in the JUnit XML."""
    report = FaultReport()
    _REPORTS[request.node.nodeid] = report
    yield report
    request.node.user_properties.extend(report.as_properties())


@pytest.fixture
async def kms(tmp_path: Path, fault_report: FaultReport) -> AsyncIterator[Kms]:
    async with contextlib.AsyncExitStack() as cleanup:
        standin = GcpKmsStandIn()
        cleanup.push_async_callback(asyncio.to_thread, standin.close)
        proxy = SlowProxy(standin.port)
        await proxy.start()
        cleanup.push_async_callback(proxy.close)
        key_uri = standin.create_key(f"faults-{uuid.uuid4().hex[:8]}")
        settings = Settings(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "vaultd",
            providers={"gcp-kms": {"endpoint": f"127.0.0.1:{proxy.port}", "insecure": True}},
            byok=[ByokRuleSettings(match={TENANT_ITEM: f"{TENANT_PREFIX}*"}, key=key_uri)],
            bootstrap_api_key=API_KEY,
            log_level="error",
        )
        vaultd = await start(settings)
        cleanup.push_async_callback(vaultd.stop, None)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{vaultd.port}")
        cleanup.push_async_callback(channel.close)
        rig = Kms(standin, proxy, vaultd, channel, fault_report)
        # A first object under the internal key (no BYOK item): which environment the API key
        # acts in, for looking at the store directly.
        first, status, _ = await rig.create(f"env-{uuid.uuid4().hex}", {"app": "faults"})
        assert first is not None, status
        rig.environment_id = first.metadata.environment_id
        yield rig


@dataclass
class _Totals:
    acknowledged: int = 0
    verified: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _REPORTS:
        return
    terminalreporter.section("fault tests: counts exercised")
    totals = _Totals()
    for nodeid, report in _REPORTS.items():
        terminalreporter.write_line(f"{nodeid}\n    {report.summary()}")
        totals.acknowledged += report.writes_acknowledged
        totals.verified += report.writes_verified
        totals.statuses.update(report.statuses)
    statuses = ", ".join(f"{k}={v}" for k, v in sorted(totals.statuses.items()))
    terminalreporter.write_line(
        f"total: writes acknowledged={totals.acknowledged} "
        f"writes verified={totals.verified} statuses seen: {statuses}"
    )
