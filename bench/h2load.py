"""h2load (Debian: nghttp2-client), the C load generator, for throughput.

gRPC is HTTP/2: a POST to /<service>/<method> with `content-type: application/grpc`,
`te: trailers` and the message behind a 5-byte prefix (workload.grpc_frame). h2load sends that
body, but it judges success by the HTTP status alone, and gRPC answers every error with HTTP 200
and the status in the trailers, which h2load does not read. So a run is accepted only when the
answers' DATA bytes prove they are real answers:

- the same body was first sent through grpc, which answered OK with a checked answer of a known
  size (workload.probe);
- a gRPC error carries no message, so it adds 0 DATA bytes; h2load's received DATA bytes must
  equal (answers x that size), exactly for RPCs whose answer size is fixed, and within a few
  bytes each for those carrying fresh timestamps (UpdateObject);
- every request h2load finished must be a 2xx, with none failed, errored or timed out.

For OpenBao (HTTP/1.1, `--h1`) errors are HTTP statuses, so the 2xx count is the check, with the
same DATA-bytes bounds as a second one.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

APT_PACKAGE = "nghttp2-client"

_FINISHED = re.compile(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_TRAFFIC = re.compile(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers.*?\((\d+)\) data")
_DURATION = r"([\d.]+)(us|ms|s)\s+"
_REQUEST_TIME = re.compile(r"time for request:\s+" + _DURATION * 3)
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def binary() -> str | None:
    return shutil.which("h2load")


def version() -> str | None:
    found = binary()
    if found is None:
        return None
    out = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "h2load"


@dataclass(frozen=True)
class H2Result:
    seconds: float
    rps: float
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    status_other: int
    data_bytes: int
    mean_ms: float

    def problems(self, frame_range: tuple[int, int]) -> list[str]:
        """Why these answers cannot all be real successes; empty when they are."""
        found = []
        if self.succeeded == 0:
            found.append("no request succeeded")
        if self.failed or self.errored or self.timeout:
            found.append(f"{self.failed} failed, {self.errored} errored, {self.timeout} timed out")
        if self.status_other or self.status_2xx != self.succeeded:
            found.append(f"{self.status_2xx} 2xx of {self.succeeded} succeeded")
        low, high = frame_range
        if not low * self.status_2xx <= self.data_bytes <= high * self.status_2xx:
            per = self.data_bytes / self.status_2xx if self.status_2xx else 0.0
            found.append(
                f"{per:.1f} DATA bytes per answer, expected {low}..{high}: "
                "some answers were errors (trailers only) or not the probed answer"
            )
        return found


def parse(output: str) -> H2Result:
    finished = _FINISHED.search(output)
    requests = _REQUESTS.search(output)
    status = _STATUS.search(output)
    traffic = _TRAFFIC.search(output)
    if not (finished and requests and status and traffic):
        raise RuntimeError(f"could not read h2load's output:\n{output[-2000:]}")
    seconds = float(finished[1]) / (1000.0 if finished[2] == "ms" else 1.0)
    timing = _REQUEST_TIME.search(output)
    mean_ms = float(timing[5]) * _UNIT[timing[6]] if timing else float("nan")
    s2, s3, s4, s5 = (int(g) for g in status.groups())
    _, _, done, succeeded, failed, errored, timeout = (int(g) for g in requests.groups())
    return H2Result(
        seconds=seconds,
        rps=float(finished[3]),
        done=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status_2xx=s2,
        status_other=s3 + s4 + s5,
        data_bytes=int(traffic[3]),
        mean_ms=mean_ms,
    )


def grpc_command(
    url: str,
    body_file: Path,
    headers: list[tuple[str, str]],
    connections: int,
    streams: int,
    duration: float,
) -> list[str]:
    """h2load driving one gRPC method over h2c (HTTP/2 without TLS, prior knowledge)."""
    return [
        *_common(connections, duration),
        f"--max-concurrent-streams={streams}",
        f"--data={body_file}",
        "--header=content-type: application/grpc",
        "--header=te: trailers",
        *(f"--header={k}: {v}" for k, v in headers),
        url,
    ]


def http1_command(
    url: str,
    body_file: Path | None,
    headers: list[tuple[str, str]],
    connections: int,
    duration: float,
) -> list[str]:
    """h2load speaking HTTP/1.1 (`--h1`), one request in flight per connection (no pipelining),
    so `connections` is the concurrency. With a body the method is POST, else GET."""
    return [
        *_common(connections, duration),
        "--h1",
        "--max-concurrent-streams=1",
        *([f"--data={body_file}"] if body_file else []),
        *(f"--header={k}: {v}" for k, v in headers),
        url,
    ]


def _common(connections: int, duration: float) -> list[str]:
    found = binary()
    if found is None:
        raise RuntimeError(f"h2load is not installed (apt-get install {APT_PACKAGE})")
    # One thread: the generator takes at most one of the machine's cores, never both.
    # No --warm-up-time: h2load's DATA byte count would include the warm-up's answers while
    # its request counts do not, and the check needs the two to match. Warm up with a
    # separate, discarded run instead.
    return [
        found,
        "--threads=1",
        f"--clients={connections}",
        f"--duration={round(duration * 1000)}ms",
    ]


async def run(command: list[str]) -> H2Result:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"h2load exited {process.returncode}:\n{text[-2000:]}")
    return parse(text)
