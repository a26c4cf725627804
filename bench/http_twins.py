"""HTTP beside gRPC: GetObject and Encrypt over the WorkOS-compatible HTTP API and their twins.

    python -m bench.http_twins [--duration 5] [--concurrency 8] [--repeats 2]

One `vaultd serve --http-listen` (one worker, embedded store), measured with the same asyncio
closed loop (bench/loadgen.py) for each pair, the pair's two targets right after each other and
the pairs repeated, so a neighbour's burst on this shared machine hits both alike:
- GetObject: the gRPC RPC, and `GET /vault/v1/kv/{id}` (what the SDKs' readObject sends);
- Encrypt: the gRPC RPC (server-side seal), and what the SDKs' `encrypt` does over HTTP:
  `POST /vault/v1/keys/data-key`, then AES-256-GCM in the client.
HTTP goes through aiohttp (the bench extra) over keep-alive HTTP/1.1 connections, one per
call in flight. Prints a markdown table; each call's answer is checked (status 200/201).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.loadgen import Call, GrpcLoad, LoadResult, closed_loop
from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import object_service_pb2 as opb

API_KEY = "sk_" + "b" * 43
CONTEXT = {"organization_id": "org_bench"}
VALUE = b"v" * 256
VAULTD = Path(sys.executable).parent / "vaultd"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class HttpLoad:
    def __init__(self, base_url: str, concurrency: int) -> None:
        import aiohttp  # the bench extra

        self._session = aiohttp.ClientSession(
            base_url,
            connector=aiohttp.TCPConnector(limit=concurrency),
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )

    def get(self, path: str) -> Call:
        session = self._session

        async def one(i: int) -> None:
            async with session.get(path) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"HTTP {answer.status}")

        return one

    def sdk_encrypt(self, plaintext: bytes) -> Call:
        """The SDKs' encrypt: a data key over HTTP, then the seal in the client."""
        session = self._session
        body = json.dumps({"context": CONTEXT})

        async def one(i: int) -> None:
            async with session.post("/vault/v1/keys/data-key", data=body) as answer:
                pair: dict[str, Any] = await answer.json()
                if answer.status != 200:
                    raise RuntimeError(f"HTTP {answer.status}")
            keys = base64.b64decode(pair["encrypted_keys"])
            iv = os.urandom(12)
            sealed = AESGCM(base64.b64decode(pair["data_key"])).encrypt(iv, plaintext, None)
            blob = iv + sealed[-16:] + _leb128(len(keys)) + keys + sealed[:-16]
            base64.b64encode(blob)

        return one

    async def close(self) -> None:
        await self._session.close()


async def measure(args: argparse.Namespace, grpc_target: str, http_url: str) -> list[str]:
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    grpc_load = GrpcLoad(grpc_target, 1, metadata)
    await grpc_load.ready()
    http_load = HttpLoad(http_url, args.concurrency)
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        create = channel.unary_unary(
            "/vaultd.v1.ObjectService/CreateObject",
            request_serializer=opb.CreateObjectRequest.SerializeToString,
            response_deserializer=opb.CreateObjectResponse.FromString,
        )
        made = await create(
            opb.CreateObjectRequest(
                name=f"bench-{secrets.token_hex(4)}", value=VALUE, key_context=CONTEXT
            ),
            metadata=metadata,
        )
    object_id = made.metadata.id
    get_body = opb.GetObjectRequest(id=object_id).SerializeToString()
    encrypt_body = kpb.EncryptRequest(plaintext=VALUE, key_context=CONTEXT).SerializeToString()
    pairs: list[tuple[str, Call, Call]] = [
        (
            "GetObject",
            grpc_load.call("/vaultd.v1.ObjectService/GetObject", lambda i: get_body),
            http_load.get(f"/vault/v1/kv/{object_id}"),
        ),
        (
            "Encrypt",
            grpc_load.call("/vaultd.v1.KeyService/Encrypt", lambda i: encrypt_body),
            http_load.sdk_encrypt(VALUE),
        ),
    ]
    results: dict[tuple[str, str], list[LoadResult]] = {}
    for _ in range(args.repeats):
        for name, grpc_call, http_call in pairs:
            for transport, call in (("gRPC", grpc_call), ("HTTP", http_call)):
                result = await closed_loop(
                    call, args.concurrency, duration=args.duration, warmup=args.warmup
                )
                if result.errors:
                    raise RuntimeError(f"{name} over {transport}: {result.first_error}")
                results.setdefault((name, transport), []).append(result)
    await grpc_load.close()
    await http_load.close()
    rows = [
        f"| call | transport | req/s (best of {args.repeats}) | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for (name, transport), runs in results.items():
        best = max(runs, key=lambda r: r.rps)
        rows.append(
            f"| {name} | {transport} | {best.rps:,.0f} | {best.p50_ms:.2f} | {best.p99_ms:.2f} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_twins", description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        grpc_port, http_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")} | {
            "VAULTD_LISTEN": f"127.0.0.1:{grpc_port}",
            "VAULTD_HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "VAULTD_BOOTSTRAP_API_KEY": API_KEY,
            "VAULTD_DATA_DIR": workdir,
            "VAULTD_ACCESS_LOG": "false",
            "VAULTD_LOG_LEVEL": "warning",
        }
        log = Path(workdir) / "vaultd.log"
        with open(log, "wb") as out:
            server = subprocess.Popen([str(VAULTD), "serve"], env=env, stdout=out, stderr=out)
        try:
            _wait_http(http_port, log)
            rows = asyncio.run(
                measure(args, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}")
            )
        finally:
            server.terminate()
            server.wait(30)
    print(f"concurrency {args.concurrency}, {args.duration:g} s per point, one vaultd worker")
    print("\n".join(rows))
    return 0


def _wait_http(port: int, log: Path, wait: Callable[[float], None] = time.sleep) -> None:
    import urllib.error
    import urllib.request

    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=1).read()
            return
        except (urllib.error.URLError, OSError):
            wait(0.1)
    raise RuntimeError(f"vaultd did not start: {log.read_text()[-2000:]}")


if __name__ == "__main__":
    raise SystemExit(main())
