"""Memory a hostile client can make a vaultd hold: idle and half-sent connections.

    python -m bench.transport_memory [--idle 300] [--half-sent 40] [--code DIR]

Starts `vaultd serve` (embedded store) in a child process, then from this process opens
`--idle` connections that finish the HTTP/2 handshake and send nothing more, and
`--half-sent` connections that each start an unauthenticated CreateObject declaring a 4 MiB
message and send as much of it as the server's flow control allows (for up to 5 s), then stop.
Prints the server's resident memory (VmRSS) at each step. `--code DIR` runs the vaultd found in
DIR (e.g. `git archive main | tar -x -C /tmp/main`) to measure another version; the
`VAULTD_TRANSPORT__*` variables change the limits (docs/SECURITY.md section 5).
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from testkit.h2raw import INITIAL_WINDOW_SIZE, WINDOW_UPDATE, RawConnection
from testkit.serving import clean_env, free_port

MESSAGE = 4 * 1024 * 1024
PATH = "/vaultd.v1.ObjectService/CreateObject"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_listening(port: int) -> None:
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("vaultd did not start")


def half_send(port: int, seconds: float = 5.0) -> tuple[RawConnection, int]:
    """Start an unauthenticated call and send as much of a 4 MiB message as allowed."""
    conn = RawConnection("127.0.0.1", port)
    settings = conn.handshake()
    conn.start_call(1, PATH, f"127.0.0.1:{port}")
    conn.send_data(1, b"\x00" + struct.pack(">I", MESSAGE))
    sent = 5
    window = {0: 65535 - 5, 1: settings.get(INITIAL_WINDOW_SIZE, 65535) - 5}
    conn.sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while sent < MESSAGE + 5 and time.monotonic() < deadline:
        n = min(window[0], window[1], 16384, MESSAGE + 5 - sent)
        if n > 0:
            try:
                conn.send_data(1, b"a" * n)
            except OSError:
                break
            sent += n
            window[0] -= n
            window[1] -= n
            continue
        try:
            got = conn.read_frame()
        except (TimeoutError, ConnectionError, OSError):
            continue
        if got.type == WINDOW_UPDATE:
            window[got.stream if got.stream in window else 1] += (
                struct.unpack(">I", got.payload)[0] & 0x7FFFFFFF
            )
    return conn, sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--half-sent", type=int, default=40)
    parser.add_argument("--code", type=Path, help="run the vaultd package found in this directory")
    args = parser.parse_args()
    port = free_port()
    data = Path(tempfile.mkdtemp()) / "data"
    env = clean_env() | {
        "VAULTD_LISTEN": f"127.0.0.1:{port}",
        "VAULTD_DATA_DIR": str(data),
        "VAULTD_ACCESS_LOG": "false",
        **{k: v for k, v in os.environ.items() if k.startswith("VAULTD_TRANSPORT__")},
    }
    code = "from vaultd.cli import main; main(['serve'])"
    if args.code:
        # Ahead of this checkout's editable install, whose import hook would win otherwise.
        code = (
            f"import sys; sys.path.insert(0, {str(args.code)!r}); "
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; " + code
        )
    server = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    held: list[RawConnection] = []
    try:
        wait_listening(port)
        time.sleep(1)
        print(f"started:            {rss_kib(server.pid) / 1024:8.1f} MiB")
        for _ in range(args.idle):
            conn = RawConnection("127.0.0.1", port)
            conn.handshake()
            held.append(conn)
        time.sleep(1)
        print(f"+{args.idle} idle:          {rss_kib(server.pid) / 1024:8.1f} MiB")
        with ThreadPoolExecutor(max_workers=args.half_sent) as pool:
            results = list(pool.map(lambda _: half_send(port), range(args.half_sent)))
        held.extend(conn for conn, _ in results)
        accepted = sum(sent for _, sent in results)
        time.sleep(1)
        print(
            f"+{args.half_sent} half-sent:     {rss_kib(server.pid) / 1024:8.1f} MiB "
            f"(server accepted {accepted / 2**20:.1f} MiB of request bytes)"
        )
    finally:
        for conn in held:
            conn.close()
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
