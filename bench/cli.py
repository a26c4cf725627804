"""`python -m bench`: measure vaultd and its baselines, print the table, write JSON and a PNG.

  python -m bench --duration 20 --concurrency 8,32,128 --workers 1,2 \\
      [--rpcs GetObject,Encrypt] [--stores embedded,redis] [--out bench/out]

What cannot run here is said, not silently dropped: workers counts above 1 before `vaultd serve
--workers` exists, h2load when nghttp2-client is missing, Redis without redis-server, OpenBao
without the bao binary, the KMS count without the test stand-ins.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.internal import api_implementation

from bench import h2load, openbao, report
from bench.progress import Progress
from bench.run import Plan, Run
from bench.servers import new_api_key, redis_available, serve_supports_workers
from bench.workload import RPCS, Workload

GENERATORS = ("asyncio", "h2load")
BASELINES = ("transport", "backend", "openbao")
STORES = ("embedded", "redis")


def _list(kind: type, allowed: Sequence[str] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        if allowed is not None:
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise argparse.ArgumentTypeError(
                    f"unknown {', '.join(map(str, unknown))}; choose from {', '.join(allowed)}"
                )
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        return values

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run")
    p.add_argument(
        "--repeats", type=int, default=2, help="h2load runs per point (sharing --duration)"
    )
    p.add_argument("--concurrency", type=_list(int), default=[8, 32, 128], help="calls in flight")
    p.add_argument("--workers", type=_list(int), default=[1, 2], help="vaultd serve --workers")
    p.add_argument("--rpcs", type=_list(str, list(RPCS)), default=list(RPCS))
    p.add_argument("--stores", type=_list(str, STORES), default=list(STORES))
    p.add_argument("--generators", type=_list(str, GENERATORS), default=list(GENERATORS))
    p.add_argument("--baselines", type=_list(str, BASELINES), default=list(BASELINES))
    p.add_argument(
        "--connections", type=int, default=8, help="HTTP/2 connections per point, at most"
    )
    p.add_argument("--payload-bytes", type=int, default=256)
    p.add_argument("--orgs", type=int, default=4, help="distinct key contexts")
    p.add_argument("--objects-per-org", type=int, default=8)
    p.add_argument(
        "--kms-ops", type=int, default=10_000, help="operations per KMS count; 0 skips it"
    )
    p.add_argument(
        "--kms-rpcs",
        type=_list(str, list(RPCS)),
        help="RPCs for the KMS count (default: --rpcs)",
    )
    p.add_argument("--kms-concurrency", type=int, default=32)
    p.add_argument("--kms-latency-ms", type=float, default=20.0)
    p.add_argument("--out", type=Path, default=Path("bench/out"))
    p.add_argument("--no-plot", action="store_true", help="skip throughput.png")
    return p


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf_backend": api_implementation.Type(),
        "h2load": h2load.version(),
        "bao": openbao.binary(),
    }


def adjust(args: argparse.Namespace, notes: list[str]) -> None:
    """Drop what this machine cannot run, saying why (into `notes` and the results)."""
    if any(w > 1 for w in args.workers) and not serve_supports_workers():
        args.workers = [1]
        notes.append(
            "`vaultd serve` has no --workers option yet: measured with 1 worker only "
            "(the transport floor too, so ratios stay at equal workers)"
        )
    if "h2load" in args.generators and h2load.binary() is None:
        args.generators = [g for g in args.generators if g != "h2load"]
        notes.append(
            f"h2load is MISSING (apt-get install {h2load.APT_PACKAGE}): no throughput from the "
            "C generator; asyncio numbers only, and they saturate in the generator first"
        )
    if "redis" in args.stores and not redis_available():
        args.stores = [s for s in args.stores if s != "redis"]
        notes.append("redis-server is missing (apt-get install redis-server): embedded store only")
    if "openbao" in args.baselines and not openbao.aiohttp_available():
        notes.append("aiohttp is missing (pip install -e '.[bench]'): OpenBao via h2load only")


async def _until_signalled(run: Run) -> None:
    """Run, and on SIGINT or SIGTERM cancel it, so every server it started is stopped (grpc's
    runtime otherwise swallows Ctrl-C while calls are in flight)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await run.execute()
    except asyncio.CancelledError:
        run.plan.meta.setdefault("notes", []).append("interrupted: the results are partial")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    notes: list[str] = []
    adjust(args, notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.stores or not args.generators:
        print("nothing left to measure", file=sys.stderr)
        return 2
    workload = Workload(args.payload_bytes, args.orgs, args.objects_per_org)
    plan = Plan(
        duration=args.duration,
        warmup=args.warmup,
        repeats=max(1, args.repeats),
        concurrency=args.concurrency,
        workers=args.workers,
        stores=args.stores,
        rpcs=args.rpcs,
        generators=args.generators,
        baselines=args.baselines,
        connections=args.connections,
        kms_operations=args.kms_ops,
        kms_rpcs=args.kms_rpcs or args.rpcs,
        kms_concurrency=args.kms_concurrency,
        kms_latency=args.kms_latency_ms / 1000,
        out=args.out,
        workload=workload,
        api_key=new_api_key(),
    )
    plan.meta = {
        "command": shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "load_average_at_start": os.getloadavg(),
        "settings": {
            "duration_s": plan.duration,
            "warmup_s": plan.warmup,
            "h2load_repeats": plan.repeats,
            "concurrency": plan.concurrency,
            "workers": plan.workers,
            "stores": plan.stores,
            "rpcs": plan.rpcs,
            "generators": plan.generators,
            "baselines": plan.baselines,
            "connections_max": plan.connections,
            "payload_bytes": workload.payload_bytes,
            "orgs": workload.orgs,
            "objects_per_org": workload.objects_per_org,
            "api_key": plan.api_key is not None,
        },
        "notes": list(notes),
    }
    progress = Progress(plan.planned_seconds())
    run = Run(plan, progress)
    try:
        asyncio.run(_until_signalled(run))
    finally:
        progress.close()
        plan.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        plan.meta["load_average_at_end"] = os.getloadavg()
        run.save()
    print(report.table(run.points, report.ratio_rows(run.points)))
    print(report.kms_table(run.kms))
    png = plan.out / "throughput.png"
    if not args.no_plot:
        if report.plot(png, run.points):
            print(f"\nplot: {png}")
        else:
            print("\nno plot: matplotlib is not installed (pip install -e '.[bench]')")
    print(f"results: {plan.out / 'results.json'}")
    return 1 if run.failed or any(not p.ok for p in run.points) else 0
