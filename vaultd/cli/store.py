"""`vaultd store init|status|reindex`: the store's identity, what an acknowledged write
survives, and the key context index.

`init` gives an empty store its identity on purpose, or makes the root key remember a store it
did not serve before, for the cases vaultd refuses to decide alone (docs/OPERATIONS.md): a root
key that served a store which is now empty, or another one. It never touches data: a store that
has an identity keeps it.

`reindex` enters every object into the key context index again (idempotent): for objects an
older vaultd wrote while this release was already serving, during a rolling upgrade
(docs/API.md). Opening a store does it once by itself.
"""

from __future__ import annotations

import argparse
import asyncio

from vaultd.app import internal_provider, open_settings_store, store_guard
from vaultd.cli.output import Subcommands, command_group
from vaultd.settings import Settings

COMMAND = "store"


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    store_commands = command_group(commands, "store", "the store's identity and durability")
    store_commands.add_parser(
        "init",
        parents=[common],
        help="give an empty store its identity (or adopt this one), and remember it",
    )
    store_commands.add_parser(
        "status", parents=[common], help="print the store's identity and durability"
    )
    store_commands.add_parser(
        "reindex",
        parents=[common],
        help="enter every object into the key context index (after a rolling upgrade)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    internal = internal_provider(settings)
    store = await open_settings_store(settings, bounded=True)
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
        if args.store_command == "reindex":
            entered = await store.index_object_contexts(force=True)
            print(f"key context index: {entered} objects entered (again, for those already in)")
            return 0
        identity = await store_guard(settings, store, internal).init()
        print(f"initialised the store as {identity.store_id}")
        return 0
    finally:
        await store.close()
