"""The transport floor: a grpc.aio server that answers each vaultd RPC at once, with a canned
answer of the same size as vaultd's (recorded from vaultd by the probes).

It parses each request with the real request class and serializes the real response class, as
any grpc.aio servicer does, and does nothing else: no interceptors, no store, no crypto. What
vaultd reaches against this is the share of the machine its own work leaves to gRPC.

Run one process per worker on the same port (`python -m bench.floor_server --listen ...
--answers FILE`); SO_REUSEPORT is on, as with `vaultd serve --workers N`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from bench.workload import RPCS


def write_answers(path: Path, answers: dict[str, bytes]) -> None:
    path.write_text(json.dumps({k: base64.b64encode(v).decode() for k, v in answers.items()}))


def read_answers(path: Path) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in json.loads(path.read_text()).items()}


def handlers(answers: dict[str, bytes]) -> list[grpc.GenericRpcHandler]:
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for rpc in RPCS.values():
        if rpc.path not in answers:
            continue
        answer = rpc.response.FromString(answers[rpc.path])

        async def answer_at_once(request: Any, context: Any, answer: Any = answer) -> Any:
            return answer

        by_service.setdefault(rpc.service, {})[rpc.name] = grpc.unary_unary_rpc_method_handler(
            answer_at_once,
            request_deserializer=rpc.request.FromString,
            response_serializer=rpc.response.SerializeToString,
        )
    return [
        grpc.method_handlers_generic_handler(service, methods)
        for service, methods in by_service.items()
    ]


async def serve(listen: str, answers: dict[str, bytes]) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    server.add_generic_rpc_handlers(handlers(answers))
    server.add_insecure_port(listen)
    await server.start()
    print(f"transport floor listening on {listen}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--answers", type=Path, required=True, help="JSON from write_answers")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen, read_answers(args.answers)))


if __name__ == "__main__":
    main()
