"""`vaultd byok add|list|verify ID|remove`: BYOK keys of one environment, on the configured store.

Like `vaultd apikey`, these need no server: they open the store the settings name and act on
the records every server reads (within one KEK-cache TTL). A key is verified through the
provider settings of this configuration before it is added. Changes are audited with the actor
"cli" and the operating-system user and host. `vaultd byok verify` without an id checks the
config file's rules instead (cli.byok_verify).
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import cast

from vaultd.admin_cli import iso, operator, print_table
from vaultd.core import audit
from vaultd.core.audit import AuditLog, Origin, Subject
from vaultd.core.auditchain import AuditKeys
from vaultd.core.byok import ByokKeys
from vaultd.core.errors import VaultError
from vaultd.core.types import Actor
from vaultd.settings import Settings
from vaultd.storage import open_store
from vaultd.storage.base import ByokKeyStore
from vaultd.storage.records import ByokKeyRecord


def add_commands(byok_commands: argparse._SubParsersAction[argparse.ArgumentParser],
                 common: argparse.ArgumentParser) -> None:  # fmt: skip
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


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """`byok add|list|remove`, or `byok verify ID`; the exit code."""
    from vaultd.server import load_key_config

    registry, rules = load_key_config(settings)
    store = await open_store(settings.redis_url, settings.data_dir)
    # TTL 0: a command reads what is stored now.
    keys = ByokKeys(cast(ByokKeyStore, store), registry, rules, 0)
    audit_log = AuditLog(
        store,
        timedelta(days=settings.audit_retention_days),
        keys=AuditKeys.load_or_create(settings.audit_key_path),
    )
    env = args.environment
    try:
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
        await audit_log.flush()
        return 0
    except VaultError as exc:
        await audit_log.flush()
        print(f"vaultd: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await store.close()


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
    origin = Origin(environment_id, Actor("cli", operator()), method=f"vaultd byok {command}")
    subject = (
        Subject()
        if record is None
        else Subject(key_ids=(record.id,), key_context={record.item_key: record.pattern})
    )
    await audit_log.record(kind, origin, outcome, subject)
