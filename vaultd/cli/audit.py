"""`vaultd audit tail|verify|hash`: audit events, straight on the configured store.

Like `vaultd apikey`, no server is needed: these open the store the settings name.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import sys
from datetime import UTC, datetime

from vaultd.app import open_records
from vaultd.cli.output import Subcommands, command_group
from vaultd.core import audit, auditchain
from vaultd.core.apikeys import ApiKeys
from vaultd.core.audit import AuditLog, event_json
from vaultd.core.errors import VaultError
from vaultd.settings import Settings
from vaultd.storage import AuditEvent, AuditQuery

COMMAND = "audit"
_PAGE = 1000
_ENVIRONMENT_HELP = 'only this environment ("" for unauthenticated calls; default: every one)'


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    audit_commands = command_group(commands, "audit", "audit events, on the configured store")
    tail = audit_commands.add_parser(
        "tail", parents=[common], help="print events as JSON lines, oldest first"
    )
    tail.add_argument("--follow", action="store_true", help="keep printing new events")
    tail.add_argument("--since", type=_moment, help="ISO 8601 time (default: all kept)")
    tail.add_argument("--type", default="", help="only this type, e.g. vault.data.read")
    tail.add_argument("--environment", help=_ENVIRONMENT_HELP)
    tail.add_argument(
        "--poll-seconds", type=float, default=1.0, help="how often --follow looks (default 1)"
    )
    verify = audit_commands.add_parser(
        "verify", parents=[common], help="check every event's hash chain; exit 1 at a break"
    )
    verify.add_argument("--environment", help=_ENVIRONMENT_HELP)
    hashed = audit_commands.add_parser(
        "hash", parents=[common], help="how events store a context value, to search for it"
    )
    hashed.add_argument("value", help="the context value, e.g. org_123")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    async with await open_records(settings) as records:
        audit_log = records.audit_log
        try:
            if args.audit_command == "hash":
                assert audit_log.keys is not None
                print(audit_log.keys.field_hash(args.value))
                return 0
            if args.audit_command == "verify":
                return await _verify(args, records.api_keys, audit_log)
            return await _tail(args, records.api_keys, audit_log)
        except VaultError as exc:
            print(f"vaultd: {exc.message}", file=sys.stderr)
            return 1


async def _environments(chosen: str | None, api_keys: ApiKeys) -> list[str]:
    """`chosen`, or every environment that ever had a key (all calls come from one) and the
    calls that failed authentication."""
    if chosen is not None:
        return [chosen]
    keys = await api_keys.list()
    return sorted({audit.UNAUTHENTICATED_ENVIRONMENT, *(k.environment_id for k in keys)})


async def _tail(args: argparse.Namespace, api_keys: ApiKeys, audit_log: AuditLog) -> int:
    environments = await _environments(args.environment, api_keys)
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
    broken = False
    for environment in await _environments(args.environment, api_keys):
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
