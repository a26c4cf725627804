"""Instructions per call: `python -m bench.instructions --rpc GetObject --store redis`.

CPU time per call moves with whatever else the host runs (on a shared machine by 30% from one
run to the next); the instructions a call executes hardly do. So for a before/after this counts
them with valgrind's callgrind (`apt-get install valgrind`): `vaultd serve` (1 worker) runs under
callgrind with instrumentation off, and after a warm-up it is switched on
(`callgrind_control -i on`) for exactly `--calls` h2load calls of the RPC's fixed body, then off.
The count is callgrind's total, written when the process exits. The transport floor answering
with vaultd's recorded answer is counted the same way. Every answer is checked as in the
harness. Under callgrind a call runs about 50 times slower: 1,000 calls take half a minute.

For an earlier commit: `git worktree add --detach /tmp/base COMMIT`, then run this with
`PYTHONPATH=/tmp/base` (vaultd is imported from there, the harness from here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import h2load
from bench.cpu_per_call import h2load_calls, prepare
from bench.floor_server import write_answers
from bench.servers import FloorServer, VaultdServer, new_api_key
from bench.workload import RPCS, auth_metadata, canned_answers, grpc_frame

WARMUP_CALLS = 300


def callgrind(out: Path) -> list[str]:
    """The command prefix that runs a process under callgrind, counting nothing until told."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


def counted_calls(
    pid: int, url: str, body: Path, headers: list[tuple[str, str]], calls: int, warmup: int
) -> h2load.H2Result:
    """`calls` calls with the process's instruction counting on; `warmup` first, uncounted."""
    h2load_calls(url, body, headers, warmup)
    subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
    try:
        return h2load_calls(url, body, headers, calls)
    finally:
        subprocess.run(
            ["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True
        )


def total_instructions(out: Path) -> int:
    """callgrind's `totals:` line: every instruction counted, over all threads."""
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"{out}: no totals (did the process exit cleanly?)")


def measure(
    rpc: str, store: str, calls: int, warmup: int = WARMUP_CALLS, keep: Path | None = None
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-instr-") as tmp_name:
        tmp = Path(tmp_name)
        redis = None
        if store == "redis":
            from testkit.redis_server import RedisServer

            (tmp / "redis").mkdir()
            redis = RedisServer(tmp / "redis")
            redis.start()
        api_key = new_api_key()
        server = VaultdServer(
            tmp / "vaultd",
            api_key=api_key,
            redis_url=redis.url if redis else None,
            prefix=callgrind(tmp / "vaultd.callgrind"),
        )
        server.start()
        try:
            body, found = asyncio.run(prepare(server.target, rpc, api_key))
            body_file = tmp / "body"
            body_file.write_bytes(grpc_frame(body))
            (pid,) = server.pids
            url = f"http://{server.target}{RPCS[rpc].path}"
            result = counted_calls(pid, url, body_file, list(auth_metadata(api_key)), calls, warmup)
        finally:
            server.stop()  # callgrind writes its counts as the process exits
            if redis:
                redis.stop()
        vaultd_instructions = total_instructions(tmp / "vaultd.callgrind")
        write_answers(tmp / "floor-answers.json", canned_answers({rpc: found}))
        floor = FloorServer(
            tmp / "floor", tmp / "floor-answers.json", prefix=callgrind(tmp / "floor.callgrind")
        )
        floor.start()
        try:
            (pid,) = floor.pids
            url = f"http://{floor.target}{RPCS[rpc].path}"
            floor_result = counted_calls(pid, url, body_file, [], calls, warmup)
        finally:
            floor.stop()
        floor_instructions = total_instructions(tmp / "floor.callgrind")
        if keep is not None:  # for callgrind_annotate: where, by function and library
            keep.mkdir(parents=True, exist_ok=True)
            for name in ("vaultd.callgrind", "floor.callgrind"):
                shutil.copy(tmp / name, keep / f"{rpc}-{store}-{name}")
    frame_range = found.frame_range(RPCS[rpc].fixed_size)
    return {
        "rpc": rpc,
        "store": store,
        "calls": result.succeeded,
        "vaultd_instructions_per_call": round(vaultd_instructions / calls),
        "floor_instructions_per_call": round(floor_instructions / calls),
        "problems": result.problems(frame_range) + floor_result.problems(frame_range),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    p.add_argument("--rpc", choices=sorted(set(RPCS) - {"CreateObject"}), default="GetObject")
    p.add_argument("--store", choices=("embedded", "redis"), default="embedded")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=WARMUP_CALLS, help="uncounted calls first")
    p.add_argument("--keep", type=Path, help="copy callgrind's output files to this directory")
    args = p.parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control") if not shutil.which(tool)]
    if h2load.binary() is None:
        missing.append("h2load")
    if missing:
        print(
            f"not installed: {', '.join(missing)} (apt-get install nghttp2-client valgrind)",
            file=sys.stderr,
        )
        return 2
    result = measure(args.rpc, args.store, args.calls, args.warmup, args.keep)
    print(json.dumps(result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
