"""Prometheus metrics, served over plain HTTP on --metrics-listen; off unless it is given.

What is measured, and where:
- RPCs: count and latency by method and status code, and calls in flight
  (vaultd.api.observe, the outermost handler wrapper);
- provider calls: count by scheme, operation and outcome, latency by scheme and operation
  (the observer Keyring calls around each wrap and unwrap);
- the KEK cache: hits, misses and loads, read from the cache's own counters at scrape time, so
  the request path pays nothing for them;
- storage: latency by operation, timed by a thin proxy around the Store.

Core and storage import nothing from here: they call a plain callback or are wrapped from the
outside. Each Metrics has its own registry, so several servers in one process never collide.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from vaultd.core.cache import TtlCache
from vaultd.storage import Store

log = logging.getLogger(__name__)

# From half a millisecond (a warm cache hit) to 10 s (a KMS retrying inside a long deadline).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


# Where /metrics listens when no host is named: it tells anyone who can connect which RPCs
# run and how often, without a key, so reaching it from elsewhere must be asked for.
DEFAULT_METRICS_HOST = "127.0.0.1"


def split_host_port(address: str) -> tuple[str, int]:
    """("host", port) from "host:port", "[v6]:port", or a bare "port" / ":port" (loopback);
    ValueError when it is none of these."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host.strip("[]") or DEFAULT_METRICS_HOST, int(port)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Metrics:
    """Every metric vaultd exports, with the hooks that feed them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._rpcs = Counter(
            "vaultd_rpc_handled", "RPCs completed, by method and status code.",
            ("method", "code"), registry=r,
        )  # fmt: skip
        self._rpc_seconds = Histogram(
            "vaultd_rpc_duration_seconds", "RPC latency, by method and status code.",
            ("method", "code"), buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.rpcs_in_flight = Gauge("vaultd_rpc_in_flight", "RPCs being served now.", registry=r)
        self._provider_calls = Counter(
            "vaultd_provider_calls", "Key provider (KMS) calls, by scheme, operation and outcome.",
            ("scheme", "operation", "outcome"), registry=r,
        )  # fmt: skip
        self._provider_seconds = Histogram(
            "vaultd_provider_call_duration_seconds", "Key provider call latency.",
            ("scheme", "operation"), buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._storage_seconds = Histogram(
            "vaultd_storage_duration_seconds", "Store call latency, by operation.",
            ("operation",), buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        ProcessCollector(registry=r)
        # Label lookups take a lock and build a tuple; an RPC pays for one dict lookup instead.
        self._rpc_series: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def rpc_done(self, method: str, code: str, seconds: float) -> None:
        series = self._rpc_series.get((method, code))
        if series is None:
            series = self._rpc_series[(method, code)] = (
                self._rpcs.labels(method, code),
                self._rpc_seconds.labels(method, code),
            )
        series[0].inc()
        series[1].observe(seconds)

    def provider_call(self, scheme: str, operation: str, outcome: str, seconds: float) -> None:
        """A vaultd.core.keyring.ProviderCallObserver."""
        self._provider_calls.labels(scheme, operation, outcome).inc()
        self._provider_seconds.labels(scheme, operation).observe(seconds)

    def watch_kek_cache(self, cache: TtlCache[Any, Any]) -> None:
        self.registry.register(_KekCacheCollector(cache))

    def timed_store(self, store: Store) -> Store:
        """`store`, with the latency of every public coroutine method recorded."""
        return cast(Store, _TimedStore(store, self._storage_seconds))

    def serve(self, address: str) -> MetricsServer:
        """Serve /metrics over HTTP on `address` (HOST:PORT; port 0 picks a free one)."""
        host, port = split_host_port(address)
        if not _is_loopback(host):
            log.warning(
                "metrics on %s are reachable from other hosts without a key; name a loopback "
                "address (or only a port) to keep them local",
                address,
            )
        httpd, _thread = start_http_server(port, host, registry=self.registry)
        return MetricsServer(httpd)


class MetricsServer:
    """The HTTP endpoint's server, running in a daemon thread until closed."""

    def __init__(self, httpd: WSGIServer) -> None:
        self._httpd = httpd

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _KekCacheCollector(Collector):
    def __init__(self, cache: TtlCache[Any, Any]) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        stats = self._cache.stats
        yield CounterMetricFamily(
            "vaultd_kek_cache_hits", "KEK lookups answered from memory.", value=stats.hits
        )
        yield CounterMetricFamily(
            "vaultd_kek_cache_misses", "KEK lookups not in memory.", value=stats.misses
        )
        yield CounterMetricFamily(
            "vaultd_kek_cache_loads",
            "KEK loads from storage and a provider (concurrent misses share one).",
            value=stats.loads,
        )
        yield GaugeMetricFamily(
            "vaultd_kek_cache_entries", "Unwrapped KEKs held in memory.", value=len(self._cache)
        )


class _TimedStore:
    """Forwards everything to the store; public coroutine methods are timed on the way.

    Generic on purpose: a method added to the Store protocol is timed without a change here.
    """

    def __init__(self, store: Store, histogram: Histogram) -> None:
        self._store = store
        self._histogram = histogram

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attribute):
            return attribute
        timed = _timed(attribute, self._histogram.labels(name).observe)
        # Cached on the instance: later lookups find it without coming back here.
        setattr(self, name, timed)
        return timed


def _timed(
    method: Callable[..., Awaitable[Any]], observe: Callable[[float], None]
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            observe(time.perf_counter() - started)

    return timed
