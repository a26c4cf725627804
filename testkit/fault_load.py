"""A mixed create/update load that remembers what vaultd acknowledged, and the checks after.

Every fault test drives vaultd with `Load` while it breaks something, then runs a `Verifier`.
Each write ends in one of three ways, and the tracker keeps what each allows a later read to see:

- acknowledged (OK): vaultd promised it, so its version reads back with its value, forever;
- refused (a code that says nothing was done, e.g. ALREADY_EXISTS): it must not show up;
- unknown (UNAVAILABLE, a deadline, anything else): it may or may not have happened, so a read
  may see it or what was there before.

Writes to one object are issued one after another. These tests kill backends rather than freeze
them, so by the time a worker sends its next write to an object, an earlier write with an
unknown outcome has either taken effect or never will: a dead Redis or vaultd loses what it had
not executed, and a deadline cancels the server's handler. Hence only unknown writes *after* the
last acknowledged one are candidates for the current value, and an older one showing up is a
lost update.

Every call carries `authorization: Bearer API_KEY`; the tests start vaultd with API_KEY as its
bootstrap key (VAULTD_BOOTSTRAP_API_KEY).
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from testkit.grpc_errors import details_of
from vaultd.v1 import object_service_pb2 as pb
from vaultd.v1 import object_service_pb2_grpc as pb_grpc

T = TypeVar("T")

# The shape vaultd accepts: sk_ and 43 base64url characters (32 bytes); fixed, so a failing
# run can be replayed by hand with grpcurl.
API_KEY = "sk_" + "faults" * 7 + "K"
AUTH = (("authorization", f"Bearer {API_KEY}"),)

OK = "OK"
BACKEND_UNAVAILABLE = "UNAVAILABLE/BACKEND_UNAVAILABLE"
CLIENT_DEADLINE = "DEADLINE_EXCEEDED"
TRANSPORT_UNAVAILABLE = "UNAVAILABLE"
"""No vaultd status details: the client could not reach vaultd (it is down), not a reply."""

BACKEND_FAULT_STATUSES = frozenset({OK, BACKEND_UNAVAILABLE, CLIENT_DEADLINE})
"""All a client may see while vaultd is up and its storage or KMS is failing
(docs/ARCHITECTURE.md section 7)."""

# Codes that say the call changed nothing; every other failure leaves the outcome unknown.
_REFUSALS = frozenset(
    {
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)
MAX_OPS_PER_WORKER = 100_000
"""A bound on each worker's loop; in practice the test stops the load long before."""
VERIFY_ATTEMPTS = 5
VERIFY_DEADLINE = 10.0
VERIFY_RETRY_SECONDS = 0.3
MAX_LIST_PAGES = 1_000


def status_name(error: grpc.aio.AioRpcError) -> str:
    """CODE/REASON for a vaultd error, CODE alone when the status carries no vaultd details."""
    details = details_of(error)
    return f"{details.code.name}/{details.reason}" if details.reason else details.code.name


@dataclass
class FaultReport:
    """What one fault test exercised, printed at the end of the run (tests/faults/conftest.py)."""

    writes_acknowledged: int = 0
    writes_verified: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    notes: dict[str, int | float | str] = field(default_factory=dict)

    def note(self, name: str, value: int | float | str) -> None:
        self.notes[name] = value

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Note how long `step` took, so a slow CI run shows where its time went."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.notes[f"{step} s"] = round(time.monotonic() - began, 2)

    def summary(self) -> str:
        statuses = ", ".join(f"{k}={v}" for k, v in sorted(self.statuses.items())) or "none"
        notes = "".join(f"; {k}={v}" for k, v in self.notes.items())
        return (
            f"writes acknowledged={self.writes_acknowledged} "
            f"writes verified={self.writes_verified} statuses seen: {statuses}{notes}"
        )

    def as_properties(self) -> list[tuple[str, object]]:
        return [
            ("writes_acknowledged", self.writes_acknowledged),
            ("writes_verified", self.writes_verified),
            ("statuses", dict(self.statuses)),
            *self.notes.items(),
        ]

    def assert_statuses(self, allowed: frozenset[str] | set[str]) -> None:
        unexpected = {k: v for k, v in self.statuses.items() if k not in allowed}
        assert not unexpected, f"statuses outside {sorted(allowed)}: {unexpected}"


