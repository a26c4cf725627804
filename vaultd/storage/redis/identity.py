"""The store's identity in the Redis store (the IdentityStore part of RedisStore).

One hash: the store id, its creation time, and a `root:<fingerprint>` field per root key
version that served it.
"""

from __future__ import annotations

from vaultd.storage import codec
from vaultd.storage.errors import StoreError
from vaultd.storage.keys import IDENTITY_KEY, PREFIX
from vaultd.storage.records import StoreIdentity
from vaultd.storage.redis.connection import RedisConnection, available, text


class RedisIdentity(RedisConnection):
    """IdentityStore on Redis."""

    @available
    async def get_identity(self) -> StoreIdentity | None:
        fields = {text(f): text(v) for f, v in (await self._redis.hgetall(IDENTITY_KEY)).items()}
        if "id" not in fields:
            return None
        return StoreIdentity(
            store_id=fields["id"],
            created_at=codec.from_micros(int(fields["created"])),
            root_fingerprints=frozenset(
                name.removeprefix("root:") for name in fields if name.startswith("root:")
            ),
        )

    @available
    async def create_identity(self, identity: StoreIdentity) -> bool:
        created = await self._write(
            self._scripts.create_identity,
            keys=[IDENTITY_KEY],
            args=[
                identity.store_id,
                codec.to_micros(identity.created_at),
                *sorted(identity.root_fingerprints),
            ],
        )
        return bool(created)

    @available
    async def add_root_fingerprints(self, fingerprints: frozenset[str]) -> None:
        if not await self._write(
            self._scripts.add_root_fingerprints, keys=[IDENTITY_KEY], args=sorted(fingerprints)
        ):
            raise StoreError("the store has no identity to add root key fingerprints to")

    @available
    async def has_data(self) -> bool:
        async for _ in self._redis.scan_iter(match=f"{PREFIX}:*", count=1000):
            return True
        return False
