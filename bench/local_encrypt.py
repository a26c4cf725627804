"""The Python client's local encrypt, data key cached: `python -m bench.local_encrypt`.

Starts `vaultd serve` (embedded store) in a temp directory, makes a VaultClient with a data-key
cache, calls `encrypt` once so the cache holds the context's data key, then seals small messages
in a loop for `--seconds` and reports messages per second. Once the key is cached no call
leaves the process, so this is the client's own cost: the issue's target is >= 100,000 per
second for small messages. `--check` decrypts a sample through the server at the end, so a fast
but wrong encrypt cannot pass for a fast one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.servers import VaultdServer, new_api_key
from vaultd.client import VaultClient

CONTEXT = {"organization_id": "org_bench_local"}


def measure(client: VaultClient, size: int, seconds: float) -> tuple[int, float, bytes, bytes]:
    """(messages sealed, seconds taken, the last plaintext, its blob)."""
    message = os.urandom(size)
    client.encrypt(message, CONTEXT)  # fills the data key cache: one CreateDataKey
    encrypt = client.encrypt
    count = 0
    blob = b""
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(1000):  # check the clock once per 1,000 messages
            blob = encrypt(message, CONTEXT)
        count += 1000
        now = time.perf_counter()
        if now >= deadline:
            return count, now - started, message, blob


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.local_encrypt", description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--size", type=int, default=64, help="plaintext bytes per message")
    p.add_argument("--check", action="store_true", help="decrypt the last blob via the server")
    p.add_argument("--json", action="store_true", help="print one JSON object, not a line")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="vaultd-bench-local-") as tmp:
        api_key = new_api_key()
        server = VaultdServer(Path(tmp), api_key=api_key)
        server.start()
        try:
            with VaultClient(server.target, api_key=api_key, data_key_cache_ttl=3600) as client:
                count, took, message, blob = measure(client, args.size, args.seconds)
                checked = client.decrypt(blob) == message if args.check else None
        finally:
            server.stop()
    result = {
        "messages": count,
        "seconds": round(took, 3),
        "messages_per_second": round(count / took),
        "size": args.size,
        "checked": checked,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"local encrypt, data key cached: {result['messages_per_second']:,} messages/s "
            f"({count:,} x {args.size} B in {took:.2f} s)"
            + ("" if checked is None else f"; decrypt check {'ok' if checked else 'FAILED'}")
        )
    return 0 if checked is not False else 1


if __name__ == "__main__":
    sys.exit(main())
