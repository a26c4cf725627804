"""The asyncio load generator: N calls in flight, closed loop, latency of every call.

Closed loop: each of N tasks sends its next call as soon as its last one answered, so N is the
number in flight. Latency is measured around each await, so above the generator's own
saturation point (one Python process on a shared core) it includes the generator's queueing;
h2load is the throughput number, this one the percentiles.

The same loop drives gRPC (raw bytes through grpc.aio), OpenBao over HTTP (aiohttp), and the
in-process backend floor, so every target sees the same generator.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from bench.workload import Metadata

Call = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    # Requests per second in each one-second window: their spread is this point's noise.
    window_rps: list[float]
    first_error: str | None

    @property
    def window_cv(self) -> float:
        """Coefficient of variation of the one-second windows (0.05 = 5 %)."""
        if len(self.window_rps) < 2 or not statistics.fmean(self.window_rps):
            return 0.0
        return statistics.stdev(self.window_rps) / statistics.fmean(self.window_rps)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


async def closed_loop(
    call: Call,
    concurrency: int,
    duration: float | None = None,
    warmup: float = 0.0,
    total: int | None = None,
) -> LoadResult:
    """Run `call(i)` from `concurrency` tasks, either for `warmup` + `duration` seconds
    (measuring the last `duration`) or for exactly `total` calls."""
    if (duration is None) == (total is None):
        raise ValueError("give one of duration and total")
    latencies: list[float] = []
    windows: dict[int, int] = {}
    errors = 0
    first_error: str | None = None
    counter = 0
    started = time.perf_counter()
    measure_from = started + warmup
    stop_at = measure_from + duration if duration is not None else math.inf

    async def worker() -> None:
        nonlocal counter, errors, first_error
        while True:
            i = counter
            if total is not None and i >= total:
                return
            counter += 1
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                await call(i)
            except Exception as exc:  # a failed call is counted, and the run goes on
                errors += 1
                first_error = first_error or _describe(exc)
                continue
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= stop_at:
                latencies.append(t1 - t0)
                window = int(t1 - measure_from)
                windows[window] = windows.get(window, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    ended = time.perf_counter()
    seconds = (stop_at if duration is not None else ended) - measure_from
    latencies.sort()
    full_windows = [float(windows.get(w, 0)) for w in range(int(seconds))]
    return LoadResult(
        requests=len(latencies),
        errors=errors,
        seconds=seconds,
        rps=len(latencies) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p90_ms=percentile(latencies, 0.90) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        mean_ms=statistics.fmean(latencies) * 1000 if latencies else math.nan,
        window_rps=full_windows,
        first_error=first_error,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


class GrpcLoad:
    """Raw-bytes unary calls to one method over `connections` separate HTTP/2 connections.

    Separate connections (a local subchannel pool each) let the kernel spread them over the
    workers sharing the port through SO_REUSEPORT; one channel would pin one worker.
    """

    def __init__(self, target: str, connections: int, metadata: Metadata) -> None:
        self._channels = [
            grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(connections)
        ]
        self._metadata = tuple(metadata)

    def call(self, path: str, body: Callable[[int], bytes]) -> Call:
        # No (de)serializers: bytes go out and come back as they are.
        methods: list[Any] = [ch.unary_unary(path) for ch in self._channels]
        metadata = self._metadata
        count = len(methods)

        async def one(i: int) -> None:
            await methods[i % count](body(i), metadata=metadata, timeout=60)

        return one

    async def ready(self) -> None:
        for channel in self._channels:
            await asyncio.wait_for(channel.channel_ready(), 30)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
