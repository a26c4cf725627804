"""Turning points into the terminal table, results.json and throughput.png.

`python -m bench.report bench/out/results.json [--plot FILE]` prints the table (and redraws
the plot) again from a saved run, also from one cut short.

Ratios are vaultd over a baseline at the same concurrency (and the same workers for the
transport floor, the same store for the backend floor), each side measured by the same
generator: h2load against h2load where both have it, otherwise asyncio against asyncio (marked
"a"). The backend floor runs in process, so its ratio is vaultd's best throughput (h2load, else
asyncio) over the floor's: the share of the raw storage + crypto rate vaultd delivers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.results import BACKEND, OPENBAO, TRANSPORT, VAULTD, Point, find
from bench.workload import RPCS


def throughput(point: Point | None) -> float:
    return point.rps if point is not None and point.usable() else math.nan


def _pair(
    points: list[Point],
    mine: Point,
    target: str,
    store: str | None = None,
    workers: int | None = None,
) -> tuple[float, str]:
    """(ratio, generator) preferring h2load on both sides, else asyncio on both."""
    for generator in ("h2load", "asyncio"):
        a = find(points, VAULTD, mine.rpc, generator, mine.concurrency, mine.store, mine.workers)
        b = find(points, target, mine.rpc, generator, mine.concurrency, store, workers)
        if a is not None and b is not None:
            return a.rps / b.rps, generator
    return math.nan, ""


def ratio_rows(points: list[Point]) -> list[dict[str, Any]]:
    rows = []
    for p in points:
        if p.target != VAULTD or p.generator != "asyncio":
            continue
        rpc, c = p.rpc, p.concurrency
        transport, t_generator = _pair(points, p, TRANSPORT, workers=p.workers)
        bao, b_generator = _pair(points, p, OPENBAO)
        best = find(points, VAULTD, rpc, "h2load", c, p.store, p.workers) or p
        floor = find(points, BACKEND, rpc, "inproc", c, store=p.store)
        rows.append(
            {
                "store": p.store,
                "workers": p.workers,
                "rpc": rpc,
                "concurrency": c,
                "vs_transport_floor": _num(transport),
                "vs_transport_floor_generator": t_generator or None,
                "vs_backend_floor": _num(throughput(best) / throughput(floor)),
                "vs_backend_floor_generator": f"{best.generator} / inproc",
                "vs_openbao": _num(bao),
                "vs_openbao_generator": b_generator or None,
            }
        )
    return rows


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


def _fmt(x: float | None, spec: str = ".0f", mark: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:{spec}}{mark}"


def _ratio(row: dict[str, Any], key: str) -> str:
    mark = "a" if row.get(f"{key}_generator") == "asyncio" else ""
    return _fmt(row[key], ".2f", mark)


def table(points: list[Point], rows: list[dict[str, Any]]) -> str:
    """The terminal table: vaultd per store and workers, then the baselines."""
    lines = []
    header = (
        f"{'RPC':<15}{'conc':>5}{'h2load/s':>10}{'±':>5}{'asyncio/s':>10}{'p50ms':>8}"
        f"{'p90ms':>8}{'p99ms':>8}{'err':>5}  {'xTransp':>8}{'xBackend':>9}{'xOpenBao':>9}"
    )
    groups = sorted({(p.store or "", p.workers or 0) for p in points if p.target == VAULTD})
    by_key = {(r["store"], r["workers"], r["rpc"], r["concurrency"]): r for r in rows}
    for store, workers in groups:
        lines += ["", f"vaultd, {store} store, {workers} worker(s)", header]
        for rpc in RPCS:
            for p in _each(points, VAULTD, rpc, store, workers):
                h2 = find(
                    points, VAULTD, rpc, "h2load", p.concurrency, store=store, workers=workers
                )
                row = by_key.get((store, workers, rpc, p.concurrency), {})
                lines.append(
                    f"{rpc:<15}{p.concurrency:>5}{_fmt(throughput(h2)):>10}"
                    f"{_spread(h2):>5}{_fmt(throughput(p)):>10}{_fmt(p.p50_ms, '.2f'):>8}"
                    f"{_fmt(p.p90_ms, '.2f'):>8}{_fmt(p.p99_ms, '.2f'):>8}{p.errors:>5}  "
                    f"{_ratio(row, 'vs_transport_floor') if row else '-':>8}"
                    f"{_ratio(row, 'vs_backend_floor') if row else '-':>9}"
                    f"{_ratio(row, 'vs_openbao') if row else '-':>9}"
                )
    baseline_rows = _baseline_lines(points)
    if baseline_rows:
        lines += [
            "",
            "baselines",
            f"{'target':<24}{'RPC':<15}{'conc':>5}{'h2load/s':>10}{'±':>5}{'asyncio/s':>10}"
            f"{'p50ms':>8}{'p90ms':>8}{'p99ms':>8}",
            *baseline_rows,
        ]
    bad = [p for p in points if not p.ok]
    if bad:
        lines += ["", "REJECTED (answers were not all real answers):"]
        lines += [f"  {_label(p)} {p.generator} c{p.concurrency}: {p.check}" for p in bad]
    lines += [
        "",
        "±: spread (max-min)/mean of h2load repeats. a: ratio from asyncio on both sides "
        "(no h2load for that pair). xBackend: vaultd's best over the in-process floor.",
    ]
    return "\n".join(lines)


def _each(
    points: list[Point], target: str, rpc: str, store: str | None, workers: int | None
) -> list[Point]:
    return sorted(
        (
            p
            for p in points
            if p.target == target
            and p.rpc == rpc
            and (p.store or "") == (store or "")
            and (p.workers or 0) == (workers or 0)
            and p.generator in ("asyncio", "inproc")
        ),
        key=lambda p: p.concurrency,
    )


def _spread(point: Point | None) -> str:
    if point is None or math.isnan(point.spread):
        return "-"
    return f"{point.spread:.0%}"


def _label(p: Point) -> str:
    if p.target == TRANSPORT:
        return f"transport floor w{p.workers}"
    if p.target == BACKEND:
        return f"backend floor {p.store}"
    if p.target == OPENBAO:
        return "OpenBao dev"
    return f"vaultd {p.store} w{p.workers}"


def _baseline_lines(points: list[Point]) -> list[str]:
    lines = []
    keys = sorted({(p.target, p.store or "", p.workers or 0) for p in points if p.target != VAULTD})
    for target, store, workers in keys:
        for rpc in RPCS:
            for p in _each(points, target, rpc, store or None, workers or None):
                h2 = find(
                    points, target, rpc, "h2load", p.concurrency, store=p.store, workers=p.workers
                )
                rps_async = throughput(p)
                lines.append(
                    f"{_label(p):<24}{rpc:<15}{p.concurrency:>5}{_fmt(throughput(h2)):>10}"
                    f"{_spread(h2):>5}{_fmt(rps_async):>10}{_fmt(p.p50_ms, '.2f'):>8}"
                    f"{_fmt(p.p90_ms, '.2f'):>8}{_fmt(p.p99_ms, '.2f'):>8}"
                )
    return lines


def kms_table(kms: Iterable[dict[str, Any]]) -> str:
    rows = list(kms)
    if not rows:
        return ""
    lines = [
        "",
        "KMS calls per 10,000 operations (remote KMS stand-in, "
        f"+{rows[0]['added_latency_ms']:.0f} ms per call, "
        f"{rows[0]['distinct_contexts']} distinct contexts, cold cache at start)",
        f"{'RPC':<15}{'KEK cache':>10}{'ops':>8}{'errors':>7}{'KMS calls':>10}"
        f"{'per 10k':>9}{'s':>7}",
    ]
    for r in rows:
        lines.append(
            f"{r['rpc']:<15}{r['kek_cache']:>10}{r['operations']:>8}{r['errors']:>7}"
            f"{r['kms_calls']:>10}{r['calls_per_10k']:>9.0f}{r['seconds']:>7.1f}"
        )
    return "\n".join(lines)


def write_json(
    path: Path, meta: dict[str, Any], points: list[Point], kms: list[dict[str, Any]]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "meta": meta,
        "points": [p.to_dict() for p in points],
        "ratios": ratio_rows(points),
        "kms": kms,
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(path)  # a reader never sees half a file, even mid-run


def plot(path: Path, points: list[Point]) -> bool:
    """throughput.png: req/s against concurrency, one panel per RPC, a line per target and
    workers (solid: 1 worker, dashed: more). False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rpcs = [r for r in RPCS if any(p.rpc == r for p in points)]
    columns = 4
    rows = math.ceil((len(rpcs) + 1) / columns)  # and a panel for the legend
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    colors = {
        (VAULTD, "embedded"): "tab:blue",
        (VAULTD, "redis"): "tab:red",
        (TRANSPORT, ""): "tab:gray",
        (BACKEND, "embedded"): "tab:cyan",
        (BACKEND, "redis"): "tab:orange",
        (OPENBAO, ""): "black",
    }
    for index, rpc in enumerate(rpcs):
        ax = axes[index // columns][index % columns]
        series = sorted(
            {
                (p.target, p.store or "", p.workers or 0)
                for p in points
                if p.rpc == rpc and p.usable()
            }
        )
        for target, store, workers in series:
            xs, ys, via = [], [], ""
            for c in sorted({p.concurrency for p in points}):
                best = None
                for generator in ("h2load", "asyncio", "inproc"):
                    best = find(points, target, rpc, generator, c, store or None, workers or None)
                    if best is not None:
                        via = generator
                        break
                if best is not None:
                    xs.append(c)
                    ys.append(best.rps)
            if not xs:
                continue
            name = {
                VAULTD: f"vaultd {store}",
                TRANSPORT: "transport floor",
                BACKEND: f"backend floor ({store})",
                OPENBAO: "OpenBao dev",
            }[target]
            if workers:
                name += f" w{workers}"
            ax.plot(
                xs,
                ys,
                marker="o",
                linestyle="--" if workers > 1 else (":" if target == BACKEND else "-"),
                color=colors.get((target, store), "tab:purple"),
                label=f"{name} [{via}]",
            )
        ax.set_title(rpc)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({p.concurrency for p in points}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("calls in flight")
        ax.set_ylabel("requests / s (log)")
        # Log scale: the in-process floor can be far above the network targets.
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    # One legend for all panels, in the first free one: inside a panel it would hide lines.
    labelled: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labelled.setdefault(label.split(" [")[0], handle)
    for index in range(len(rpcs), rows * columns):
        axes[index // columns][index % columns].axis("off")
    names = sorted(labelled)
    axes.flat[len(rpcs)].legend([labelled[n] for n in names], names, loc="center", fontsize=8)
    figure.suptitle(
        "vaultd throughput vs concurrency and workers, with baselines (same run; "
        "h2load where it applies, else asyncio; solid 1 worker, dashed 2)"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument(
        "results",
        type=Path,
        nargs="+",
        help="results.json files written by python -m bench; several are shown as one (each "
        "ratio still pairs points of one run only if each RPC was measured in one run)",
    )
    parser.add_argument("--plot", type=Path, help="also draw throughput.png here")
    args = parser.parse_args(argv)
    points: list[Point] = []
    kms: list[dict[str, Any]] = []
    for path in args.results:
        document = json.loads(path.read_text())
        points += [Point.from_dict(p) for p in document["points"]]
        kms += document.get("kms", [])
    print(table(points, ratio_rows(points)))
    print(kms_table(kms))
    if args.plot is not None and not plot(args.plot, points):
        print("no plot: matplotlib is not installed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
