"""`vaultd apikey create|list|revoke`: API keys, straight on the configured store.

No server is needed: these open the store the settings name (--config, --data-dir,
--redis-url, as for `serve`). Whoever can open the store is trusted with every environment, so
unlike the admin RPC they may make keys for any environment; they are how a new environment
gets its first key. What they change is audited like an RPC, with the actor "cli" and the name
of the operating-system user and host.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from vaultd.app import open_records
from vaultd.cli.output import Subcommands, cli_origin, command_group, iso, print_table
from vaultd.core import audit
from vaultd.core.apikeys import ApiKeys, Permission
from vaultd.core.audit import AuditLog, Subject
from vaultd.core.errors import VaultError
from vaultd.core.scope import format_constraint
from vaultd.settings import Settings

COMMAND = "apikey"


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    apikey_commands = command_group(commands, "apikey", "API keys, on the configured store")
    create = apikey_commands.add_parser(
        "create", parents=[common], help="make a key and print it (only it) on stdout, once"
    )
    create.add_argument("--environment", required=True, help="the environment it acts in")
    create.add_argument(
        "--permissions",
        required=True,
        help="comma-separated, from: " + ",".join(Permission),
    )
    create.add_argument("--name", default="", help="shown as the actor (default: the key id)")
    create.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="confine the key to key contexts with this item (VALUE may end in one '*', a "
        "prefix); repeat it: the same KEY twice means either, different KEYs mean all",
    )
    listing = apikey_commands.add_parser("list", parents=[common], help="a table, no secrets")
    listing.add_argument("--environment", help="only this environment's keys")
    revoke = apikey_commands.add_parser("revoke", parents=[common], help="revoke a key for good")
    revoke.add_argument("id", help="the key's id (key_...)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    async with await open_records(settings) as records:
        try:
            return await _apikey(args, records.api_keys, records.audit_log)
        except VaultError as exc:
            print(f"vaultd: {exc.message}", file=sys.stderr)
            return 1


async def _apikey(args: argparse.Namespace, api_keys: ApiKeys, audit_log: AuditLog) -> int:
    if args.apikey_command == "create":
        new = await api_keys.create(
            args.environment,
            args.permissions.split(","),
            args.name,
            context_constraints=args.context,
        )
        await _record(audit_log, audit.APIKEY_CREATED, new.record.environment_id, new.record.id)
        print(new.secret)
    elif args.apikey_command == "revoke":
        key = await api_keys.revoke(args.id)
        await _record(audit_log, audit.APIKEY_REVOKED, key.environment_id, key.id)
        print(f"revoked {key.id} ({key.name}, environment {key.environment_id})")
    else:
        rows = [
            (
                k.id,
                k.name,
                k.environment_id,
                ",".join(k.permissions),
                iso(k.created_at),
                iso(k.revoked_at) if k.revoked_at else "-",
                ",".join(map(format_constraint, k.context_constraints)) or "-",
            )
            for k in await api_keys.list(args.environment)
        ]
        columns = ("ID", "NAME", "ENVIRONMENT", "PERMISSIONS", "CREATED", "REVOKED", "CONTEXT")
        print_table(columns, rows)
    return 0


async def _record(audit_log: AuditLog, kind: str, environment_id: str, key_id: str) -> None:
    command = "vaultd apikey " + ("create" if kind == audit.APIKEY_CREATED else "revoke")
    origin = cli_origin(environment_id, command)
    await audit_log.record(kind, origin, subject=Subject(api_key_id=key_id))
