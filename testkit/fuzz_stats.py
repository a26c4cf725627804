"""The counts the fuzz suite (tests/fuzz) keeps as it sends requests, printed at the end of the
run by its conftest, so a run that fuzzed nothing is visible as such."""

from __future__ import annotations

from collections import Counter, defaultdict


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
