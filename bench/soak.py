"""Soak a running vaultd: every RPC at high concurrency for a while, then prove nothing was lost.

    python -m bench.soak --target 127.0.0.1:50051 [--api-key sk_...] --duration 300 \\
        --concurrency 64 [--check-store redis://127.0.0.1:6379/0 | --check-data-dir DIR] \\
        [--failover-sentinel 127.0.0.1:26379 --failover-service NAME --failover-every 30]

With --failover-sentinel, the soak also forces a Sentinel failover (SENTINEL FAILOVER) every
--failover-every seconds while the load runs: on a vaultd with `?wait_replicas=1`, every write
acknowledged across the failovers must still read back afterwards.

A real client: the generated stubs (vaultd.v1) over grpc.aio, nothing from inside vaultd. While
the load runs it records every write it sends. An acknowledged write is known exactly (its value
and version id); a write whose call ended without an answer (deadline, UNAVAILABLE) may or may
not have happened, so it is tracked as "either old or new". Workers own private objects (create,
read, update with and without version_check, delete) and share a few objects that every worker
updates at once, with and without version_check, and now and then deletes with version_check.
Data keys are created, decrypted and rekeyed; Encrypt/Decrypt make round trips.

Afterwards it checks (docs/ARCHITECTURE.md sections 6 and 7):
- every acknowledged write reads back with its value (GetObjectVersion), and the current value
  is the write ListObjectVersions calls current; an unknown outcome may have landed or not;
- ListObjectVersions holds every acknowledged version id, in an order that agrees with real
  time (a write acknowledged before another was sent comes first), a version_check write
  directly after the version it checked, nothing that was never written, and exactly one
  current version, the newest, equal to GetObject's;
- deleted objects are NOT_FOUND by id and by name, and ListObjects shows exactly the live ones;
- every data key decrypts to the same key, every sealed blob to its plaintext;
- with --check-store / --check-data-dir: no written value, plaintext or data key at rest.

It prints a summary table and exits 1 on any violation or any INTERNAL/UNKNOWN status, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import secrets
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vaultd.v1 import key_service_pb2 as kpb
from vaultd.v1 import key_service_pb2_grpc as kpb_grpc
from vaultd.v1 import object_service_pb2 as opb
from vaultd.v1 import object_service_pb2_grpc as opb_grpc

C = grpc.StatusCode
# The call ended without telling whether it happened: the write may or may not have landed.
UNKNOWN_OUTCOME = frozenset(
    {C.UNAVAILABLE, C.DEADLINE_EXCEEDED, C.CANCELLED, C.INTERNAL, C.UNKNOWN}
)
# Refusals a healthy server may give any call under load; they are counted, never violations.
TRANSIENT = frozenset({C.UNAVAILABLE, C.DEADLINE_EXCEEDED, C.CANCELLED, C.RESOURCE_EXHAUSTED})
FAILOVER_SETTLE_SECONDS = 5.0
"""A Sentinel failover (demote, promote, reconnect) is over well within this on one host."""
# "No client input ever yields INTERNAL or UNKNOWN" (docs/ARCHITECTURE.md section 7).
FATAL = frozenset({C.INTERNAL, C.UNKNOWN})

SERVICES = (
    opb.DESCRIPTOR.services_by_name["ObjectService"],
    kpb.DESCRIPTOR.services_by_name["KeyService"],
)
RPCS = tuple(f"{s.name}.{m.name}" for s in SERVICES for m in s.methods)
"""Every RPC the soak must exercise, from the descriptors: a new one shows up with 0 ops."""


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    target: str
    api_key: str | None
    duration: float
    concurrency: int
    check_store: str | None
    check_data_dir: Path | None
    timeout: float
    seed: int
    max_value_bytes: int
    shared_objects: int
    json_out: Path | None
    failover_sentinel: str | None = None
    failover_service: str = "mymaster"
    failover_every: float = 30.0


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--target", required=True, help="HOST:PORT of a running vaultd")
    parser.add_argument("--api-key", help="sent as `authorization: Bearer <key>` on every call")
    parser.add_argument("--duration", type=float, required=True, help="seconds of load")
    parser.add_argument("--concurrency", type=int, required=True, help="calls in flight")
    at_rest = parser.add_mutually_exclusive_group()
    at_rest.add_argument("--check-store", help="redis:// URL to scan for plaintext afterwards")
    at_rest.add_argument("--check-data-dir", type=Path, help="embedded store directory to scan")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each call (s)")
    parser.add_argument("--seed", type=int, help="workload seed (default: random, printed)")
    parser.add_argument(
        "--max-value-bytes", type=int, default=4096, help="largest value or plaintext written"
    )
    parser.add_argument(
        "--shared-objects", type=int, help="objects all workers update (default concurrency/4)"
    )
    parser.add_argument("--json-out", type=Path, help="also write the summary here as JSON")
    parser.add_argument("--failover-sentinel", help="HOST:PORT of a Sentinel to fail over")
    parser.add_argument("--failover-service", default="mymaster", help="its master's name")
    parser.add_argument(
        "--failover-every", type=float, default=30.0, help="seconds between failovers (30)"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or args.max_value_bytes < 64:
        parser.error("--duration must be > 0, --concurrency >= 1, --max-value-bytes >= 64")
    return Config(
        target=args.target,
        api_key=args.api_key,
        duration=args.duration,
        concurrency=args.concurrency,
        check_store=args.check_store,
        check_data_dir=args.check_data_dir,
        timeout=args.timeout,
        seed=args.seed if args.seed is not None else secrets.randbits(32),
        max_value_bytes=args.max_value_bytes,
        shared_objects=args.shared_objects or max(2, args.concurrency // 4),
        json_out=args.json_out,
        failover_sentinel=args.failover_sentinel,
        failover_service=args.failover_service,
        failover_every=args.failover_every,
    )


# --- counting ---------------------------------------------------------------------------------


@dataclass
class RpcStats:
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Stats:
    """Calls per RPC: successes, errors by status code, latencies."""

    def __init__(self) -> None:
        self.rpcs: defaultdict[str, RpcStats] = defaultdict(RpcStats)
        self.fatal = 0

    def record(self, rpc: str, code: grpc.StatusCode, seconds: float) -> None:
        entry = self.rpcs[rpc]
        entry.latencies.append(seconds)
        if code == C.OK:
            entry.ok += 1
        else:
            entry.errors[code.name] += 1
            self.fatal += code in FATAL


class Violations:
    """Broken promises, by kind, each with one line of evidence (ids, never values)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, kind: str, detail: str) -> None:
        self.items.append((kind, detail))

    def by_kind(self) -> Counter[str]:
        return Counter(kind for kind, _ in self.items)


