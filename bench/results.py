"""What a run measured: one Point per (target, store, workers, RPC, generator, concurrency).

Targets: "vaultd"; baselines "transport_floor", "backend_floor", "openbao". Generators:
"h2load" (throughput), "asyncio" (throughput and latency percentiles) and, for the backend
floor, "inproc" (the asyncio loop calling the operation directly, no network).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

VAULTD = "vaultd"
TRANSPORT = "transport_floor"
BACKEND = "backend_floor"
OPENBAO = "openbao"


@dataclass
class Point:
    target: str
    store: str | None  # "embedded" | "redis" | None (transport floor, OpenBao)
    workers: int | None
    rpc: str
    generator: str
    concurrency: int
    rps: float = math.nan
    # One figure per repeat (h2load) or per one-second window (asyncio): the noise.
    rps_samples: list[float] = field(default_factory=list)
    p50_ms: float = math.nan
    p90_ms: float = math.nan
    p99_ms: float = math.nan
    mean_ms: float = math.nan
    requests: int = 0
    errors: int = 0
    # How the answers were shown to be real answers, or why they were not.
    check: str = ""
    ok: bool = True
    skipped: str | None = None
    load_average: float = math.nan

    @property
    def spread(self) -> float:
        """(max - min) / mean of the samples: how far apart repeats or windows landed."""
        samples = [s for s in self.rps_samples if s > 0]
        if len(samples) < 2:
            return math.nan
        return (max(samples) - min(samples)) / (sum(samples) / len(samples))

    def usable(self) -> bool:
        return self.ok and self.skipped is None and self.rps > 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Point:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in ("rps", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "load_average"):
            if fields.get(name) is None:
                fields[name] = math.nan
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spread"] = self.spread
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}


def find(
    points: list[Point],
    target: str,
    rpc: str,
    generator: str,
    concurrency: int,
    store: str | None = None,
    workers: int | None = None,
) -> Point | None:
    for p in points:
        if (
            p.target == target
            and p.rpc == rpc
            and p.generator == generator
            and p.concurrency == concurrency
            and p.store == store
            and p.workers == workers
            and p.usable()
        ):
            return p
    return None
