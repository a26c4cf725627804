"""Calls and errors per minute, from the process's own Prometheus counters.

A sampler reads the total of vaultd_rpc_handled (all calls, and those whose code is not OK)
every SAMPLE_SECONDS and keeps the last WINDOW of samples; the overview shows the rate between
neighbouring samples as a chart, and the count over the last minute as numbers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vaultd.metrics import Metrics

SAMPLE_SECONDS = 10.0
WINDOW = 181  # 30 minutes of samples, and the one before the first interval
_HANDLED = "vaultd_rpc_handled_total"


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    calls: float
    errors: float


def totals(metrics: Metrics) -> tuple[float, float]:
    """(calls, calls that did not end OK) since the process started."""
    calls = errors = 0.0
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == _HANDLED:
                calls += sample.value
                if sample.labels.get("code") != "OK":
                    errors += sample.value
    return calls, errors


class Rates:
    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._clock = clock
        self.samples: deque[Sample] = deque(maxlen=WINDOW)
        self.sample()

    def sample(self) -> Sample:
        calls, errors = totals(self._metrics)
        taken = Sample(self._clock(), calls, errors)
        self.samples.append(taken)
        return taken

    async def run(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            self.sample()

    def last_minute(self) -> tuple[float, float]:
        """Calls and errors since the oldest sample of the last minute (or since start)."""
        now = Sample(self._clock(), *totals(self._metrics))
        base = next((s for s in self.samples if now.at - s.at <= 60), now)
        return now.calls - base.calls, now.errors - base.errors

    def per_minute(self) -> list[tuple[float, float, float]]:
        """(seconds ago, calls/min, errors/min) for each interval between samples."""
        points = []
        now = self._clock()
        pairs = list(zip(list(self.samples)[:-1], list(self.samples)[1:], strict=True))
        for before, after in pairs:
            span = max(after.at - before.at, 1e-9)
            points.append(
                (
                    now - after.at,
                    (after.calls - before.calls) * 60 / span,
                    (after.errors - before.errors) * 60 / span,
                )
            )
        return points
