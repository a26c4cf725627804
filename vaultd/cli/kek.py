"""`vaultd kek list|rotate|rewrap|jobs|retire|shred`: key-encryption keys, on the store.

Like `vaultd apikey`, the kek commands work straight on the configured store (--config,
--data-dir, --redis-url, as for `serve`), with the configured providers and BYOK rules, so they
need the same key access as the server. What they change is audited with the actor "cli".

`kek rewrap --wait` runs the job here and draws its progress; without --wait the job is queued
for a running vaultd, whose watcher takes it within half a lease. The admin RPCs
(AdminService.StartRewrap, GetRewrapJob, ...) do the same through a server.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from datetime import UTC, datetime, timedelta

from vaultd.app import open_app
from vaultd.cli.output import Subcommands, cli_origin, command_group, iso, print_table
from vaultd.core import audit
from vaultd.core.apikeys import DEFAULT_ENVIRONMENT
from vaultd.core.audit import AuditLog, Origin, Subject
from vaultd.core.errors import VaultError
from vaultd.core.lifecycle import KekSelector, KeyLifecycle, item_named, parse_item
from vaultd.settings import Settings
from vaultd.storage.records import KekRecord, RewrapJob, RewrapState

COMMAND = "kek"
POLL_SECONDS = 0.5
BAR_WIDTH = 30


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    environment = argparse.ArgumentParser(add_help=False)
    environment.add_argument(
        "--environment", default=DEFAULT_ENVIRONMENT, help="default: %(default)s"
    )
    selector = argparse.ArgumentParser(add_help=False)
    chosen = selector.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "--item",
        action="append",
        default=[],
        help="key=value (a value may end in *); repeatable",
    )
    chosen.add_argument("--key-uri-prefix", default="", help="KEKs under keys with this prefix")
    chosen.add_argument("--all", action="store_true", help="every KEK of the environment")
    parents = [common, environment]

    kek_commands = command_group(commands, "kek", "key-encryption keys, on the configured store")
    kek_commands.add_parser("list", parents=parents, help="a table of KEKs, no key material")
    kek_commands.add_parser(
        "rotate", parents=[*parents, selector], help="a new version for each selected KEK"
    )
    rewrap = kek_commands.add_parser(
        "rewrap",
        parents=[*parents, selector],
        help="move wrapped keys to the newest KEK versions; the data is not touched",
    )
    rewrap.add_argument("--wait", action="store_true", help="run it here, with a progress bar")
    kek_commands.add_parser("jobs", parents=parents, help="the environment's rewrap jobs")
    retire = kek_commands.add_parser(
        "retire", parents=parents, help="refuse wrapped keys under older versions"
    )
    retire.add_argument("--item", required=True, help="key=value")
    retire.add_argument("--min-version", type=int, required=True, help="oldest version allowed")
    shred = kek_commands.add_parser(
        "shred", parents=parents, help="destroy an item's KEK for good (crypto-shredding)"
    )
    named = shred.add_mutually_exclusive_group(required=True)
    named.add_argument("--item", help="key=value")
    named.add_argument(
        "--item-key", help="the item's key, with --item-value: nothing is split, * is literal"
    )
    shred.add_argument("--item-value", help="the item's value, with --item-key")
    shred.add_argument("--confirm", action="store_true", help="required: there is no undo")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    # A command App: no cache, and the environment's BYOK keys resolve items as in the server.
    async with await open_app(settings, serving=False) as app:
        try:
            return await _kek(args, app.lifecycle, app.audit_log, settings.kek_cache.ttl_seconds)
        except VaultError as exc:
            print(f"vaultd: {exc.message}", file=sys.stderr)
            return 1


async def _kek(
    args: argparse.Namespace, lifecycle: KeyLifecycle, audit_log: AuditLog, settle_seconds: float
) -> int:
    env = args.environment
    command = args.kek_command
    origin = cli_origin(env, f"vaultd kek {command}")
    if command == "list":
        print_table(_KEK_HEADER, [_kek_row(r) for r in await lifecycle.list_keks(env)])
    elif command == "jobs":
        print_table(_JOB_HEADER, [_job_row(j) for j in await lifecycle.jobs(env)])
    elif command == "rotate":
        records = await lifecycle.rotate(env, _selector(args))
        await _audit(audit_log, audit.KEK_ROTATED, origin, records)
        print_table(_KEK_HEADER, [_kek_row(r) for r in records])
    elif command == "retire":
        record = await lifecycle.retire(env, parse_item(args.item), args.min_version)
        await _audit(audit_log, audit.KEK_RETIRED, origin, [record])
        print_table(_KEK_HEADER, [_kek_row(record)])
    elif command == "shred":
        if not args.confirm:
            print("vaultd: a shred destroys keys for good; add --confirm", file=sys.stderr)
            return 2
        items = (
            (parse_item(args.item),)
            if args.item is not None
            else item_named(args.item_key, args.item_value or "")
        )
        record = await lifecycle.shred(env, *items)
        await _audit(audit_log, audit.KEK_SHREDDED, origin, [record])
        print(f"shredded {record.kek_id} ({record.item_key}={record.item_value})")
    else:
        return await _rewrap(args, lifecycle, audit_log, origin, settle_seconds)
    return 0


async def _rewrap(
    args: argparse.Namespace,
    lifecycle: KeyLifecycle,
    audit_log: AuditLog,
    origin: Origin,
    settle_seconds: float,
) -> int:
    env = args.environment
    selector = _selector(args)
    if not args.wait:
        job = await lifecycle.queue_rewrap(env, selector)
        await audit_log.record(audit.REWRAP_STARTED, origin, subject=Subject(key_ids=job.kek_ids))
        print(f"queued {job.id}: a running vaultd takes it up; follow it with `vaultd kek jobs`")
        return 0
    job = await lifecycle.start_rewrap(env, selector)
    await audit_log.record(audit.REWRAP_STARTED, origin, subject=Subject(key_ids=job.kek_ids))
    print(
        f"{job.id}: started; objects wait until the newest KEK versions are "
        f"{settle_seconds:g}s old (kek_cache.ttl_seconds), so no server still wraps under older",
        file=sys.stderr,
    )
    settle_until = await _settle_until(lifecycle, env, job, settle_seconds)
    meter = _Meter(settle_until)
    waiting = asyncio.ensure_future(lifecycle.runner.wait(job.id))
    while not waiting.done():
        _progress(await lifecycle.job(env, job.id), meter)
        await asyncio.wait([waiting], timeout=POLL_SECONDS)
    job = await lifecycle.job(env, job.id)
    _progress(job, meter, end=True)
    if job.state is RewrapState.FAILED:
        print(f"vaultd: {job.id} failed: {job.error}", file=sys.stderr)
        return 1
    return 0


async def _settle_until(
    lifecycle: KeyLifecycle, env: str, job: RewrapJob, settle_seconds: float
) -> datetime:
    """When the job's newest KEK versions are old enough for objects to be rewrapped: until
    then every server may still hold an older version as current in its cache."""
    newest = [
        record.versions[-1].created_at
        for record in await lifecycle.list_keks(env)
        if record.kek_id in job.kek_ids and record.versions
    ]
    return max(newest, default=job.created_at) + timedelta(seconds=settle_seconds)


class _Meter:
    """Objects per second since the settle wait ended, for the rate and the ETA."""

    def __init__(self, settle_until: datetime) -> None:
        self.settle_until = settle_until
        self.announced = False  # the countdown's one line when stderr is not a terminal
        self._start: tuple[float, int] | None = None

    def rate(self, done: int) -> float | None:
        now = time.monotonic()
        if self._start is None:
            self._start = (now, done)
            return None
        seconds, since = now - self._start[0], done - self._start[1]
        return since / seconds if seconds > 0 and since > 0 else None


def _progress(job: RewrapJob, meter: _Meter, *, end: bool = False) -> None:
    waiting = (meter.settle_until - datetime.now(UTC)).total_seconds()
    if waiting > 0 and job.objects_done == 0 and not end:
        # A countdown while the KEK cache TTL runs out: the job has nothing to show yet.
        line = f"\r{job.id} waiting out the KEK cache TTL: {math.ceil(waiting)}s left   "
        if sys.stderr.isatty():
            print(line, end="", file=sys.stderr)
        elif not meter.announced:
            meter.announced = True
            print(line[1:].rstrip(), file=sys.stderr)
        return
    total = max(job.objects_total, job.objects_done, 1)
    filled = BAR_WIDTH * job.objects_done // total
    rate = meter.rate(job.objects_done)
    pace = ""
    if rate:
        left = max(job.objects_total - job.objects_done, 0)
        pace = f"; {rate:,.1f} objects/s" + ("" if end else f", ETA {_clock(left / rate)}")
    line = (
        f"\r{job.id} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
        f"{job.objects_done:,}/{job.objects_total:,} objects, "
        f"{job.versions_rewrapped:,} versions and {job.keks_rewrapped:,} KEK versions rewrapped"
        f" ({job.state.value}){pace}"
    )
    # A bar redrawn in place on a terminal; whole lines, only at the end, in a log.
    if sys.stderr.isatty() or end:
        print(line if sys.stderr.isatty() else line[1:], end="\n" if end else "", file=sys.stderr)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _selector(args: argparse.Namespace) -> KekSelector:
    return KekSelector.parse(args.item, args.key_uri_prefix, args.all)


async def _audit(audit_log: AuditLog, kind: str, origin: Origin, records: list[KekRecord]) -> None:
    for r in records:
        subject = Subject(key_ids=(r.kek_id,), key_context={r.item_key: r.item_value})
        await audit_log.record(kind, origin, subject=subject)


_KEK_HEADER = ("ID", "ITEM", "VERSIONS", "MIN", "KEY URI", "SHREDDED")
_JOB_HEADER = ("ID", "STATE", "OBJECTS", "REWRAPPED", "KEKS", "UPDATED", "ERROR")


def _kek_row(r: KekRecord) -> tuple[str, ...]:
    newest = r.versions[-1].provider_uri if r.versions else "-"
    return (
        r.kek_id,
        f"{r.item_key}={r.item_value}",
        str(len(r.versions)),
        str(r.min_decryption_version),
        newest,
        iso(r.shredded_at) if r.shredded_at else "-",
    )


def _job_row(j: RewrapJob) -> tuple[str, ...]:
    return (
        j.id,
        j.state.value,
        f"{j.objects_done}/{j.objects_total}",
        str(j.versions_rewrapped),
        str(j.keks_rewrapped),
        iso(j.updated_at),
        j.error or "-",
    )