@dataclass
class Write:
    value: bytes
    version_id: str


@dataclass
class Tracked:
    """One object the load created (or tried to), and what a read of it may return."""

    name: str
    context: dict[str, str]
    object_id: str | None = None
    acked: list[Write] = field(default_factory=list)
    unknown: list[bytes] = field(default_factory=list)
    """Values of writes with an unknown outcome since the last acknowledged write."""
    writes: int = 0

    def acknowledge(self, value: bytes, version_id: str) -> None:
        self.acked.append(Write(value, version_id))
        self.unknown.clear()

    def candidates(self) -> set[bytes]:
        last = [self.acked[-1].value] if self.acked else []
        return {*last, *self.unknown}


class Load:
    """`workers` concurrent callers, each creating objects and updating its own ones."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        report: FaultReport,
        *,
        prefix: str,
        workers: int = 8,
        create_share: float = 0.4,
        fresh_context_share: float = 0.1,
        deadline: float = 3.0,
        pause_after_failure: float = 0.05,
        seed: int | None = None,
    ) -> None:
        self.objects = pb_grpc.ObjectServiceStub(channel)
        self.report = report
        self.prefix = prefix
        self.workers = workers
        self.create_share = create_share
        # A context no one used yet makes vaultd create a KEK inside the write: that path must
        # fail as cleanly as the object write itself.
        self.fresh_context_share = fresh_context_share
        self.deadline = deadline
        # While the backend is down calls fail at once; a short pause keeps the workers from
        # spinning the 2 CPUs the recovery needs.
        self.pause_after_failure = pause_after_failure
        self.seed = random.randrange(1 << 32) if seed is None else seed
        self.tracked: list[Tracked] = []
        self.phase = "start"
        self.by_phase: Counter[tuple[str, str]] = Counter()
        self.in_flight = 0
        self._runs = 0
        # Each worker's objects, kept across runs so a later run updates what earlier ones made.
        self._mine: dict[int, list[Tracked]] = {}
        self.environment_ids: set[str] = set()
        """The environments vaultd reported the acknowledged writes in (the API key's)."""
        self._acked_by_phase: Counter[str] = Counter()

    def seen(self, phase: str) -> Counter[str]:
        """The statuses of calls that completed during `phase`."""
        return Counter({s: n for (p, s), n in self.by_phase.items() if p == phase})

    def acked(self, phase: str) -> int:
        return self._acked_by_phase[phase]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        """Run the workers for the body of the `async with`; on exit wait for them to stop."""
        stop = asyncio.Event()
        self._runs += 1
        tasks = [asyncio.create_task(self._worker(i, stop)) for i in range(self.workers)]
        try:
            yield self
        finally:
            stop.set()
            # Each call is bounded by its deadline, so the workers stop within one of them.
            async with asyncio.timeout(self.deadline + 10):
                await asyncio.gather(*tasks)

    async def wait_until(self, what: str, condition: Callable[[], bool], within: float) -> float:
        """Poll `condition` (bounded); return the seconds it took, fail naming `what`."""
        began = time.monotonic()
        while time.monotonic() - began < within:
            if condition():
                return time.monotonic() - began
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"{what}: not reached within {within}s (phase {self.phase}, "
            f"statuses {dict(self.seen(self.phase))})"
        )

    async def _worker(self, index: int, stop: asyncio.Event) -> None:
        run = self._runs
        rng = random.Random(f"{self.seed}-{run}-{index}")
        mine = self._mine.setdefault(index, [])
        for n in range(MAX_OPS_PER_WORKER):
            if stop.is_set():
                return
            created = [t for t in mine if t.object_id is not None]
            if not created or rng.random() < self.create_share:
                # Unique across runs and workers: a name is only ever created once by the load.
                name = f"{self.prefix}-r{run}-w{index}-{n}"
                tracked = Tracked(name, self._context(rng, f"{run}_{index}_{n}"))
                mine.append(tracked)
                self.tracked.append(tracked)
                done = await self._create(tracked, self._value(tracked, rng))
            else:
                done = await self._update(rng.choice(created), rng)
            if not done:
                await asyncio.sleep(self.pause_after_failure)

    def _context(self, rng: random.Random, unique: str) -> dict[str, str]:
        if rng.random() < self.fresh_context_share:
            return {"organization_id": f"org_fresh_{self.seed}_{unique}"}
        return {"organization_id": f"org_{rng.randrange(4)}", "app": "faults"}

    @staticmethod
    def _value(tracked: Tracked, rng: random.Random) -> bytes:
        # Unique per write, so a read tells exactly which write it sees; sizes vary a little.
        tracked.writes += 1
        return f"{tracked.name}#{tracked.writes}:".encode() + rng.randbytes(rng.randint(8, 2048))

    def _record(self, status: str) -> None:
        self.report.statuses[status] += 1
        self.by_phase[self.phase, status] += 1

    def _failed(self, tracked: Tracked, value: bytes, error: grpc.aio.AioRpcError) -> None:
        self._record(status_name(error))
        if error.code() not in _REFUSALS:
            tracked.unknown.append(value)

    def _succeeded(self, tracked: Tracked, value: bytes, metadata: pb.ObjectMetadata) -> None:
        self._record(OK)
        self.environment_ids.add(metadata.environment_id)
        tracked.acknowledge(value, metadata.version_id)
        self.report.writes_acknowledged += 1
        self._acked_by_phase[self.phase] += 1

    async def _create(self, tracked: Tracked, value: bytes) -> bool:
        request = pb.CreateObjectRequest(
            name=tracked.name, value=value, key_context=tracked.context
        )
        self.in_flight += 1
        try:
            reply = await self.objects.CreateObject(request, timeout=self.deadline, metadata=AUTH)
        except grpc.aio.AioRpcError as error:
            self._failed(tracked, value, error)
            return False
        finally:
            self.in_flight -= 1
        tracked.object_id = reply.metadata.id
        self._succeeded(tracked, value, reply.metadata)
        return True

    async def _update(self, tracked: Tracked, rng: random.Random) -> bool:
        assert tracked.object_id is not None
        value = self._value(tracked, rng)
        request = pb.UpdateObjectRequest(id=tracked.object_id, value=value)
        self.in_flight += 1
        try:
            reply = await self.objects.UpdateObject(request, timeout=self.deadline, metadata=AUTH)
        except grpc.aio.AioRpcError as error:
            self._failed(tracked, value, error)
            return False
        finally:
            self.in_flight -= 1
        self._succeeded(tracked, value, reply.metadata)
        return True


