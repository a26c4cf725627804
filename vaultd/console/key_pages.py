"""The console's key pages: the overview, KEKs (with the rotate/rewrap/shred confirmations)
and BYOK keys. Every dynamic string is escaped (vaultd/console/layout.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

from vaultd.console.layout import (
    Frame,
    age,
    csrf_field,
    e,
    page,
    scheme,
    table,
    when,
)
from vaultd.console.services import Verification
from vaultd.core.rules import KeyRules
from vaultd.storage.records import ByokKeyRecord, KekRecord, RewrapJob, RewrapState

# Overview ------------------------------------------------------------------------------------


def chart(points: Sequence[tuple[float, float, float]]) -> str:
    """Calls and errors per minute between samples, as an SVG polyline pair. The x axis spans
    the samples there are (at most 30 minutes), so a process started a minute ago shows one."""
    if len(points) < 2:
        return '<p class="empty">The chart starts once 20 seconds of samples are in.</p>'
    width, height = 600, 120
    newest = min(p[0] for p in points)
    span = max(max(p[0] for p in points) - newest, 1.0)
    top = max(1.0, *(p[1] for p in points))

    def line(index: int) -> str:
        xs = (width - (p[0] - newest) / span * width for p in points)
        ys = (height - p[index] / top * (height - 4) for p in points)
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))

    minutes = f"{span / 60:.0f} minutes" if span >= 90 else f"{span:.0f} seconds"
    return (
        f'<figure><svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Calls and errors per minute over the last {minutes}, peak {top:.0f}">'
        f'<polyline class="calls" fill="none" points="{line(1)}"/>'
        f'<polyline class="errors" fill="none" points="{line(2)}"/></svg>'
        f"<figcaption>Calls (blue) and errors (red) per minute over the last {minutes}; "
        f"peak {top:.0f}/min.</figcaption></figure>"
    )


def overview(
    frame: Frame,
    objects: int,
    keks: Sequence[KekRecord],
    jobs: Sequence[RewrapJob],
    rules: KeyRules,
    verifications: Mapping[str, Verification],
    byok_keys: Sequence[ByokKeyRecord],
    last_minute: tuple[float, float] | None,
    points: Sequence[tuple[float, float, float]],
) -> str:
    live = [k for k in keks if k.shredded_at is None]
    by_provider = Counter(scheme(k.versions[-1].provider_uri) for k in live if k.versions)
    running = sum(1 for j in jobs if j.state is RewrapState.RUNNING)
    providers = (
        "".join(
            f'<li><span>{e(name)}</span> <b data-kek-provider="{e(name)}">{count}</b></li>'
            for name, count in sorted(by_provider.items())
        )
        or "<li>none yet</li>"
    )
    calls, errors = last_minute if last_minute else (0, 0)
    byok = [v for v in verifications.values() if v.uri != rules.default_uri]
    last = max((v.at for v in byok), default=None)
    failing = sum(1 for v in byok if not v.ok)
    byok_line = (
        f"{len(rules.rules)} rule(s); last verified {e(when(last))}, {failing} failing"
        if last
        else f"{len(rules.rules)} rule(s); not verified since this process started"
    )
    # A run-time key's last outcome is stored, so this count survives restarts.
    runtime_failed = sum(1 for k in byok_keys if k.verified_at is not None and not k.verified)
    content = (
        '<section class="cards" aria-label="Counts">'
        f'<div class="card"><h2>Objects</h2><p class="big" id="object-count">{objects}</p></div>'
        f'<div class="card"><h2>KEKs</h2><p class="big" id="kek-count">{len(live)}</p>'
        f'<ul class="plain" id="kek-providers">{providers}</ul>'
        f"<p>{len(keks) - len(live)} shredded</p></div>"
        f'<div class="card"><h2>Rewrap jobs running</h2><p class="big" id="jobs-running">'
        f"{running}</p></div>"
        f'<div class="card"><h2>Last minute</h2><p class="big"><span id="calls-minute">'
        f'{calls:.0f}</span> calls</p><p><span id="errors-minute">{errors:.0f}</span> errors</p>'
        "</div>"
        f'<div class="card"><h2>BYOK</h2><p>{byok_line}</p>'
        f'<p><span id="byok-keys">{len(byok_keys)}</span> run-time key(s), '
        f'<span id="byok-failed" class="{"failed" if runtime_failed else "ok"}">'
        f"{runtime_failed}</span> failing verification</p>"
        f'<p><a href="{frame.root}/byok">Rules, keys and verification</a></p></div></section>'
        f"<section><h2>Calls per minute</h2>{chart(points)}</section>"
    )
    return page(frame, "overview", "Overview", content)


# Keys ----------------------------------------------------------------------------------------


def item_of(record: KekRecord) -> str:
    return f"{record.item_key}={record.item_value}"


def keys(frame: Frame, records: Sequence[KekRecord], rules: KeyRules, status: str = "") -> str:
    now = datetime.now(UTC)
    rows = []
    for r in sorted(records, key=item_of):
        item = item_of(r)
        query = urlencode({"item": item})
        if r.shredded_at is not None:
            state, uri, versions, rotated, created = (
                f"shredded {when(r.shredded_at)}",
                "",
                "0",
                "",
                "",
            )
            actions = ""
        else:
            newest = r.versions[-1]
            state, uri, versions = "live", newest.provider_uri, str(newest.version)
            rotated, created = age(newest.created_at, now), age(r.versions[0].created_at, now)
            actions = (
                f'<a href="{frame.root}/keys/confirm?action=rotate&amp;{e(query)}">Rotate…</a> '
                f'<a href="{frame.root}/keys/confirm?action=rewrap&amp;{e(query)}">Rewrap…</a> '
                f'<a class="danger" href="{frame.root}/keys/confirm?action=shred&amp;{e(query)}">'
                "Shred…</a>"
            )
        rows.append(
            f'<tr data-item="{e(item)}"><th scope="row">{e(item)}</th>'
            f"<td><code>{e(uri)}</code>{_older_uris(r)}</td>"
            f'<td class="version">{versions}</td>'
            f"<td>{e(created)}</td><td>{e(rotated)}</td>"
            f"<td>{r.min_decryption_version}</td><td>{e(state)}</td>"
            f'<td class="actions">{actions}</td></tr>'
        )
    content = table(
        f"KEKs of environment {frame.environment_id}",
        [
            "Item",
            "Provider key (newest version)",
            "Version",
            "Age",
            "Rotated",
            "Min decryption version",
            "State",
            "Actions",
        ],
        rows,
        "No KEK yet: one is made the first time an object or data key uses a context item.",
    ) + (
        f'<p class="hint">New KEKs of an item follow the rules: items without a rule use '
        f"<code>{e(rules.default_uri)}</code>.</p>"
    )
    return page(frame, "keys", "Keys", content, status)


def _older_uris(record: KekRecord) -> str:
    """Provider keys of older versions that differ from the newest's (a tenant moved to a new
    CMK, and the rewrap has not caught up): worth seeing before retiring anything."""
    if not record.versions:
        return ""
    newest = record.versions[-1].provider_uri
    older = dict.fromkeys(v.provider_uri for v in record.versions[:-1] if v.provider_uri != newest)
    if not older:
        return ""
    listed = ", ".join(f"<code>{e(u)}</code>" for u in older)
    return f"<br><small>older versions: {listed}</small>"


CONFIRM_TEXT = {
    "rotate": (
        "Rotate",
        "Add a new version to this KEK. New data is wrapped under it; older versions still "
        "decrypt until retired.",
    ),
    "rewrap": (
        "Start a rewrap",
        "Start a background job that moves every wrapped key of this KEK to its newest version "
        "and provider key. Data is not touched; progress shows on the Jobs page.",
    ),
    "shred": (
        "Shred",
        "Destroy every version of this KEK for good. Every object and data key whose only "
        "KEK this is becomes unreadable, forever. This cannot be undone.",
    ),
}


def confirm(frame: Frame, action: str, record: KekRecord, error_text: str = "") -> str:
    verb, explain = CONFIRM_TEXT[action]
    item = item_of(record)
    alert = f'<p class="error" role="alert">{e(error_text)}</p>' if error_text else ""
    typed = ""
    if action == "shred":
        typed = (
            f'<label for="typed">Type the item <code>{e(item)}</code> to confirm</label>'
            '<input id="typed" name="typed" autocomplete="off" spellcheck="false" required>'
        )
    content = (
        f"<p>{e(explain)}</p>{alert}"
        f"<dl><dt>Item</dt><dd><code>{e(item)}</code></dd><dt>KEK</dt><dd><code>"
        f"{e(record.kek_id)}</code></dd><dt>Newest version</dt><dd>"
        f"{len(record.versions)}</dd></dl>"
        f'<form method="post" action="{frame.root}/keys/{action}">{csrf_field(frame)}'
        f'<input type="hidden" name="item" value="{e(item)}">{typed}'
        f'<button type="submit" class="{"danger" if action == "shred" else ""}">'
        f"{e(verb)} {e(item)}</button> "
        f'<a href="{frame.root}/keys">Cancel</a></form>'
    )
    return page(frame, "keys", f"{verb}: {item}", content)


# BYOK ----------------------------------------------------------------------------------------


def byok_key_row(frame: Frame, k: ByokKeyRecord) -> str:
    if k.verified_at is None:
        result = '<td class="muted">not verified yet</td>'
    elif k.verified:
        result = '<td class="ok">ok</td>'
    else:
        result = f'<td class="failed">failed: {e(k.verification_error)}</td>'
    return (
        f'<tr data-byok-key="{e(k.id)}"><th scope="row">{e(k.item_key)}={e(k.pattern)}</th>'
        f"<td><code>{e(k.key_uri)}</code></td><td>{e(when(k.created_at))}</td>"
        f'<td class="checked">{e(when(k.verified_at))}</td>{result}'
        f'<td><form method="post" action="{frame.root}/byok/keys/verify">{csrf_field(frame)}'
        f'<input type="hidden" name="id" value="{e(k.id)}">'
        f'<button type="submit" aria-label="Verify {e(k.id)} now">Verify now</button>'
        "</form></td></tr>"
    )


def byok(
    frame: Frame,
    rules: KeyRules,
    verifications: Mapping[str, Verification],
    byok_keys: Sequence[ByokKeyRecord] = (),
    status: str = "",
) -> str:
    def result(uri: str) -> str:
        found = verifications.get(uri)
        if found is None:
            return '<td class="muted">not verified yet</td><td></td>'
        mark = "ok" if found.ok else "failed"
        return f'<td class="{mark}">{e(found.detail)}</td><td>{e(when(found.at))}</td>'

    rows = [
        f'<tr><th scope="row">default (items without a rule)</th><td><code>'
        f"{e(rules.default_uri)}</code></td>{result(rules.default_uri)}</tr>"
    ] + [
        f'<tr><th scope="row">{e(r.item_key)}={e(r.value)}{"*" if r.is_prefix else ""}</th>'
        f"<td><code>{e(r.key_uri)}</code></td>{result(r.key_uri)}</tr>"
        for r in rules.rules
    ]
    content = (
        table(
            "BYOK rules from the settings",
            ["Match", "Provider key", "Verification", "Checked"],
            rows,
            "",
        )
        + f'<form method="post" action="{frame.root}/byok/verify">{csrf_field(frame)}'
        '<button type="submit">Verify all rule keys now</button></form>'
        '<p class="hint">Rules come from the <code>byok:</code> settings and change with a '
        "restart. Verifying asks each provider to wrap and unwrap a test key; results are kept "
        "in this process until it restarts.</p>"
        + table(
            "Run-time BYOK keys of this environment",
            ["Match", "Provider key", "Created", "Last verified", "Result", "Actions"],
            [byok_key_row(frame, k) for k in byok_keys],
            "No run-time BYOK keys: add one with vaultd byok add or AdminService.CreateByokKey.",
        )
        + '<p class="hint">Run-time keys are added and removed while vaultd runs and are '
        "consulted before the settings' rules. Their last verification is stored, so every "
        "process and restart sees it. A key that fails keeps governing its items.</p>"
    )
    return page(frame, "byok", "BYOK", content, status)
