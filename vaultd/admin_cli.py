"""`vaultd apikey create|list|revoke` and `vaultd audit tail|verify|hash`: straight on the
configured store.

No server is needed: these open the store the settings name (--config, --data-dir,
--redis-url, as for `serve`). Whoever can open the store is trusted with every environment, so
unlike the admin RPC they may make keys for any environment; they are how a new environment
gets its first key. What they change is audited like an RPC, with the actor "cli" and the name
of the operating-system user and host.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import heapq
import json
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from vaultd.core import audit, auditchain
from vaultd.core.apikeys import ApiKeys, Permission
from vaultd.core.audit import AuditLog, Origin, Subject, event_json
from vaultd.core.auditchain import AuditKeys
from vaultd.core.cache import TtlCache
from vaultd.core.errors import VaultError
from vaultd.core.types import Actor
from vaultd.settings import Settings
from vaultd.storage import AuditEvent, AuditQuery, Store, open_store

COMMANDS = ("apikey", "audit")
_PAGE = 1000


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    apikey = commands.add_parser("apikey", help="API keys, on the configured store")
    apikey_commands = apikey.add_subparsers(dest="apikey_command", required=True)
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
    listing = apikey_commands.add_parser("list", parents=[common], help="a table, no secrets")
    listing.add_argument("--environment", help="only this environment's keys")
    revoke = apikey_commands.add_parser("revoke", parents=[common], help="revoke a key for good")
    revoke.add_argument("id", help="the key's id (key_...)")

    audit_parser = commands.add_parser("audit", help="audit events, on the configured store")
    audit_commands = audit_parser.add_subparsers(dest="audit_command", required=True)
    tail = audit_commands.add_parser(
        "tail", parents=[common], help="print events as JSON lines, oldest first"
    )
    tail.add_argument("--follow", action="store_true", help="keep printing new events")
    tail.add_argument("--since", type=_moment, help="ISO 8601 time (default: all kept)")
    tail.add_argument("--type", default="", help="only this type, e.g. vault.data.read")
    tail.add_argument(
        "--environment",
        help='only this environment ("" for unauthenticated calls; default: every one)',
    )
    tail.add_argument(
        "--poll-seconds", type=float, default=1.0, help="how often --follow looks (default 1)"
    )
    verify = audit_commands.add_parser(
        "verify", parents=[common], help="check every event's hash chain; exit 1 at a break"
    )
    verify.add_argument(
        "--environment",
        help='only this environment ("" for unauthenticated calls; default: every one)',
    )
    hashed = audit_commands.add_parser(
        "hash", parents=[common], help="how events store a context value, to search for it"
    )
    hashed.add_argument("value", help="the context value, e.g. org_123")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run an `apikey` or `audit` command; its exit code."""
    store = await open_store(settings.redis_url, settings.data_dir)
    # No cache: each command looks once, and must see what another process just changed.
    api_keys = ApiKeys(store, TtlCache(0, 0))
    audit_log = AuditLog(
        store,
        timedelta(days=settings.audit_retention_days),
        keys=AuditKeys.load_or_create(settings.audit_key_path),
    )
    try:
        if args.command == "apikey":
            return await _apikey(args, api_keys, audit_log)
        if args.audit_command == "hash":
            assert audit_log.keys is not None
            print(audit_log.keys.field_hash(args.value))
            return 0
        if args.audit_command == "verify":
            return await _verify(args, api_keys, audit_log)
        return await _tail(args, store, api_keys, audit_log)
    except VaultError as exc:
        print(f"vaultd: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await store.close()


async def _apikey(args: argparse.Namespace, api_keys: ApiKeys, audit_log: AuditLog) -> int:
    if args.apikey_command == "create":
        new = await api_keys.create(args.environment, args.permissions.split(","), args.name)
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
            )
            for k in await api_keys.list(args.environment)
        ]
        print_table(("ID", "NAME", "ENVIRONMENT", "PERMISSIONS", "CREATED", "REVOKED"), rows)
    return 0


def print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell, two spaces apart."""
    lines = [header, *rows]
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    for row in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


async def _record(audit_log: AuditLog, kind: str, environment_id: str, key_id: str) -> None:
    command = "vaultd apikey " + ("create" if kind == audit.APIKEY_CREATED else "revoke")
    origin = Origin(environment_id, Actor("cli", operator()), method=command)
    await audit_log.record(kind, origin, subject=Subject(api_key_id=key_id))


def operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name, as in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def _tail(
    args: argparse.Namespace, store: Store, api_keys: ApiKeys, audit_log: AuditLog
) -> int:
    if args.environment is not None:
        environments = [args.environment]
    else:
        # Every environment that ever had a key (all calls come from one), and the calls
        # that failed authentication.
        keys = await api_keys.list()
        environments = sorted(
            {audit.UNAUTHENTICATED_ENVIRONMENT, *(k.environment_id for k in keys)}
        )
    cursors = dict.fromkeys(environments, "")
    while True:
        batches = []
        for environment in environments:
            events, cursors[environment] = await _read_all(
                audit_log, environment, AuditQuery(cursors[environment], args.since, args.type)
            )
            batches.append(events)
        # Each environment's events are in order; merge them by time.
        for event in heapq.merge(*batches, key=lambda e: (e.time, e.id)):
            print(json.dumps(event_json(event), ensure_ascii=False), flush=True)
        if not args.follow:
            return 0
        await asyncio.sleep(args.poll_seconds)


async def _verify(args: argparse.Namespace, api_keys: ApiKeys, audit_log: AuditLog) -> int:
    """One line per environment; the first break, with its position, fails the command."""
    assert audit_log.keys is not None
    if args.environment is not None:
        environments = [args.environment]
    else:
        keys = await api_keys.list()
        environments = sorted(
            {audit.UNAUTHENTICATED_ENVIRONMENT, *(k.environment_id for k in keys)}
        )
    broken = False
    for environment in environments:
        events, _ = await _read_all(audit_log, environment, AuditQuery())
        verdict = auditchain.verify(audit_log.keys, events)
        name = environment or "(unauthenticated)"
        if verdict.broken is not None:
            b = verdict.broken
            broken = True
            print(
                f"{name}: BROKEN at position {b.position} (event {b.event_id}, {b.chain}): "
                f"{b.problem}"
            )
        else:
            print(
                f"{name}: ok, {verdict.events} events in {verdict.chains} chain(s)"
                + (f", {verdict.unchained} from before chaining" if verdict.unchained else "")
            )
    return 1 if broken else 0


async def _read_all(
    audit_log: AuditLog, environment: str, query: AuditQuery
) -> tuple[list[AuditEvent], str]:
    events: list[AuditEvent] = []
    cursor = query.after
    while True:
        page = await audit_log.read(environment, AuditQuery(cursor, query.since, query.type, _PAGE))
        events += page.events
        cursor = page.cursor
        if len(page.events) < _PAGE:
            return events, cursor


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _moment(text: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC. A bad one says what would do instead."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time; use e.g. 2026-12-04T09:30:00Z, "
            "'2026-12-04 09:30' (UTC when no zone is given) or 2026-12-04"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
