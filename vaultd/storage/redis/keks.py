"""KEKs in the Redis store (the KekStore part of RedisStore).

Each KEK is a list of its version records (index i holds version i + 1) and a state hash (its
item, min_decryption_version, shredded time); each environment keeps a set of its KEK ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from vaultd.storage import codec
from vaultd.storage.keys import KEK_LIST, JobKind, Kind, job_key, key
from vaultd.storage.records import KekRecord, KekVersion
from vaultd.storage.redis.connection import RedisConnection, as_bytes, available, text

KEKS_PER_READ = 256
"""Most KEKs one script of list_keks reads."""
_MIGRATIONS = job_key(JobKind.MIGRATIONS)
_KEK_INDEX_MIGRATION = "kek-index"


class _KekKeys:
    """The keys one KEK's scripts touch."""

    def __init__(self, environment_id: str, kek_id: str) -> None:
        self.versions = key(environment_id, Kind.KEK, kek_id)
        self.state = key(environment_id, Kind.KEK_STATE, kek_id)
        self.index = key(environment_id, Kind.KEKS)


class RedisKeks(RedisConnection):
    """KekStore on Redis."""

    @available
    async def get_kek(self, environment_id: str, kek_id: str) -> KekRecord | None:
        found = await self._keks(environment_id, [kek_id])
        return found[0] if found else None

    @available
    async def add_kek_version(self, environment_id: str, kek_id: str, kek: KekVersion) -> bool:
        k = _KekKeys(environment_id, kek_id)
        return bool(
            await self._write(
                self._scripts.add_kek,
                keys=[k.versions, k.state, k.index],
                args=[kek.version, codec.encode_kek(kek), kek_id, kek.item_key, kek.item_value],
            )
        )

    @available
    async def index_unlisted_keks(self, *, force: bool = False) -> int:
        """Enter KEKs an older vaultd stored (a version list, no state) into list_keks.

        Once per database (a marker records it), unless `force`: one SCAN over every node,
        so `kek rotate --all`, `kek rewrap --all` and `root retire` see every KEK. Returns how
        many KEKs it entered (again, for those entered already: the script is idempotent).
        """
        if not force and await self._redis.hexists(_MIGRATIONS, _KEK_INDEX_MIGRATION):
            return 0
        entered = 0
        async for name in self._redis.scan_iter(match="vaultd:{*}:kek:*", count=1000, _type="list"):
            found = KEK_LIST.fullmatch(text(name))
            first = await self._redis.lindex(name, 0) if found else None
            if found is None or first is None:
                continue
            environment_id, kek_id = found.groups()
            kek = codec.decode_kek(as_bytes(first))
            k = _KekKeys(environment_id, kek_id)
            await self._write(
                self._scripts.index_kek,
                keys=[k.state, k.index],
                args=[kek_id, kek.item_key, kek.item_value],
            )
            entered += 1
        await self._redis.hset(
            _MIGRATIONS, _KEK_INDEX_MIGRATION, codec.to_micros(datetime.now(UTC))
        )
        return entered

    @available
    async def list_keks(self, environment_id: str) -> list[KekRecord]:
        kek_ids = await self._redis.smembers(key(environment_id, Kind.KEKS))
        # Several scripts when there are many KEKs, so none holds Redis for long.
        ids = sorted(text(i) for i in kek_ids)
        records: list[KekRecord] = []
        for start in range(0, len(ids), KEKS_PER_READ):
            records += await self._keks(environment_id, ids[start : start + KEKS_PER_READ])
        return sorted(records, key=lambda r: (r.item_key, r.item_value, r.kek_id))

    @available
    async def rewrap_kek_version(
        self, environment_id: str, kek_id: str, expected: KekVersion, rewrapped: KekVersion
    ) -> bool:
        versions = _KekKeys(environment_id, kek_id).versions
        if expected.version < 1:
            return False  # no such version (and LINDEX would read -1 as the newest)
        new = replace(
            expected,
            provider_uri=rewrapped.provider_uri,
            wrapped_key=rewrapped.wrapped_key,
            secondary=rewrapped.secondary,
        )
        return bool(
            await self._write(
                self._scripts.rewrap_kek,
                keys=[versions],
                args=[expected.version, codec.encode_kek(expected), codec.encode_kek(new)],
            )
        )

    @available
    async def set_min_decryption_version(
        self, environment_id: str, kek_id: str, version: int
    ) -> bool:
        k = _KekKeys(environment_id, kek_id)
        return bool(
            await self._write(
                self._scripts.set_min_version, keys=[k.versions, k.state], args=[version]
            )
        )

    @available
    async def shred_kek(
        self, environment_id: str, kek_id: str, item_key: str, item_value: str, at: datetime
    ) -> bool:
        k = _KekKeys(environment_id, kek_id)
        return bool(
            await self._write(
                self._scripts.shred_kek,
                keys=[k.versions, k.state, k.index],
                args=[kek_id, item_key, item_value, codec.to_micros(at)],
            )
        )

    async def _keks(self, environment_id: str, kek_ids: Sequence[str]) -> list[KekRecord]:
        """The KEKs that exist among `kek_ids`, from one snapshot, in the order given."""
        kek_keys = [_KekKeys(environment_id, kek_id) for kek_id in kek_ids]
        keys = [n for k in kek_keys for n in (k.versions, k.state)]
        if self._wait_replicas:
            # Durable reads (Store.get_kek): a KEK version written but never confirmed by the
            # replicas (its add timed out waiting for them) must not be put to use.
            fence = key(environment_id, Kind.FENCE)
            reply = await self._write(
                self._scripts.get_keks, keys=[*keys, fence], args=["fence"], changed=lambda _: True
            )
        else:
            reply = await self._scripts.get_keks(keys=keys, args=[""])
        records = (
            _kek_record(kek_id, records, fields)
            for kek_id, (records, fields) in zip(kek_ids, reply, strict=True)
        )
        return [r for r in records if r is not None]


def _kek_record(kek_id: str, records: list[bytes], fields: list[bytes]) -> KekRecord | None:
    """A KEK from its version records and state hash fields; None if it has neither.

    A KEK an older release made has versions but no state yet: its item is its versions'.
    """
    versions = tuple(codec.decode_kek(as_bytes(r)) for r in records)
    state = {text(f): text(v) for f, v in zip(fields[::2], fields[1::2], strict=True)}
    if not versions and not state:
        return None
    shredded = state.get("shredded")
    return KekRecord(
        kek_id=kek_id,
        item_key=state["item_key"] if "item_key" in state else versions[0].item_key,
        item_value=state["item_value"] if "item_value" in state else versions[0].item_value,
        versions=versions,
        min_decryption_version=int(state.get("min", 1)),
        shredded_at=None if shredded is None else codec.from_micros(int(shredded)),
    )
