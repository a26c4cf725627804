"""`vaultd serve --workers N`: N server processes sharing one port through SO_REUSEPORT.

The kernel spreads new connections over the processes bound to the port, so N workers use N
cores where one Python process uses one. The parent serves nothing. It prepares what must exist
exactly once (the root key: N workers generating one at the same moment would each make a
different key; the store's schema), starts the workers, forwards SIGTERM and SIGINT to them, and
exits 0 once every worker has drained its in-flight calls and exited 0.

Health says SERVING in every worker only once all of them listen. A worker that dies on its own
(or never comes to listen) stops the others and the parent exits 1: the process supervisor
restarts the whole server rather than it running on at part capacity unnoticed.

Worker k serves its metrics on the metrics port + k: each process counts its own calls, and
Prometheus scrapes each worker as its own target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from multiprocessing.connection import wait
from multiprocessing.synchronize import Barrier
from types import FrameType
from typing import Any

from vaultd import app, eventloop, logs, startup
from vaultd.metrics import split_host_port
from vaultd.server import serve, server_credentials
from vaultd.settings import Settings

log = logging.getLogger(__name__)

ALL_LISTENING_TIMEOUT_SECONDS = 60.0
"""How long a worker that listens waits for the others to listen too."""


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker `index`'s settings: the same, but its own metrics port."""
    if not settings.metrics_listen:
        return settings
    host, port = split_host_port(settings.metrics_listen)
    host = f"[{host}]" if ":" in host else host
    return settings.model_copy(update={"metrics_listen": f"{host}:{port + index}"})


def check(settings: Settings) -> None:
    """Refuse what cannot work with several workers, before anything starts."""
    if split_host_port(settings.listen)[1] == 0:
        raise ValueError(
            "--workers needs a fixed port: with port 0 every worker would listen on its own"
        )
    if settings.metrics_listen and split_host_port(settings.metrics_listen)[1] == 0:
        raise ValueError("--workers needs a fixed --metrics-listen port (worker k uses port + k)")
    if settings.http_listen and split_host_port(settings.http_listen)[1] == 0:
        raise ValueError("--workers needs a fixed --http-listen port (the workers share it)")


async def prepare(settings: Settings) -> None:
    """Make the root key, the store's schema and identity once, and fail on bad configuration
    or a store vaultd must not serve here."""
    keys = app.key_config(settings)
    server_credentials(settings)  # unreadable TLS files: one line here, not one per worker
    guard = await app.open_guarded_store(settings, keys.internal)
    await guard.store.close()


def run(settings: Settings) -> int:
    """Run settings.workers workers until they exit; the exit code for the command."""
    check(settings)
    asyncio.run(prepare(settings))
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked event loop
    # Each worker answers health SERVING only once all have bound the port: a load balancer
    # that asks one worker then knows every connection the kernel hands out will be served.
    listening = context.Barrier(settings.workers)
    workers = [
        context.Process(
            target=_worker,
            # The fields, not the object: settings read from a file have a class made at run time.
            args=(worker_settings(settings, index).model_dump(), listening),
            name=f"vaultd-worker-{index}",
        )
        for index in range(settings.workers)
    ]
    stopping = False

    def forward(signum: int, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                with contextlib.suppress(ProcessLookupError):  # it ended in between
                    os.kill(worker.pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    for worker in workers:
        worker.start()
    log.info("started %d workers (pids %s)", len(workers), ", ".join(str(w.pid) for w in workers))
    if stopping:  # a signal came while workers were starting
        forward(signal.SIGTERM)

    exit_code = 0  # the first failed worker's: 2 tells a supervisor "configuration", 1 "runtime"
    running = list(workers)
    while running:
        ended = wait([worker.sentinel for worker in running])
        for worker in [w for w in running if w.sentinel in ended]:
            running.remove(worker)
            worker.join()
            if worker.exitcode == 0:
                continue
            code = worker.exitcode or 1
            exit_code = exit_code or (code if code > 0 else 1)  # < 0: killed by a signal
            if not stopping:
                log.error(
                    "worker pid %s exited with code %s; stopping the others",
                    worker.pid,
                    worker.exitcode,
                )
                forward(signal.SIGTERM)
    log.info("all workers stopped")
    return exit_code


def _worker(fields: dict[str, Any], listening: Barrier | None = None) -> None:
    settings = Settings.model_validate(fields)
    logs.configure(settings.log_format, settings.log_level)

    async def all_listening() -> None:
        # A worker that never binds breaks the barrier for the others: each then exits 1, and
        # the parent with them, rather than serving at part capacity.
        if listening is not None:
            await asyncio.to_thread(listening.wait, ALL_LISTENING_TIMEOUT_SECONDS)

    try:
        eventloop.run(serve(settings, ready=all_listening))
    except Exception as exc:
        # The same one line `vaultd serve` prints, and its exit code for the parent to pass on.
        failure = startup.describe(exc, listen=settings.listen, redis_url=settings.redis_url)
        if failure is None:
            raise
        print(f"vaultd: worker {os.getpid()}: {failure.message}", file=sys.stderr, flush=True)
        sys.exit(failure.exit_code)