async def recorded(report: FaultReport, call: Awaitable[T]) -> tuple[T | None, str]:
    """Await one call; return its reply (None on error) and its status, counted in `report`."""
    try:
        reply = await call
    except grpc.aio.AioRpcError as error:
        status = status_name(error)
        report.statuses[status] += 1
        return None, status
    report.statuses[OK] += 1
    return reply, OK


async def _steady(call: Callable[[], Awaitable[T]]) -> T:
    """A verification read, retried a few times only if vaultd is briefly unavailable: what is
    checked is what the data says once it answers, not whether it answers at once."""
    for attempt in range(VERIFY_ATTEMPTS):
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == VERIFY_ATTEMPTS - 1:
                raise
            await asyncio.sleep(VERIFY_RETRY_SECONDS)
    raise AssertionError("unreachable")


class Verifier:
    """Reads back everything a Load tracked and lists what breaks the promises."""

    def __init__(
        self, channel: grpc.aio.Channel, report: FaultReport, *, parallel: int = 16
    ) -> None:
        self.objects = pb_grpc.ObjectServiceStub(channel)
        self.report = report
        self.violations: list[str] = []
        self.counts: Counter[str] = Counter()
        self._limit = asyncio.Semaphore(parallel)

    async def verify(
        self, tracked: list[Tracked], *, claim_names: bool = True, prefix: str = ""
    ) -> list[str]:
        """Check every tracked object and the listing; return the violations (none is good).

        The listing covers the names starting with `prefix`: the load's own, when the test
        wrote other objects too.

        `claim_names`: for each name whose create was not acknowledged and that resolves to
        nothing, create an object with that name now: a name held by an object that does not
        exist would refuse it. (Off where writes cannot succeed yet, e.g. with no replica.)
        """
        self.violations = []
        self.counts = Counter()
        await asyncio.gather(*(self._guarded(t, claim_names) for t in tracked))
        await self._check_listing(tracked, prefix)
        self.counts["violations"] = len(self.violations)
        # The last pass covers every write acknowledged up to it, so it is the one reported.
        self.report.writes_verified = self.counts.pop("writes verified", 0)
        self.report.notes.update(self.counts)
        return self.violations

    async def _guarded(self, tracked: Tracked, claim_names: bool) -> None:
        async with self._limit:
            try:
                if tracked.object_id is not None:
                    await self._check_created(tracked)
                else:
                    await self._check_unacknowledged(tracked, claim_names)
            except grpc.aio.AioRpcError as error:
                self.violations.append(f"{tracked.name}: read failed with {status_name(error)}")

    async def _check_created(self, t: Tracked) -> None:
        assert t.object_id is not None
        object_id = t.object_id
        got = (await _steady(functools.partial(self._get, object_id))).object
        if got.value not in t.candidates():
            self.violations.append(
                f"{t.name}: current value is none of the {len(t.candidates())} it may be "
                f"(acknowledged writes {len(t.acked)}, unknown since {len(t.unknown)})"
            )
        by_name = await _steady(functools.partial(self._get_by_name, t.name))
        if by_name.object.id != object_id:
            self.violations.append(f"{t.name}: resolves to {by_name.object.id}, not {object_id}")
        versions = (await _steady(functools.partial(self._versions, object_id))).versions
        listed = {v.id for v in versions}
        current = [v.id for v in versions if v.current_version]
        if len(current) != 1:
            self.violations.append(f"{t.name}: {len(current)} current versions")
        elif current[0] in {w.version_id for w in t.acked[:-1]}:
            self.violations.append(f"{t.name}: an older acknowledged version is current again")
        for write in t.acked:
            if write.version_id not in listed:
                self.violations.append(f"{t.name}: acknowledged {write.version_id} not listed")
                continue
            old = await _steady(functools.partial(self._get_version, object_id, write.version_id))
            if old.object.value != write.value:
                self.violations.append(f"{t.name}: {write.version_id} reads a different value")
            else:
                self.counts["writes verified"] += 1

    async def _check_unacknowledged(self, t: Tracked, claim_names: bool) -> None:
        try:
            found = await _steady(functools.partial(self._get_by_name, t.name))
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            # The create happened after all: the name must lead to a whole, readable object
            # holding that create's value (nothing else was ever written to it).
            if found.object.value not in t.unknown:
                self.violations.append(f"{t.name}: unacknowledged create reads a foreign value")
            self.counts["unacknowledged creates found"] += 1
            return
        if not claim_names:
            return
        await self._claim(t)

    async def _claim(self, t: Tracked) -> None:
        """Create `t.name` now. A create whose reply is lost may have happened, and a plain retry
        would then be refused as NAME_TAKEN by itself: look the name up before each retry."""
        value = f"{t.name}#claimed".encode()
        request = pb.CreateObjectRequest(name=t.name, value=value, key_context=t.context)
        status = ""
        for _ in range(VERIFY_ATTEMPTS):
            try:
                reply = await self.objects.CreateObject(
                    request, timeout=VERIFY_DEADLINE, metadata=AUTH
                )
            except grpc.aio.AioRpcError as error:
                status = status_name(error)
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    break
                await asyncio.sleep(VERIFY_RETRY_SECONDS)
                try:
                    found = await _steady(functools.partial(self._get_by_name, t.name))
                except grpc.aio.AioRpcError:
                    continue  # not there (or still unavailable): create again
                if found.object.value != value:
                    status += ", then the name held another value"
                    break
                metadata = found.object.metadata
            else:
                metadata = reply.metadata
            # Tracked from now on like any acknowledged create, so a later pass checks it too.
            t.object_id = metadata.id
            t.acknowledge(value, metadata.version_id)
            self.counts["names reclaimed"] += 1
            return
        self.violations.append(f"{t.name}: not found, yet creating it fails with {status}")

    async def _check_listing(self, tracked: list[Tracked], prefix: str) -> None:
        """Every listed object reads, and the listing holds exactly the objects that exist."""
        by_name = {t.name: t for t in tracked}
        listed: dict[str, str] = {}
        after = ""
        for _ in range(MAX_LIST_PAGES):
            request = pb.ListObjectsRequest(limit=100, after=after, name_prefix=prefix)
            page = await _steady(functools.partial(self._list, request))
            listed.update((d.name, d.id) for d in page.objects)
            after = page.list_metadata.after
            if not after:
                break
        else:
            self.violations.append(f"listing did not end within {MAX_LIST_PAGES} pages")

        async def readable(object_id: str) -> None:
            async with self._limit:
                try:
                    await _steady(functools.partial(self._get, object_id))
                except grpc.aio.AioRpcError as error:
                    self.violations.append(f"listed {object_id} reads {status_name(error)}")

        await asyncio.gather(*(readable(i) for i in listed.values()))
        for name, object_id in listed.items():
            t = by_name.get(name)
            if t is None:
                self.violations.append(f"listed {name!r} was never written")
            elif t.object_id is not None and t.object_id != object_id:
                self.violations.append(f"listed {name} has id {object_id}, not {t.object_id}")
        for t in tracked:
            if t.object_id is not None and t.name not in listed:
                self.violations.append(f"{t.name}: acknowledged object missing from the listing")
        self.counts["objects listed"] = len(listed)

    async def _get(self, object_id: str) -> pb.GetObjectResponse:
        request = pb.GetObjectRequest(id=object_id)
        reply: pb.GetObjectResponse = await self.objects.GetObject(
            request, timeout=VERIFY_DEADLINE, metadata=AUTH
        )
        return reply

    async def _list(self, request: pb.ListObjectsRequest) -> pb.ListObjectsResponse:
        reply: pb.ListObjectsResponse = await self.objects.ListObjects(
            request, timeout=VERIFY_DEADLINE, metadata=AUTH
        )
        return reply

    async def _get_by_name(self, name: str) -> pb.GetObjectByNameResponse:
        request = pb.GetObjectByNameRequest(name=name)
        reply: pb.GetObjectByNameResponse = await self.objects.GetObjectByName(
            request, timeout=VERIFY_DEADLINE, metadata=AUTH
        )
        return reply

    async def _versions(self, object_id: str) -> pb.ListObjectVersionsResponse:
        request = pb.ListObjectVersionsRequest(id=object_id)
        reply: pb.ListObjectVersionsResponse = await self.objects.ListObjectVersions(
            request, timeout=VERIFY_DEADLINE, metadata=AUTH
        )
        return reply

    async def _get_version(self, object_id: str, version_id: str) -> pb.GetObjectVersionResponse:
        request = pb.GetObjectVersionRequest(id=object_id, version_id=version_id)
        reply: pb.GetObjectVersionResponse = await self.objects.GetObjectVersion(
            request, timeout=VERIFY_DEADLINE, metadata=AUTH
        )
        return reply
