"""Builders and readers shared by the Store contract suite (tests/storage/test_*_contract.py).

Each test works in environments of its own (fresh ULIDs), so tests share one database per store
without flushing and without seeing each other.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ulid import ULID

from vaultd.storage import (
    ApiKeyRecord,
    AuditEvent,
    AuditQuery,
    Direction,
    KekVersion,
    ObjectEntry,
    ScanFilter,
    Store,
    StoredObject,
    StoredVersion,
)
from vaultd.storage.records import KekRecord, RewrapJob, RewrapState

ASC, DESC = Direction.ASCENDING, Direction.DESCENDING
EVERYTHING = ScanFilter()
BASE_TIME = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
MIB = 1024 * 1024


def new_env() -> str:
    return f"env_{ULID()}"


def new_object_id() -> str:
    return f"secret_{ULID()}"


def new_kek_id() -> str:
    return f"kek_{secrets.token_hex(16)}"


def new_version(
    ciphertext: bytes = b"ciphertext", *, at: datetime | None = None, by: str = "Zoë Ådmin"
) -> StoredVersion:
    return StoredVersion(
        version_id=f"ver_{ULID()}",
        created_at=at or datetime.now(UTC),
        size=len(ciphertext),
        etag=secrets.token_hex(16),
        key_ids=(f"{new_kek_id()}.v1", f"{new_kek_id()}.v3"),
        encrypted_keys=bytes(range(256)),
        ciphertext=ciphertext,
        updated_by_id="key_01",
        updated_by_name=by,
    )


def new_object(
    environment_id: str, name: str | None = None, version: StoredVersion | None = None
) -> StoredObject:
    return StoredObject(
        environment_id=environment_id,
        id=new_object_id(),
        name=name or f"name-{ULID()}",
        key_context={"organization_id": "org_ü", "région": "東京 🔑"},
        created_at=BASE_TIME,
        version=version or new_version(),
    )


async def create(store: Store, environment_id: str, name: str | None = None) -> StoredObject:
    obj = new_object(environment_id, name)
    await store.create_object(obj)
    return obj


async def scan_all(
    store: Store,
    environment_id: str,
    direction: Direction = ASC,
    scan_filter: ScanFilter = EVERYTHING,
    page_size: int = 3,
) -> list[ObjectEntry]:
    """Every entry, page by page, each page continuing after the last one's final id.

    Every page but the last must be full: callers ask for one entry more than they show to
    learn whether another page exists.
    """
    pages: list[list[ObjectEntry]] = []
    cursor = None
    while page := await store.scan_objects(
        environment_id, direction, cursor, page_size, scan_filter
    ):
        pages.append(page)
        cursor = page[-1].id
    assert [len(p) for p in pages[:-1]] == [page_size] * (len(pages) - 1)
    assert not pages or len(pages[-1]) <= page_size
    return [e for p in pages for e in p]


def entry(obj: StoredObject) -> ObjectEntry:
    return ObjectEntry(obj.id, obj.name, obj.version.created_at)


def new_kek(version: int) -> KekVersion:
    return KekVersion(
        item_key="organization_id",
        item_value="org_ü",
        version=version,
        provider_uri="internal://root",
        wrapped_key=os.urandom(60),
        created_at=BASE_TIME + timedelta(days=version),
    )


async def kek_versions(store: Store, environment_id: str, kek_id: str) -> tuple[KekVersion, ...]:
    record = await store.get_kek(environment_id, kek_id)
    assert record is not None
    return record.versions


def new_api_key(environment_id: str = "default", name: str = "Zoë's deploy key 🔑") -> ApiKeyRecord:
    return ApiKeyRecord(
        id=f"key_{ULID()}",
        name=name,
        environment_id=environment_id,
        permissions=("objects:read", "keys:use"),
        secret_hash=secrets.token_hex(32),
        created_at=BASE_TIME,
    )


def new_event(environment_id: str, kind: str = "vault.data.read", **fields: object) -> AuditEvent:
    defaults: dict[str, object] = {
        "id": str(ULID()),
        "type": kind,
        "time": datetime.now(UTC),
        "environment_id": environment_id,
        "actor_id": f"key_{ULID()}",
        "actor_name": "Zoë's deploy key 🔑",
        "outcome": "success",
        "request_id": secrets.token_hex(8),
        "method": "/vaultd.v1.ObjectService/GetObject",
        "peer": "ipv6:[::1]:5000",
        "object_id": new_object_id(),
        "object_name": "名前 / name",
        "key_ids": (f"{new_kek_id()}.v1", f"{new_kek_id()}.v2"),
        "key_context": {"organization_id": "org_ü"},
        "data_key_id": str(ULID()),
        "api_key_id": f"key_{ULID()}",
    }
    return AuditEvent(**{**defaults, **fields})  # type: ignore[arg-type]


async def read_all(store: Store, environment_id: str, **query: object) -> list[AuditEvent]:
    page = await store.read_audit_events(environment_id, AuditQuery(limit=1000, **query))  # type: ignore[arg-type]
    return list(page.events)


ITEM = ("organization_id", "org_ü")  # new_kek's item
LATER = BASE_TIME + timedelta(days=30)


async def make_kek(
    store: Store, environment_id: str, versions: int = 1, item: tuple[str, str] = ITEM
) -> tuple[str, list[KekVersion]]:
    """A new KEK of `item` with versions 1..`versions`."""
    kek_id = new_kek_id()
    made = [
        replace(new_kek(n), item_key=item[0], item_value=item[1]) for n in range(1, versions + 1)
    ]
    for kek in made:
        assert await store.add_kek_version(environment_id, kek_id, kek)
    return kek_id, made


async def get_kek(store: Store, environment_id: str, kek_id: str) -> KekRecord:
    record = await store.get_kek(environment_id, kek_id)
    assert record is not None
    return record


def rewrapped(kek: KekVersion) -> KekVersion:
    """`kek` under another provider key (and, to prove it is ignored, another creation time)."""
    return replace(
        kek, provider_uri="aws-kms://new-cmk", wrapped_key=os.urandom(60), created_at=LATER
    )


def new_job(owner: str = "host-a:1", *, at: timedelta = timedelta(0), **fields: Any) -> RewrapJob:
    job = RewrapJob(
        id=f"rewrap_{ULID()}",
        environment_id=new_env(),
        kek_ids=(new_kek_id(), new_kek_id()),
        state=RewrapState.RUNNING,
        created_at=BASE_TIME + at,
        updated_at=BASE_TIME + at,
        owner=owner,
        lease_until=BASE_TIME + timedelta(minutes=1),
    )
    return replace(job, **fields)


async def destroy(store: Store, environment_id: str, object_id: str) -> None:
    """Delete an object and purge it at once: what DeleteObject does with retention 0."""
    await store.delete_object(environment_id, object_id, None)
    assert await store.purge_object(environment_id, object_id)