# --- the client -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    code: grpc.StatusCode
    response: Any
    error: grpc.aio.AioRpcError | None
    sent: float
    done: float

    @property
    def ok(self) -> bool:
        return bool(self.code == C.OK)

    @property
    def outcome_unknown(self) -> bool:
        return self.code in UNKNOWN_OUTCOME

    def error_metadata(self) -> dict[str, str]:
        """ErrorInfo.metadata from the rich status details, as any client reads it."""
        if self.error is None:
            return {}
        raw = dict(self.error.trailing_metadata() or ()).get("grpc-status-details-bin")
        if raw is None:
            return {}
        for packed in status_pb2.Status.FromString(raw).details:
            info = error_details_pb2.ErrorInfo()
            if packed.Unpack(info):
                return dict(info.metadata)
        return {}


class Client:
    """Calls RPCs by name over a few channels, with the API key and a deadline on each."""

    def __init__(self, config: Config, channels: Sequence[grpc.aio.Channel], stats: Stats) -> None:
        self._stubs = [
            (
                opb_grpc.ObjectServiceStub(ch),  # type: ignore[no-untyped-call]
                kpb_grpc.KeyServiceStub(ch),  # type: ignore[no-untyped-call]
            )
            for ch in channels
        ]
        self._metadata = (("authorization", f"Bearer {config.api_key}"),) if config.api_key else ()
        self._timeout = config.timeout
        self._turn = 0
        self.stats = stats

    async def call(self, rpc: str, request: Message) -> Reply:
        service, method = rpc.split(".")
        self._turn = (self._turn + 1) % len(self._stubs)
        stub = self._stubs[self._turn][0 if service == "ObjectService" else 1]
        sent = time.monotonic()
        try:
            response = await getattr(stub, method)(
                request, timeout=self._timeout, metadata=self._metadata
            )
            code, error = C.OK, None
        except grpc.aio.AioRpcError as exc:
            response, code, error = None, exc.code(), exc
        done = time.monotonic()
        self.stats.record(rpc, code, done - sent)
        return Reply(code, response, error, sent, done)


# --- what was written -------------------------------------------------------------------------


def digest(value: bytes) -> bytes:
    """Writes are remembered by digest: a long soak would not fit its values in memory."""
    return hashlib.blake2b(value, digest_size=16).digest()


@dataclass
class Write:
    value: bytes  # the digest of the value written
    sent: float
    base_version: str | None = None  # the version_check it carried
    acked: float | None = None  # when it was acknowledged; None: not (yet), or outcome unknown
    version_id: str | None = None  # from the acknowledgement, or from a read that saw it
    refused: bool = False  # definitely did not happen (ABORTED, NOT_FOUND, rate limited)


class Deletion(Enum):
    NONE = "none"
    SENT = "sent"  # in flight: concurrent calls may find the object gone
    ACKED = "acked"
    UNKNOWN = "unknown"


@dataclass
class Tracked:
    """One object and every write sent to it."""

    name: str
    shared: bool
    object_id: str | None = None  # None until its create is acknowledged
    writes: list[Write] = field(default_factory=list)
    by_value: dict[bytes, Write] = field(default_factory=dict)
    deletion: Deletion = Deletion.NONE
    delete_acked: float | None = None
    current_hint: str | None = None  # private objects: the version believed current
    # Shared objects: half may be deleted under load; the other half live the whole run, so
    # their histories grow long under concurrent writers and are all checked at the end.
    retirable: bool = False
    uncertain: bool = False  # a call on it ended with its outcome unknown

    def add(self, write: Write) -> Write:
        self.writes.append(write)
        self.by_value[write.value] = write
        return write

    def by_version(self) -> dict[str, Write]:
        return {w.version_id: w for w in self.writes if w.version_id is not None}

    def last_acked(self) -> Write | None:
        acked = [w for w in self.writes if w.acked is not None]
        return max(acked, key=lambda w: w.acked or 0.0) if acked else None


@dataclass(frozen=True)
class DataKeyRecord:
    id: str
    data_key: bytes
    encrypted_keys: bytes


@dataclass(frozen=True)
class SealedRecord:
    ciphertext: bytes
    associated_data: bytes
    plaintext: bytes  # the digest


class Ledger:
    """Everything the soak wrote, and the marks that make its values findable at rest."""

    def __init__(self, run_id: str, max_value_bytes: int) -> None:
        self.run_id = run_id
        self.name_prefix = f"soak-name-{run_id}-"
        self.value_mark = f"soak-secret-{run_id}:".encode()
        self.max_value_bytes = max_value_bytes
        self.objects: list[Tracked] = []
        self.by_name: dict[str, Tracked] = {}
        self.shared: list[Tracked] = []
        self.data_keys: list[DataKeyRecord] = []
        self.sealed: list[SealedRecord] = []
        self.contexts = [{"organization_id": f"soak-{run_id}-org{i}"} for i in range(8)]
        self.contexts += [c | {"region": "eu"} for c in self.contexts[:2]]
        self._sequence = 0

    def next(self) -> int:
        self._sequence += 1
        return self._sequence

    def track(self, shared: bool) -> Tracked:
        tracked = Tracked(f"{self.name_prefix}{self.next()}", shared)
        self.objects.append(tracked)
        self.by_name[tracked.name] = tracked
        return tracked

    def new_value(self, rng: random.Random) -> bytes:
        """Unique (so a read tells which write it saw), marked, of a random size."""
        size = rng.choice((16, 64, 256, 1024, self.max_value_bytes))
        head = self.value_mark + b"%d:" % self.next()
        return head + rng.randbytes(max(0, rng.randint(0, size) - len(head)))


