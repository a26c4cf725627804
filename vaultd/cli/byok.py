"""`vaultd byok add|list|verify ID|remove`: BYOK keys of one environment, on the configured store.

Like `vaultd apikey`, these need no server: they open the store the settings name and act on
the records every server reads (within one KEK-cache TTL). A key is verified through the
provider settings of this configuration before it is added. Changes are audited with the actor
"cli" and the operating-system user and host. `vaultd byok verify` without an id checks the
config file's rules instead.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from providers import ProviderError
from vaultd.app import App, key_config, open_app
from vaultd.cli.output import Subcommands, cli_origin, command_group, iso, print_table
from vaultd.core import audit
from vaultd.core.audit import AuditLog, Subject
from vaultd.core.errors import VaultError
from vaultd.settings import Settings
from vaultd.storage.records import ByokKeyRecord

COMMAND = "byok"


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    byok_commands = command_group(commands, "byok", "bring-your-own-key rules")
    verify = byok_commands.add_parser(
        "verify",
        parents=[common],
        help="wrap and unwrap with every configured rule's key, or with one registered key "
        "(ID and --environment); exit 1 if any fails",
    )
    verify.add_argument("id", nargs="?", help="a registered key's id (byok_...)")
    verify.add_argument("--environment", help="the registered key's environment")
    _add_key_commands(byok_commands, common)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.byok_command == "verify" and args.id is None:
        return asyncio.run(verify_rules(settings))
    if args.byok_command == "verify" and not args.environment:
        print("vaultd: byok verify ID needs --environment", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, settings))


async def verify_rules(settings: Settings) -> int:
    """Print one row per rule (and the default key) and return the exit code."""
    keys = key_config(settings)
    rules = keys.rules
    # Every key of every rule: a secondary key that does not answer is found now, not when
    # the primary fails.
    rows = [("default", rules.default_uri)]
    rows += [(r.label, uri) for r in rules.rules for uri in r.key_uris]
    failures = 0
    width = max(len(label) for label, _ in rows)
    print(f"{'RULE':<{width}}  {'KEY URI':<50}  RESULT")
    for label, uri in rows:
        try:
            await keys.registry.for_uri(uri).verify(uri)
            result = "ok"
        except ProviderError as exc:
            failures += 1
            result = f"error: {exc}"
        print(f"{label:<{width}}  {uri:<50}  {result}")
    return 1 if failures else 0


def _add_key_commands(byok_commands: Subcommands, common: argparse.ArgumentParser) -> None:
    add = byok_commands.add_parser(
        "add", parents=[common], help="verify a key and register it for one match"
    )
    add.add_argument("--environment", required=True, help="the environment it governs")
    add.add_argument("--match", required=True, help="one context item: key=value or key=prefix*")
    add.add_argument("--key", required=True, help="the provider key URI")
    listing = byok_commands.add_parser("list", parents=[common], help="an environment's keys")
    listing.add_argument("--environment", required=True)
    remove = byok_commands.add_parser("remove", parents=[common], help="remove a key")
    remove.add_argument("--environment", required=True)
    remove.add_argument("id", help="the key's id (byok_...)")


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    """`byok add|list|remove`, or `byok verify ID`; the exit code."""
    # A command App: its BYOK keys have TTL 0, so a command reads what is stored now.
    async with await open_app(settings, serving=False) as app:
        try:
            return await _byok(args, app)
        except VaultError as exc:
            print(f"vaultd: {exc.message}", file=sys.stderr)
            return 1


async def _byok(args: argparse.Namespace, app: App) -> int:
    keys, audit_log, env = app.byok_keys, app.audit_log, args.environment
    if args.byok_command == "add":
        item_key, sep, pattern = args.match.partition("=")
        if not sep:
            print("vaultd: --match must be key=value or key=prefix*", file=sys.stderr)
            return 2
        try:
            record = await keys.create(env, {item_key: pattern}, args.key)
        except VaultError:
            await _record(audit_log, env, "add", audit.BYOK_KEY_VERIFIED, None, "failure")
            raise
        await _record(audit_log, env, "add", audit.BYOK_KEY_VERIFIED, record)
        _print([record])
    elif args.byok_command == "list":
        _print(await keys.list(env))
    elif args.byok_command == "verify":
        record = await keys.verify(env, args.id)
        outcome = audit.SUCCESS if record.verified else "failure"
        await _record(audit_log, env, "verify", audit.BYOK_KEY_VERIFIED, record, outcome)
        _print([record])
        return 0 if record.verified else 1
    else:
        record = await keys.delete(env, args.id)
        await _record(audit_log, env, "remove", audit.BYOK_KEY_DELETED, record)
        print(f"removed {record.id} ({record.item_key}={record.pattern} -> {record.key_uri})")
    return 0


def _print(records: list[ByokKeyRecord]) -> None:
    rows = [
        (
            r.id,
            f"{r.item_key}={r.pattern}",
            r.key_uri,
            ("ok" if r.verified else f"failed: {r.verification_error}")
            + (f" ({iso(r.verified_at)})" if r.verified_at else ""),
        )
        for r in records
    ]
    print_table(("ID", "MATCH", "KEY URI", "VERIFIED"), rows)


async def _record(
    audit_log: AuditLog,
    environment_id: str,
    command: str,
    kind: str,
    record: ByokKeyRecord | None,
    outcome: str = audit.SUCCESS,
) -> None:
    origin = cli_origin(environment_id, f"vaultd byok {command}")
    subject = (
        Subject()
        if record is None
        else Subject(key_ids=(record.id,), key_context={record.item_key: record.pattern})
    )
    await audit_log.record(kind, origin, outcome, subject)
