"""Where vaultd's time goes: `python -m bench.profile --rpcs GetObject,Encrypt --store redis`.

For each RPC: one `vaultd serve` (1 worker) under h2load load, sampled by py-spy (`pip install
-e '.[bench]'`) with native frames, so time inside gRPC's Cython/C core, upb (protobuf),
OpenSSL (cryptography) and hiredis is seen, not folded into the Python caller (native
sampling pauses the process for each sample, so throughput under it is lower). py-spy only
samples threads that are running, so shares are of CPU time, not of waiting.

Each sample goes to the category of its innermost recognised frame (CATEGORIES, first match
walking from the leaf towards the root), so AESGCM called from vaultd's envelope is "crypto",
and a log line's JSON encoding is "logging".

With the Redis store it also counts Redis commands per RPC (INFO commandstats before and after
a fixed number of calls): the round trips the issue's targets are about.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import grpc

from bench import h2load
from bench.loadgen import GrpcLoad, closed_loop
from bench.servers import VaultdServer, new_api_key
from bench.workload import RPCS, Workload, auth_metadata, grpc_frame, make_fixture

# (category, pattern on a py-spy frame "function (file:line)"), tried in order per frame.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("crypto", re.compile(r"cryptography|openssl|EVP_|aes|gcm|AES|_rust", re.I)),
    ("protobuf", re.compile(r"google/protobuf|_pb2|upb|_message\.", re.I)),
    ("redis", re.compile(r"redis|hiredis")),
    ("sqlite", re.compile(r"sqlite")),
    ("logging", re.compile(r"logging/|vaultd/logs\.py")),
    ("grpc", re.compile(r"grpc|cygrpc|_cython|chttp2|absl|tsi_|gpr_")),
    ("event loop", re.compile(r"asyncio/|selectors\.py|epoll|_asyncio|uvloop")),
    ("vaultd", re.compile(r"vaultd/|providers/")),
    ("ulid/pydantic", re.compile(r"ulid|pydantic")),
]
OTHER = "other (interpreter, stdlib)"
# A sample whose innermost frame is one of these is a thread waiting (the event loop's epoll,
# gRPC's poller thread, an idle executor thread, SQLite's fsync), not spending CPU: native
# sampling cannot tell py-spy's idle detection about C-level waits, so they are counted apart.
IDLE_LEAVES = frozenset(
    {
        "epoll_wait",
        "epoll_pwait",
        "poll",
        "select",
        "pthread_cond_wait",
        "pthread_cond_timedwait",
        "__futex_abstimed_wait_common",
        "__futex_abstimed_wait_common64",
        "futex_wait",
        "do_futex_wait",
        "sem_wait",
        "sem_timedwait",
        "nanosleep",
        "clock_nanosleep",
        "accept",
        "accept4",
        "fsync",
        "fdatasync",
    }
)
_FRAME_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


# asyncio's socket transports: the bytes they move belong to whoever called them (redis-py
# rides on asyncio streams; gRPC has its own sockets), so such a frame defers to its caller.
_TRANSPORT = re.compile(r"asyncio/(selector_events|streams|transports)\.py")


def categorize(stack: list[str]) -> str:
    deferred = False
    for frame in reversed(stack):  # leaf first
        found = next((name for name, pattern in CATEGORIES if pattern.search(frame)), None)
        if found is None:
            continue
        if found == "event loop" and _TRANSPORT.search(frame):
            deferred = True
            continue
        return found
    return "event loop" if deferred else OTHER


def read_collapsed(path: Path) -> list[tuple[list[str], int]]:
    samples = []
    for line in path.read_text(errors="replace").splitlines():
        match = _FRAME_LINE.match(line)
        if match:
            samples.append((match["stack"].split(";"), int(match["count"])))
    return samples


def is_idle(stack: list[str]) -> bool:
    return stack[-1].split(" (", 1)[0] in IDLE_LEAVES


def summarize(samples: list[tuple[list[str], int]], top: int = 12) -> str:
    waits: collections.Counter[str] = collections.Counter()
    for stack, count in samples:
        if is_idle(stack):
            waits[stack[-1].split(" (", 1)[0]] += count
    samples = [(stack, count) for stack, count in samples if not is_idle(stack)]
    total = sum(count for _, count in samples) or 1
    by_category: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    by_vaultd_frame: collections.Counter[str] = collections.Counter()
    for stack, count in samples:
        by_category[categorize(stack)] += count
        by_leaf[_short(stack[-1])] += count
        # Inclusive time of vaultd's own functions: which step of the RPC costs what.
        for frame in {f for f in stack if "vaultd/" in f and "vaultd/v1/" not in f}:
            by_vaultd_frame[_short(frame)] += count
    lines = [
        f"CPU samples: {total}; left out, threads waiting: "
        + (", ".join(f"{name} {n}" for name, n in waits.most_common()) or "none"),
        "",
        "| category | share of CPU samples |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {count / total:.1%} |" for name, count in by_category.most_common()]
    lines += ["", "| top self frames (leaf) | share |", "|---|---:|"]
    lines += [f"| `{f}` | {c / total:.1%} |" for f, c in by_leaf.most_common(top)]
    lines += ["", "| vaultd functions, inclusive | share |", "|---|---:|"]
    lines += [f"| `{f}` | {c / total:.1%} |" for f, c in by_vaultd_frame.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """`func (/long/path/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`."""
    match = re.match(r"(?P<func>.*?) \((?P<file>[^)]*)\)$", frame)
    if not match:
        return frame[:90]
    file = re.sub(r"^.*(site-packages|lib/python3\.\d+|/work/main)/", "", match["file"])
    file = re.sub(r":\d+$", "", file)
    return f"{match['func'][:50]} ({file[:60]})"


async def redis_commands_per_call(
    server: VaultdServer, redis_url: str, rpc: str, fixture: object, api_key: str | None
) -> dict[str, float]:
    import redis

    from bench.workload import Fixture

    assert isinstance(fixture, Fixture)
    calls = 500
    client = redis.Redis.from_url(redis_url)
    before = _commandstats(client)
    load = GrpcLoad(server.target, 1, auth_metadata(api_key))
    await load.ready()
    await closed_loop(load.call(RPCS[rpc].path, fixture.body_maker(rpc, "rt")), 1, total=calls)
    await load.close()
    after = _commandstats(client)
    client.close()
    return {
        name: (after[name] - before.get(name, 0)) / calls
        for name in after
        if after[name] - before.get(name, 0) > 0 and name not in ("info",)
    }


def _commandstats(client: object) -> dict[str, int]:
    info = client.info("commandstats")  # type: ignore[attr-defined]
    return {key.removeprefix("cmdstat_"): int(value["calls"]) for key, value in info.items()}


async def profile_rpc(
    rpc: str, store: str, duration: float, concurrency: int, out: Path, tmp: Path
) -> str:
    api_key = new_api_key()
    redis_server = None
    if store == "redis":
        from testkit.redis_server import RedisServer

        redis_server = RedisServer(tmp / f"redis-{rpc}")
        redis_server.start()
    server = VaultdServer(
        tmp / f"vaultd-{rpc}",
        redis_url=redis_server.url if redis_server else None,
        api_key=api_key,
    )
    server.start()
    try:
        metadata = auth_metadata(api_key)
        async with grpc.aio.insecure_channel(server.target) as channel:
            fixture = await make_fixture(channel, Workload(), metadata)
        round_trips = (
            await redis_commands_per_call(server, redis_server.url, rpc, fixture, api_key)
            if redis_server
            else {}
        )
        body = tmp / f"{rpc}.grpc"
        body.write_bytes(grpc_frame(fixture.fixed_body(rpc)))
        clients = min(concurrency, 8)
        command = h2load.grpc_command(
            f"http://{server.target}{RPCS[rpc].path}",
            body,
            [("authorization", f"Bearer {api_key}")] if api_key else [],
            clients,
            max(1, concurrency // clients),
            duration + 4,
        )
        load = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        await asyncio.sleep(2)  # past the connection set-up
        collapsed = out / f"profile-{rpc}-{store}.txt"
        spy = await asyncio.create_subprocess_exec(
            _py_spy(), "record", "--pid", str(server.pids[0]), "--duration", str(int(duration)),
            "--rate", "100", "--native", "--format", "raw",
            "--output", str(collapsed),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, spy_err = await spy.communicate()
        output, _ = await load.communicate()
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed: {spy_err.decode(errors='replace')[-1000:]}")
        result = h2load.parse(output.decode(errors="replace"))
    finally:
        server.stop()
        if redis_server is not None:
            redis_server.stop()
    header = [
        f"### {rpc} ({store} store, 1 worker, h2load c{concurrency}: {result.rps:.0f} req/s "
        "under the profiler)",
        "",
    ]
    if round_trips:
        per_call = ", ".join(f"{name} {n:.2f}" for name, n in sorted(round_trips.items()))
        header += [
            f"Redis commands per call (INFO commandstats; commands a Lua script runs are "
            f"counted too, while the script is one EVALSHA round trip): {per_call}",
            "",
        ]
    return "\n".join(header) + summarize(read_collapsed(collapsed)) + "\n"


def _py_spy() -> str:
    beside_python = Path(sys.executable).parent / "py-spy"
    found = str(beside_python) if beside_python.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed (pip install -e '.[bench]')")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--rpcs", default="GetObject,Encrypt")
    parser.add_argument("--store", choices=("embedded", "redis"), default="redis")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args(argv)
    if h2load.binary() is None:
        print(f"h2load is missing (apt-get install {h2load.APT_PACKAGE})", file=sys.stderr)
        return 2
    _py_spy()
    args.out.mkdir(parents=True, exist_ok=True)
    sections = []
    with tempfile.TemporaryDirectory(prefix="vaultd-profile-") as tmp:
        for rpc in args.rpcs.split(","):
            sections.append(
                asyncio.run(
                    profile_rpc(
                        rpc, args.store, args.duration, args.concurrency, args.out, Path(tmp)
                    )
                )
            )
    report = "\n".join(sections)
    (args.out / "profile.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