# --- the load ---------------------------------------------------------------------------------

Action = Callable[[], Awaitable[None]]


class Worker:
    """One of `concurrency` loops, each with one call in flight at a time."""

    PRIVATE_LIMIT = 16  # live private objects per worker; past it, a create turns into a delete

    def __init__(
        self, client: Client, ledger: Ledger, violations: Violations, rng: random.Random
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.violations = violations
        self.rng = rng
        self.private: list[Tracked] = []
        self.actions: list[tuple[Action, int]] = [
            (self.create_private, 8),
            (self.update_private, 10),
            (self.read_private, 8),
            (self.delete_private, 4),
            (self.undelete_private, 1),
            (self.update_shared, 8),
            (self.update_shared_checked, 8),
            (self.read_shared, 6),
            (self.retire_shared, 1),
            (self.list_versions, 3),
            (self.get_version, 4),
            (self.list_objects, 2),
            (self.create_data_key, 5),
            (self.decrypt_data_key, 5),
            (self.rekey_data_key, 3),
            (self.encrypt, 5),
            (self.decrypt, 5),
        ]

    async def run(self, until: float) -> None:
        functions, weights = zip(*self.actions, strict=True)
        while time.monotonic() < until:
            await self.rng.choices(functions, weights)[0]()

    def unexpected(self, rpc: str, reply: Reply, why: str = "") -> None:
        unexpected(self.violations, rpc, reply, why)

    # objects this worker owns -------------------------------------------------------------

    async def create_private(self) -> None:
        if len(self.private) >= self.PRIVATE_LIMIT:
            return await self.delete_private()
        tracked = await create(self.client, self.ledger, self.rng, self.violations, shared=False)
        if tracked is not None:
            self.private.append(tracked)

    async def update_private(self) -> None:
        if not self.private:
            return await self.create_private()
        t = self.rng.choice(self.private)
        check = t.current_hint if self.rng.random() < 0.5 and not t.uncertain else None
        reply, write = await update(self.client, self.ledger, self.rng, self.violations, t, check)
        if reply.ok:
            t.current_hint = write.version_id
        elif reply.outcome_unknown:
            t.uncertain = True
        elif reply.code == C.ABORTED and t.uncertain:
            pass  # an earlier write of unknown outcome may have landed after all
        else:
            self.unexpected("UpdateObject", reply, f"on private object {t.object_id}")

    async def read_private(self) -> None:
        if not self.private:
            return await self.create_private()
        t = self.rng.choice(self.private)
        request: Message
        if self.rng.random() < 0.3:
            rpc, request = "GetObjectByName", opb.GetObjectByNameRequest(name=t.name)
        else:
            rpc, request = "GetObject", opb.GetObjectRequest(id=t.object_id)
        reply = await self.client.call(f"ObjectService.{rpc}", request)
        if not reply.ok:
            return self.unexpected(rpc, reply, f"of private object {t.object_id}")
        obj = reply.response.object
        if obj.id != t.object_id or obj.name != t.name:
            self.violations.add("read the wrong object", f"{t.name}: {obj.id} != {t.object_id}")
        self.check_private_read(t, obj.value, obj.metadata.version_id)
        if self.rng.random() < 0.3:
            await self.describe(t)

    def check_private_read(self, t: Tracked, value: bytes, version_id: str) -> None:
        """Only this worker writes `t`: a read sees its last acknowledged write, or (after an
        unknown outcome) one of the writes whose outcome is unknown."""
        last = t.last_acked()
        allowed = {last.value} if last else set()
        allowed |= {w.value for w in t.writes if w.acked is None and not w.refused}
        seen = t.by_value.get(digest(value))
        if seen is None or seen.value not in allowed:
            self.violations.add(
                "read is not the last acknowledged write", f"private object {t.object_id}"
            )
            return
        note_version(self.violations, t, seen, version_id)
        t.current_hint = version_id

    async def describe(self, t: Tracked) -> None:
        reply = await self.client.call(
            "ObjectService.DescribeObject", opb.DescribeObjectRequest(id=t.object_id)
        )
        if not reply.ok:
            return self.unexpected("DescribeObject", reply, f"of private object {t.object_id}")
        if not t.uncertain and reply.response.metadata.version_id != t.current_hint:
            self.violations.add("describe shows another version", f"object {t.object_id}")

    async def delete_private(self) -> None:
        if not self.private:
            return
        t = self.private.pop(self.rng.randrange(len(self.private)))
        check = t.current_hint if self.rng.random() < 0.5 and not t.uncertain else None
        reply = await delete(self.client, t, check)
        if reply.ok:
            await self.expect_gone(t)
        elif reply.code == C.ABORTED and t.uncertain:
            self.private.append(t)
        elif not reply.outcome_unknown:
            self.private.append(t)
            self.unexpected("DeleteObject", reply, f"of private object {t.object_id}")

    async def undelete_private(self) -> None:
        """Delete a private object, see it gone, and bring it back (the soak's servers keep
        the default retention): it then shows its last acknowledged version again."""
        if not self.private:
            return await self.create_private()
        t = self.rng.choice(self.private)
        if t.uncertain:
            return None
        self.private.remove(t)
        reply = await delete(self.client, t, None)
        if not reply.ok:
            if not reply.outcome_unknown:
                self.unexpected("DeleteObject", reply, f"of private object {t.object_id}")
            return None
        await self.expect_gone(t)
        # In flight, the object may be back already: a list made meanwhile may show it.
        t.deletion = Deletion.UNKNOWN
        request = opb.UndeleteObjectRequest(id=t.object_id)
        reply = await self.client.call("ObjectService.UndeleteObject", request)
        if reply.ok:
            t.deletion, t.delete_acked = Deletion.NONE, None
            self.private.append(t)
            await self.describe(t)
        elif not reply.outcome_unknown:
            t.deletion = Deletion.ACKED
            self.unexpected("UndeleteObject", reply, f"of private object {t.object_id}")
        return None

    async def expect_gone(self, t: Tracked) -> None:
        reply = await self.client.call(
            "ObjectService.GetObject", opb.GetObjectRequest(id=t.object_id)
        )
        if reply.code != C.NOT_FOUND and reply.code not in TRANSIENT:
            self.violations.add("deleted object still readable", f"object {t.object_id}")

    # objects every worker shares --------------------------------------------------------

    def pick_shared(self) -> Tracked | None:
        return self.rng.choice(self.ledger.shared) if self.ledger.shared else None

    async def update_shared(self) -> None:
        t = self.pick_shared()
        if t is not None:
            reply, write = await update(
                self.client, self.ledger, self.rng, self.violations, t, None
            )
            self.judge_shared_write(t, reply, write)

    async def update_shared_checked(self) -> None:
        """Read, then write only if nobody wrote in between: a lost update shows up later as a
        version_check write that does not directly follow the version it checked."""
        t = self.pick_shared()
        if t is None:
            return
        base = await self.read(t)
        if base is None:
            return
        reply, write = await update(self.client, self.ledger, self.rng, self.violations, t, base)
        if reply.code != C.ABORTED:
            return self.judge_shared_write(t, reply, write)
        # docs/ARCHITECTURE.md section 6: a stale version_check names the current version in
        # the details.
        if not reply.error_metadata().get("current_version_id", "").startswith("ver_"):
            self.violations.add("ABORTED without the current version id", f"{t.object_id}")

    def judge_shared_write(self, t: Tracked, reply: Reply, write: Write) -> None:
        if reply.ok and t.deletion is Deletion.ACKED and write.sent > (t.delete_acked or 0.0):
            self.violations.add("write acknowledged on an object deleted before", f"{t.object_id}")
        if reply.ok or reply.outcome_unknown:
            return
        if reply.code == C.NOT_FOUND and t.deletion is not Deletion.NONE:
            return  # retired by another worker meanwhile
        self.unexpected("UpdateObject", reply, f"on shared object {t.object_id}")

    async def read_shared(self) -> None:
        t = self.pick_shared()
        if t is not None:
            await self.read(t)

    async def read(self, t: Tracked) -> str | None:
        """GetObject on any tracked object: the value must be one that was written to it, under
        the version id that write got. Returns the version read."""
        reply = await self.client.call(
            "ObjectService.GetObject", opb.GetObjectRequest(id=t.object_id)
        )
        if not reply.ok:
            if not (reply.code == C.NOT_FOUND and t.deletion is not Deletion.NONE):
                self.unexpected("GetObject", reply, f"of object {t.object_id}")
            return None
        obj = reply.response.object
        seen = t.by_value.get(digest(obj.value))
        if seen is None or seen.refused:
            self.violations.add("read a value never written", f"object {t.object_id}")
            return None
        note_version(self.violations, t, seen, obj.metadata.version_id)
        version_id: str = obj.metadata.version_id
        return version_id

    async def retire_shared(self) -> None:
        """Delete a shared object with version_check, racing every other worker's writes."""
        retirable = [t for t in self.ledger.shared if t.retirable]
        if not retirable:
            return
        t = self.rng.choice(retirable)
        base = await self.read(t)
        # No await between this check and delete() marking it: one retirement per object.
        if base is None or t not in self.ledger.shared or t.deletion is not Deletion.NONE:
            return
        reply = await delete(self.client, t, base)
        if reply.ok or reply.outcome_unknown:
            if t in self.ledger.shared:
                self.ledger.shared.remove(t)
            fresh = await create(self.client, self.ledger, self.rng, self.violations, shared=True)
            if fresh is not None:
                fresh.retirable = True
                self.ledger.shared.append(fresh)
        elif reply.code != C.ABORTED:
            self.unexpected("DeleteObject", reply, f"of shared object {t.object_id}")

    # reads over any object -------------------------------------------------------------

    def any_object(self) -> Tracked | None:
        pool = self.private + self.ledger.shared
        return self.rng.choice(pool) if pool else None

    async def list_versions(self) -> None:
        t = self.any_object()
        if t is None:
            return
        reply = await self.client.call(
            "ObjectService.ListObjectVersions", opb.ListObjectVersionsRequest(id=t.object_id)
        )
        if reply.ok:
            versions = reply.response.versions
            current = [v.id for v in versions if v.current_version]
            if len(current) != 1 or not versions or versions[-1].id != current[0]:
                self.violations.add(
                    "not exactly one current version, the newest", f"object {t.object_id}"
                )
        elif not (reply.code == C.NOT_FOUND and t.deletion is not Deletion.NONE):
            self.unexpected("ListObjectVersions", reply, f"of object {t.object_id}")

    async def get_version(self) -> None:
        t = self.any_object()
        known = [w for w in t.writes if w.acked is not None] if t else []
        if t is None or not known:
            return
        write = self.rng.choice(known)
        reply = await self.client.call(
            "ObjectService.GetObjectVersion",
            opb.GetObjectVersionRequest(id=t.object_id, version_id=write.version_id),
        )
        if reply.ok:
            if digest(reply.response.object.value) != write.value:
                self.violations.add(
                    "version reads back another value", f"{t.object_id} {write.version_id}"
                )
        elif not (reply.code == C.NOT_FOUND and t.deletion is not Deletion.NONE):
            self.unexpected("GetObjectVersion", reply, f"{t.object_id} {write.version_id}")

    async def list_objects(self) -> None:
        ascending = self.rng.random() < 0.5
        order = opb.LIST_ORDER_ASCENDING if ascending else opb.LIST_ORDER_DESCENDING
        request = opb.ListObjectsRequest(
            limit=self.rng.randint(1, 100), order=order, name_prefix=self.ledger.name_prefix
        )
        reply = await self.client.call("ObjectService.ListObjects", request)
        if not reply.ok:
            return self.unexpected("ListObjects", reply)
        ids = [o.id for o in reply.response.objects]
        if ids != sorted(ids, reverse=not ascending) or len(set(ids)) != len(ids):
            self.violations.add("list out of order or repeating", f"{len(ids)} ids")
        for entry in reply.response.objects:
            t = self.ledger.by_name.get(entry.name)
            if t is None or (t.object_id is not None and t.object_id != entry.id):
                self.violations.add("listed an object never created", entry.id)
            elif t.deletion is Deletion.ACKED and (t.delete_acked or 0.0) < reply.sent:
                self.violations.add("listed a deleted object", entry.id)

    # data keys and sealed blobs ----------------------------------------------------------

    def context(self) -> dict[str, str]:
        return dict(self.rng.choice(self.ledger.contexts))

    async def create_data_key(self) -> None:
        context = self.context()
        reply = await self.client.call(
            "KeyService.CreateDataKey", kpb.CreateDataKeyRequest(key_context=context)
        )
        if not reply.ok:
            return self.unexpected("CreateDataKey", reply)
        made = reply.response
        if len(made.data_key) != 32 or dict(made.key_context) != context:
            self.violations.add("malformed data key", made.id)
        self.ledger.data_keys.append(DataKeyRecord(made.id, made.data_key, made.encrypted_keys))

    async def decrypt_data_key(self) -> None:
        if not self.ledger.data_keys:
            return await self.create_data_key()
        record = self.rng.choice(self.ledger.data_keys)
        await check_data_key(self.client, self.violations, record)

    async def rekey_data_key(self) -> None:
        if not self.ledger.data_keys:
            return await self.create_data_key()
        record = self.rng.choice(self.ledger.data_keys)
        reply = await self.client.call(
            "KeyService.RekeyDataKey",
            kpb.RekeyDataKeyRequest(
                encrypted_keys=record.encrypted_keys, key_context=self.context()
            ),
        )
        if not reply.ok:
            return self.unexpected("RekeyDataKey", reply)
        made = reply.response
        if (made.id, made.data_key) != (record.id, record.data_key):
            self.violations.add("rekey changed the data key", record.id)
        self.ledger.data_keys.append(DataKeyRecord(made.id, made.data_key, made.encrypted_keys))

    async def encrypt(self) -> None:
        plaintext = self.ledger.new_value(self.rng)
        aad = self.rng.choice((b"", b"soak-aad-%d" % self.ledger.next()))
        reply = await self.client.call(
            "KeyService.Encrypt",
            kpb.EncryptRequest(
                plaintext=plaintext, key_context=self.context(), associated_data=aad
            ),
        )
        if not reply.ok:
            return self.unexpected("Encrypt", reply)
        record = SealedRecord(reply.response.ciphertext, aad, digest(plaintext))
        self.ledger.sealed.append(record)

    async def decrypt(self) -> None:
        if not self.ledger.sealed:
            return await self.encrypt()
        record = self.rng.choice(self.ledger.sealed)
        if self.rng.random() < 0.1:
            return await self.decrypt_with_wrong_aad(record)
        await check_sealed(self.client, self.violations, record)

    async def decrypt_with_wrong_aad(self, record: SealedRecord) -> None:
        request = kpb.DecryptRequest(
            ciphertext=record.ciphertext, associated_data=record.associated_data + b"!"
        )
        reply = await self.client.call("KeyService.Decrypt", request)
        if reply.ok:
            self.violations.add("decrypted with the wrong associated data", "Decrypt")
        elif reply.code != C.INVALID_ARGUMENT:
            self.unexpected("Decrypt", reply, "with the wrong associated data")


# --- the calls that write, shared by the load and its set-up ----------------------------------


def unexpected(violations: Violations, rpc: str, reply: Reply, why: str = "") -> None:
    """A status the situation does not allow: a violation (transient ones are counted only)."""
    if reply.code not in TRANSIENT:
        violations.add(f"unexpected {reply.code.name}", f"{rpc} {why}".strip())


async def create(
    client: Client, ledger: Ledger, rng: random.Random, violations: Violations, *, shared: bool
) -> Tracked | None:
    """CreateObject a new tracked object; None unless acknowledged (then it is not used again,
    and the checks afterwards find out by name whether it exists)."""
    t = ledger.track(shared)
    value = ledger.new_value(rng)
    write = t.add(Write(digest(value), time.monotonic()))
    context = dict(rng.choice(ledger.contexts))
    reply = await client.call(
        "ObjectService.CreateObject",
        opb.CreateObjectRequest(name=t.name, value=value, key_context=context),
    )
    if reply.ok:
        meta = reply.response.metadata
        write.acked, write.version_id = reply.done, meta.version_id
        t.object_id, t.current_hint = meta.id, meta.version_id
        return t
    if reply.outcome_unknown:
        t.uncertain = True
    else:
        write.refused = True
        unexpected(violations, "CreateObject", reply, f"of {t.name}")
    return None


async def update(
    client: Client,
    ledger: Ledger,
    rng: random.Random,
    violations: Violations,
    t: Tracked,
    check: str | None,
) -> tuple[Reply, Write]:
    value = ledger.new_value(rng)
    write = t.add(Write(digest(value), time.monotonic(), base_version=check))
    request = opb.UpdateObjectRequest(id=t.object_id, value=value)
    if check is not None:
        request.version_check = check
    reply = await client.call("ObjectService.UpdateObject", request)
    if reply.ok:
        write.acked = reply.done
        # A read may have seen the value (under its version id) before the acknowledgement came.
        note_version(violations, t, write, reply.response.metadata.version_id)
    elif not reply.outcome_unknown:
        write.refused = True
    return reply, write


async def delete(client: Client, t: Tracked, check: str | None) -> Reply:
    t.deletion = Deletion.SENT
    request = opb.DeleteObjectRequest(id=t.object_id)
    if check is not None:
        request.version_check = check
    reply = await client.call("ObjectService.DeleteObject", request)
    if reply.ok:
        t.deletion, t.delete_acked = Deletion.ACKED, reply.done
    elif reply.outcome_unknown:
        t.deletion = Deletion.UNKNOWN
    else:
        t.deletion = Deletion.NONE
    return reply


def note_version(violations: Violations, t: Tracked, write: Write, version_id: str) -> None:
    """A read saw `write` under `version_id`: it must be the id its acknowledgement gave."""
    if write.version_id is None:
        write.version_id = version_id
    elif write.version_id != version_id:
        violations.add("one write, two version ids", f"object {t.object_id}")


async def check_data_key(client: Client, violations: Violations, record: DataKeyRecord) -> None:
    reply = await client.call(
        "KeyService.DecryptDataKey", kpb.DecryptDataKeyRequest(encrypted_keys=record.encrypted_keys)
    )
    if reply.ok:
        if (reply.response.id, reply.response.data_key) != (record.id, record.data_key):
            violations.add("data key decrypts to another key", record.id)
    elif reply.code not in TRANSIENT:
        violations.add(f"unexpected {reply.code.name}", f"DecryptDataKey {record.id}")


async def check_sealed(client: Client, violations: Violations, record: SealedRecord) -> None:
    reply = await client.call(
        "KeyService.Decrypt",
        kpb.DecryptRequest(ciphertext=record.ciphertext, associated_data=record.associated_data),
    )
    if reply.ok:
        if digest(reply.response.plaintext) != record.plaintext:
            violations.add("blob decrypts to another plaintext", "Decrypt")
    elif reply.code not in TRANSIENT:
        violations.add(f"unexpected {reply.code.name}", "Decrypt of a sealed blob")


# --- the checks afterwards --------------------------------------------------------------------


@dataclass
class Verified:
    writes_acknowledged: int = 0
    writes_unknown: int = 0
    writes_to_check: int = 0  # acknowledged writes to objects that are live at the end
    writes_verified: int = 0  # of those, read back by version with their value
    objects_live: int = 0
    objects_deleted: int = 0
    objects_never_created: int = 0
    data_keys: int = 0
    sealed: int = 0
    at_rest_bytes: int = 0


class Verifier:
    """The invariants over everything the ledger holds, checked once the load has stopped."""

    def __init__(self, client: Client, ledger: Ledger, violations: Violations) -> None:
        self.client = client
        self.ledger = ledger
        self.violations = violations
        self.counts = Verified()
        self.live: set[str] = set()

    async def run(self, concurrency: int) -> Verified:
        gate = asyncio.Semaphore(concurrency)

        async def gated(check: Awaitable[None]) -> None:
            async with gate:
                await check

        checks: list[Awaitable[None]] = [self.check_object(t) for t in self.ledger.objects]
        checks += [check_data_key(self.client, self.violations, r) for r in self.ledger.data_keys]
        checks += [check_sealed(self.client, self.violations, r) for r in self.ledger.sealed]
        await asyncio.gather(*(gated(c) for c in checks))
        await self.check_listing()
        self.counts.data_keys = len(self.ledger.data_keys)
        self.counts.sealed = len(self.ledger.sealed)
        return self.counts

    def add(self, kind: str, t: Tracked, detail: str = "") -> None:
        self.violations.add(kind, f"{t.object_id or t.name} {detail}".strip())

    async def call(self, rpc: str, request: Message) -> Reply:
        reply = await self.client.call(rpc, request)
        if not reply.ok and reply.code != C.NOT_FOUND:
            # Nothing else runs now: every call must answer, and only OK or NOT_FOUND.
            self.violations.add(f"unexpected {reply.code.name}", f"{rpc} while verifying")
        return reply

    async def check_object(self, t: Tracked) -> None:
        self.counts.writes_acknowledged += sum(w.acked is not None for w in t.writes)
        self.counts.writes_unknown += sum(w.acked is None and not w.refused for w in t.writes)
        if t.object_id is None and not await self.resolve_by_name(t):
            self.counts.objects_never_created += 1
            return
        if t.deletion is Deletion.ACKED:
            return await self.check_deleted(t)
        got = await self.call("ObjectService.GetObject", opb.GetObjectRequest(id=t.object_id))
        if got.code == C.NOT_FOUND:
            if t.deletion is Deletion.UNKNOWN:
                return await self.check_deleted(t)
            return self.add("object lost", t)
        if got.ok:
            self.counts.objects_live += 1
            self.counts.writes_to_check += sum(w.acked is not None for w in t.writes)
            self.live.add(t.object_id or "")
            await self.check_history(t, got.response.object)

    async def resolve_by_name(self, t: Tracked) -> bool:
        """A create of unknown outcome: it happened if its name resolves (to its value)."""
        reply = await self.call(
            "ObjectService.GetObjectByName", opb.GetObjectByNameRequest(name=t.name)
        )
        if not reply.ok:
            return False
        obj = reply.response.object
        first = t.writes[0]
        if not first.refused and digest(obj.value) == first.value:
            t.object_id, first.version_id = obj.id, obj.metadata.version_id
            return True
        # Only the create could have made it, and later writes never went to it.
        self.add("name holds a value never written to it", t)
        return False

    async def check_deleted(self, t: Tracked) -> None:
        self.counts.objects_deleted += 1
        for rpc, request in (
            ("ObjectService.GetObject", opb.GetObjectRequest(id=t.object_id)),
            ("ObjectService.GetObjectByName", opb.GetObjectByNameRequest(name=t.name)),
            ("ObjectService.DescribeObject", opb.DescribeObjectRequest(id=t.object_id)),
            ("ObjectService.ListObjectVersions", opb.ListObjectVersionsRequest(id=t.object_id)),
        ):
            reply = await self.call(rpc, request)
            if reply.ok:
                self.add("deleted object still readable", t, rpc)

    async def check_history(self, t: Tracked, obj: opb.Object) -> None:
        reply = await self.call(
            "ObjectService.ListObjectVersions", opb.ListObjectVersionsRequest(id=t.object_id)
        )
        if not reply.ok:
            return self.add("versions of a live object not found", t)
        versions = [v.id for v in reply.response.versions]
        if not versions:
            return self.add("live object without versions", t)
        current = [v.id for v in reply.response.versions if v.current_version]
        if len(current) != 1 or current[0] != versions[-1]:
            self.add("not exactly one current version, the newest", t)
        if obj.metadata.version_id != versions[-1]:
            self.add("GetObject's version is not the current one", t)
        position = {vid: i for i, vid in enumerate(versions)}
        if len(position) != len(versions):
            self.add("a version id listed twice", t)
        known = t.by_version()
        for vid in versions:
            if vid not in known and not await self.adopt(t, vid):
                self.add("history holds a version never written", t, vid)
        self.check_acknowledged_present(t, position)
        self.check_order(t, position)
        current_write = t.by_version().get(versions[-1])
        if current_write is None or digest(obj.value) != current_write.value:
            self.add("current value is not the current version's write", t)
        await self.check_values(t)
        by_name = await self.call(
            "ObjectService.GetObjectByName", opb.GetObjectByNameRequest(name=t.name)
        )
        if not by_name.ok or by_name.response.object.id != t.object_id:
            self.add("name does not resolve to its object", t)

    async def adopt(self, t: Tracked, version_id: str) -> bool:
        """A version no acknowledgement named: it must be a write of unknown outcome."""
        reply = await self.call(
            "ObjectService.GetObjectVersion",
            opb.GetObjectVersionRequest(id=t.object_id, version_id=version_id),
        )
        if not reply.ok:
            return False
        write = t.by_value.get(digest(reply.response.object.value))
        if write is None or write.acked is not None or write.refused:
            return False
        write.version_id = version_id
        return True

    def check_acknowledged_present(self, t: Tracked, position: dict[str, int]) -> None:
        for w in t.writes:
            if w.acked is not None and w.version_id not in position:
                self.add("acknowledged write missing from its history", t, str(w.version_id))

    def check_order(self, t: Tracked, position: dict[str, int]) -> None:
        """Real time, and compare-and-set, agree with the history's order."""
        placed = sorted(
            (
                (position[w.version_id], w)
                for w in t.writes
                if w.acked is not None and w.version_id in position
            ),
            key=lambda pw: pw[0],
        )
        # Walking from the newest: no write may come before (in the history) one that was
        # acknowledged before it was even sent.
        first_acked_newer = float("inf")
        for _, w in reversed(placed):
            if first_acked_newer < w.sent:
                self.add("history order contradicts real time", t, str(w.version_id))
            first_acked_newer = min(first_acked_newer, w.acked or float("inf"))
        for pos, w in placed:
            base = w.base_version
            if base is not None and position.get(base, -2) != pos - 1:
                self.add("version_check write does not follow its version", t, str(w.version_id))

    async def check_values(self, t: Tracked) -> None:
        for w in t.writes:
            if w.acked is None or w.version_id is None:
                continue
            reply = await self.call(
                "ObjectService.GetObjectVersion",
                opb.GetObjectVersionRequest(id=t.object_id, version_id=w.version_id),
            )
            if not reply.ok or digest(reply.response.object.value) != w.value:
                self.add("acknowledged write does not read back", t, w.version_id)
            else:
                self.counts.writes_verified += 1

    async def check_listing(self) -> None:
        listed: list[str] = []
        after = ""
        while True:
            reply = await self.call(
                "ObjectService.ListObjects",
                opb.ListObjectsRequest(
                    limit=100,
                    order=opb.LIST_ORDER_ASCENDING,
                    name_prefix=self.ledger.name_prefix,
                    after=after,
                ),
            )
            if not reply.ok:
                return
            listed += [o.id for o in reply.response.objects]
            after = reply.response.list_metadata.after
            if not after:
                break
        if listed != sorted(set(listed)):
            self.violations.add("listing out of order or repeating", f"{len(listed)} ids")
        for object_id in set(listed) - self.live:
            self.violations.add("listing shows an object that is not live", object_id)
        for object_id in self.live - set(listed):
            self.violations.add("listing misses a live object", object_id)


# --- plaintext at rest ------------------------------------------------------------------------


def needles(ledger: Ledger) -> list[bytes]:
    """What must never be stored: the mark in every value and plaintext, and data keys."""
    keys = [r.data_key for r in ledger.data_keys[:: max(1, len(ledger.data_keys) // 64)]]
    return [ledger.value_mark, *keys]


async def scan_redis(url: str, wanted: Sequence[bytes]) -> tuple[list[str], int]:
    """Every key and every field or member of it; (findings, bytes scanned)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    findings: list[str] = []
    scanned = 0
    try:
        async for name in client.scan_iter(count=1000):
            for item in [name, *await _redis_items(client, name)]:
                scanned += len(item)
                if any(n in item for n in wanted):
                    findings.append(f"redis key {name!r}")
                    break
    finally:
        await client.aclose()
    return findings, scanned


async def _redis_items(client: Any, name: bytes) -> list[bytes]:
    kind = (await client.type(name)).decode()
    if kind == "string":
        value = await client.get(name)
        return [value] if value is not None else []
    if kind == "hash":
        pairs = await client.hgetall(name)
        return [b for pair in pairs.items() for b in pair]
    if kind == "list":
        return list(await client.lrange(name, 0, -1))
    if kind == "set":
        return list(await client.smembers(name))
    if kind == "zset":
        return list(await client.zrange(name, 0, -1))
    if kind == "stream":
        entries = await client.xrange(name)
        return [b for _, fields in entries for pair in fields.items() for b in pair]
    return []


def scan_files(directory: Path, wanted: Sequence[bytes]) -> tuple[list[str], int]:
    """Every file under `directory`, read in overlapping chunks; (findings, bytes scanned)."""
    overlap = max(len(n) for n in wanted) - 1
    findings: list[str] = []
    scanned = 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        tail = b""
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                scanned += len(chunk)
                window, tail = tail + chunk, (tail + chunk)[-overlap:]
                if any(n in window for n in wanted):
                    findings.append(f"file {path}")
                    break
    return findings, scanned


async def check_at_rest(config: Config, ledger: Ledger, violations: Violations) -> int:
    wanted = needles(ledger)
    if config.check_store:
        findings, scanned = await scan_redis(config.check_store, wanted)
    elif config.check_data_dir:
        findings, scanned = await asyncio.to_thread(scan_files, config.check_data_dir, wanted)
    else:
        return 0
    for where in findings:
        violations.add("plaintext at rest", where)
    if scanned == 0:
        violations.add("nothing at rest to scan", str(config.check_store or config.check_data_dir))
    return scanned


# --- running it -------------------------------------------------------------------------------


async def wait_serving(channel: grpc.aio.Channel, seconds: float = 10.0) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    until = time.monotonic() + seconds
    while True:
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            if time.monotonic() > until:
                raise
        await asyncio.sleep(0.1)


@dataclass
class Summary:
    config: Config
    run_id: str
    elapsed: float
    load: Stats
    verify: Stats
    verified: Verified
    violations: Violations
    failovers: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> bool:
        return bool(self.violations.items) or self.load.fatal > 0 or self.verify.fatal > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seed": self.config.seed,
            "duration": self.elapsed,
            "concurrency": self.config.concurrency,
            "ops": {rpc: _rpc_json(self.load.rpcs[rpc]) for rpc in RPCS},
            "verify_ops": {rpc: _rpc_json(s) for rpc, s in sorted(self.verify.rpcs.items())},
            "fatal_statuses": self.load.fatal + self.verify.fatal,
            "verified": vars(self.verified),
            "violations": len(self.violations.items),
            "violations_by_kind": dict(self.violations.by_kind()),
            "failovers": dict(self.failovers),
            "failed": self.failed,
        }


def _rpc_json(s: RpcStats) -> dict[str, Any]:
    return {"ok": s.ok, "errors": dict(s.errors)}


async def soak(config: Config) -> Summary:
    run_id = secrets.token_hex(4)
    rng = random.Random(config.seed)
    ledger = Ledger(run_id, config.max_value_bytes)
    violations = Violations()
    load, verify = Stats(), Stats()
    # A few connections: one HTTP/2 connection serialises its streams through one socket.
    channels = [grpc.aio.insecure_channel(config.target) for _ in range(min(4, config.concurrency))]
    try:
        await wait_serving(channels[0])
        client = Client(config, channels, load)
        for i in range(config.shared_objects):
            shared = await create(client, ledger, rng, violations, shared=True)
            if shared is not None:
                shared.retirable = i % 2 == 1
                ledger.shared.append(shared)
        workers = [
            Worker(client, ledger, violations, random.Random(rng.getrandbits(64)))
            for _ in range(config.concurrency)
        ]
        started = time.monotonic()
        failovers = Counter[str]()
        failing_over = (
            asyncio.create_task(fail_over(config, started + config.duration, failovers))
            if config.failover_sentinel
            else None
        )
        await asyncio.gather(*(w.run(started + config.duration) for w in workers))
        elapsed = time.monotonic() - started
        if failing_over is not None:
            await failing_over
        if any(s.errors.keys() & {c.name for c in UNKNOWN_OUTCOME} for s in load.rpcs.values()):
            await asyncio.sleep(2.0)  # let calls the client gave up on finish on the server
        verifier = Verifier(Client(config, channels, verify), ledger, violations)
        verified = await verifier.run(config.concurrency)
        verified.at_rest_bytes = await check_at_rest(config, ledger, violations)
    finally:
        for channel in channels:
            await channel.close()
    return Summary(config, run_id, elapsed, load, verify, verified, violations, failovers)


async def fail_over(config: Config, until: float, counts: Counter[str]) -> None:
    """SENTINEL FAILOVER every config.failover_every seconds until `until`; counts each
    outcome ("done", or Sentinel's refusal such as INPROG while a failover is still running).

    None starts in the load's last FAILOVER_SETTLE_SECONDS: the verification that follows
    checks what was acknowledged, not how calls fare during a failover (the load did that)."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    assert config.failover_sentinel is not None
    host, _, port = config.failover_sentinel.rpartition(":")
    sentinel = aioredis.Redis(host=host, port=int(port))
    try:
        while (wait := min(config.failover_every, until - time.monotonic())) > 0:
            await asyncio.sleep(wait)
            if time.monotonic() >= until - FAILOVER_SETTLE_SECONDS:
                break
            try:
                await sentinel.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "FAILOVER", config.failover_service
                )
                counts["done"] += 1
            except RedisError as exc:
                counts[str(exc).split()[0]] += 1
    finally:
        await sentinel.aclose()


def render(summary: Summary) -> str:
    c, load = summary.config, summary.load
    lines = [
        f"vaultd soak: {c.target}, {summary.elapsed:.1f}s, concurrency {c.concurrency}, "
        f"run {summary.run_id}, seed {c.seed}",
        "",
        f"{'RPC':<34} {'ok':>8} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8}  errors",
    ]
    total = 0
    for rpc in RPCS:
        s = load.rpcs[rpc]
        total += s.ok + sum(s.errors.values())
        errors = ", ".join(f"{code} {n}" for code, n in s.errors.most_common()) or "-"
        lines.append(
            f"{rpc:<34} {s.ok:>8} {s.ok / summary.elapsed:>8.1f} "
            f"{s.percentile(0.5) * 1000:>8.1f} {s.percentile(0.99) * 1000:>8.1f}  {errors}"
        )
    lines.append(f"{'all':<34} {total:>8} {total / summary.elapsed:>8.1f}   (calls)")
    v = summary.verified
    verify_calls = sum(s.ok + sum(s.errors.values()) for s in summary.verify.rpcs.values())
    lines += [
        "",
        f"writes: {v.writes_acknowledged} acknowledged, {v.writes_unknown} of unknown outcome; "
        f"{v.writes_verified} of {v.writes_to_check} to live objects read back by version",
        f"objects: {v.objects_live} live, {v.objects_deleted} deleted, "
        f"{v.objects_never_created} never created; data keys {v.data_keys}; "
        f"sealed blobs {v.sealed}",
        f"verification calls: {verify_calls}; at rest scanned: {v.at_rest_bytes} bytes",
        "sentinel failovers: "
        + (", ".join(f"{k} {n}" for k, n in summary.failovers.most_common()) or "none"),
        f"INTERNAL/UNKNOWN statuses: {load.fatal + summary.verify.fatal}",
        f"violations: {len(summary.violations.items)}",
    ]
    for kind, n in summary.violations.by_kind().most_common():
        lines.append(f"  {n:>6}  {kind}")
    for kind, detail in summary.violations.items[:20]:
        lines.append(f"  e.g. {kind}: {detail}")
    lines.append("FAIL" if summary.failed else "PASS")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    config = parse_args(list(argv) if argv is not None else None)
    summary = asyncio.run(soak(config))
    print(render(summary), flush=True)
    if config.json_out is not None:
        config.json_out.write_text(json.dumps(summary.to_json(), indent=2))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    # Exits 1 on a violation; a traceback (server unreachable at start) exits 1 too.
    sys.exit(main())
