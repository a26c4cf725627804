"""vaultd's client flow from Python, with the light `vaultd-client` distribution: create, read by
name, a stale update that fails with VersionConflict (reason and current_version_id from
ErrorInfo), list pages, a data key, local encrypt/decrypt, and the same with asyncio.

tests/polyglot/test_clients_doc.py runs it, as docs/CLIENTS.md shows, against a real vaultd:
    VAULTD_ADDRESS=127.0.0.1:50051 VAULTD_API_KEY=sk_... python clients/python/examples/flow.py
Prints "ok <step>" per step; raises at the first failure.
"""

import asyncio
import os

from vaultd.client import AsyncVaultClient, VaultClient, VersionConflict

address, api_key = os.environ["VAULTD_ADDRESS"], os.environ["VAULTD_API_KEY"]
suffix = os.environ.get("VAULTD_SUFFIX", "demo")
tenant = {"organization_id": f"org_python_{suffix}"}
prefix = f"python-{suffix}-"


def ok(condition: bool, step: str) -> None:
    if not condition:
        raise SystemExit(f"FAIL {step}")
    print("ok", step)


with VaultClient(address, api_key) as vault:
    created = vault.create_object(f"{prefix}db-password", b"hunter2", tenant)
    ok(vault.get_object_by_name(f"{prefix}db-password").value == b"hunter2", "read by name")

    updated = vault.update_object(created.id, b"v2", version_check=created.version_id)
    try:
        vault.update_object(created.id, b"v3", version_check=created.version_id)
        ok(False, "stale update")
    except VersionConflict as error:  # the ErrorInfo reason VERSION_CONFLICT
        ok(
            error.reason == "VERSION_CONFLICT" and error.current_version_id == updated.version_id,
            "stale update",
        )

    for i in range(2):
        vault.create_object(f"{prefix}page-{i}", b"x", tenant)
    # list_objects follows the `after` cursor page by page (limit=2: two calls here).
    names = [o.name for o in vault.list_objects(limit=2, name_prefix=prefix)]
    ok(len(names) == 3, "list pages")

    data_key = vault.create_data_key(tenant)
    again = vault.decrypt_data_key(data_key.encrypted_keys)
    ok(len(data_key.data_key) == 32 and again.data_key == data_key.data_key, "data key")

    # Local encryption: one CreateDataKey, AES-256-GCM here; only the data key crosses the wire.
    blob = vault.encrypt(b"from python", tenant, associated_data=b"aad")
    ok(vault.decrypt(blob, associated_data=b"aad") == b"from python", "encrypt and decrypt")


async def main() -> None:
    async with AsyncVaultClient(address, api_key) as vault:
        found = await vault.get_object_by_name(f"{prefix}db-password")
        ok(found.value == b"v2", "asyncio read")


asyncio.run(main())
