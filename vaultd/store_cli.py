"""`vaultd store init|status`: the store's identity and what an acknowledged write survives.

`init` gives an empty store its identity on purpose, or makes the root key remember a store it
did not serve before, for the cases vaultd refuses to decide alone (docs/OPERATIONS.md): a root
key that served a store which is now empty, or another one. It never touches data: a store that
has an identity keeps it.
"""

from __future__ import annotations

import argparse

from vaultd.settings import Settings

COMMANDS = ("store",)


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    store = commands.add_parser("store", help="the store's identity and durability")
    store_commands = store.add_subparsers(dest="store_command", required=True)
    store_commands.add_parser(
        "init",
        parents=[common],
        help="give an empty store its identity (or adopt this one), and remember it",
    )
    store_commands.add_parser(
        "status", parents=[common], help="print the store's identity and durability"
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from vaultd.core.storeguard import StoreGuard
    from vaultd.known_store import known_store
    from vaultd.server import internal_provider
    from vaultd.storage import open_store

    internal = internal_provider(settings)
    store = await open_store(settings.redis_url, settings.data_dir, settings.store_timeout_seconds)
    try:
        if args.store_command == "status":
            identity = await store.get_identity()
            durability = await store.durability()
            if identity is None:
                print("identity:    none (a new store, or one an older vaultd filled)")
            else:
                print(f"identity:    {identity.store_id} (since {identity.created_at:%Y-%m-%d})")
                owned = not identity.root_fingerprints.isdisjoint(internal.fingerprints())
                print(f"root key:    {'serves this store' if owned else 'ANOTHER deployment'}")
            print(f"durability:  {durability.description}")
            return 0
        guard = StoreGuard(
            store,
            internal.fingerprints(),
            known_store(settings.root_key_path.parent),
            allow_volatile=settings.allow_volatile_redis,
        )
        identity = await guard.init()
        print(f"initialised the store as {identity.store_id}")
        return 0
    finally:
        await store.close()
