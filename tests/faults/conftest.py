"""Fault tests: each fills a FaultReport, and the counts are printed at the end of the run.

Issue 6 asks CI to show what the fault tests exercised (writes acknowledged, writes verified,
statuses seen), so a test that passes because it did nothing is visible as such.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.faults.load import FaultReport

_REPORTS: dict[str, FaultReport] = {}


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Iterator[FaultReport]:
    """The counts of this test, printed in the terminal summary and kept in the JUnit XML."""
    report = FaultReport()
    _REPORTS[request.node.nodeid] = report
    yield report
    request.node.user_properties.extend(report.as_properties())


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
