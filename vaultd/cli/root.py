"""`vaultd root rotate|retire`: the internal provider's root key file.

These edit the file the settings name (root_key_file, by default in the data directory);
running servers see the change at their next provider call (they re-read the file when it
changes). `retire` first checks the store for KEK versions still wrapped by what it would
delete.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from providers.internal import SCHEME, RootKeyFile, root_version
from vaultd.app import open_settings_store
from vaultd.cli.output import Subcommands, command_group
from vaultd.settings import Settings

COMMAND = "root"


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    root_commands = command_group(commands, "root", "the internal provider's root key file")
    root_commands.add_parser("rotate", parents=[common], help="add a new primary root key")
    root_retire = root_commands.add_parser(
        "retire", parents=[common], help="delete root key versions below --below"
    )
    root_retire.add_argument("--below", type=int, required=True)
    root_retire.add_argument(
        "--force", action="store_true", help="even if KEKs in the store still need them"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    path = settings.root_key_path
    try:
        if args.root_command == "rotate":
            root = RootKeyFile.rotate(path)
        else:
            below = args.below
            # The file's own refusal (the primary version) first, then the store's.
            checked = below <= RootKeyFile.load(path).primary and not args.force
            if checked and (still := await _wrapped_below(settings, below)):
                raise ValueError(
                    f"{len(still)} KEK version(s) are still wrapped by root key versions "
                    f"below {below} (in {', '.join(sorted(set(still)))}); run `vaultd kek "
                    "rewrap --all --wait` there first, or add --force to lose them"
                )
            root = RootKeyFile.retire(path, below)
    except (OSError, ValueError) as exc:
        print(f"vaultd: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: versions {', '.join(map(str, sorted(root.keys)))}; primary {root.primary}")
    return 0


async def _wrapped_below(settings: Settings, below: int) -> list[str]:
    """The environment of each KEK version the internal provider wrapped under a root key
    version below `below`. Every environment that has data had an API key, and keys are never
    deleted, so the keys name every environment."""
    store = await open_settings_store(settings)
    try:
        environments = {k.environment_id for k in await store.list_api_keys()}
        found = []
        for environment_id in sorted(environments):
            for record in await store.list_keks(environment_id):
                for v in record.versions:
                    version = root_version(v.wrapped_key)
                    if v.provider_uri.startswith(f"{SCHEME}://") and (version or 0) < below:
                        found.append(environment_id)
        return found
    finally:
        await store.close()
