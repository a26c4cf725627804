"""The console's HTML: plain server-rendered pages, every dynamic string escaped.

No inline script or style anywhere (the Content-Security-Policy forbids both); the one script,
static/console.js, only refreshes the Jobs table and copies nothing but what the page shows.
Forms that change something carry the session's CSRF token. Nothing here is handed a value,
a data key or a wrapped key: the page builders take ids, names, URIs, counts and times.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from urllib.parse import urlencode

from vaultd.console.services import Verification
from vaultd.core.apikeys import Permission
from vaultd.core.rules import KeyRules
from vaultd.storage.records import (
    ApiKeyRecord,
    AuditEvent,
    ByokKeyRecord,
    KekRecord,
    RewrapJob,
    RewrapState,
)

NAV = (
    ("overview", "Overview", ""),
    ("keys", "Keys", "keys"),
    ("byok", "BYOK", "byok"),
    ("jobs", "Jobs", "jobs"),
    ("audit", "Audit", "audit"),
    ("apikeys", "API keys", "api-keys"),
)


def e(text: object) -> str:
    return escape(str(text), quote=True)


def when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def scheme(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else uri


@dataclass(frozen=True, slots=True)
class Frame:
    """What every signed-in page shows around its content."""

    root: str  # the URL prefix the console is served under, e.g. "/console"
    environment_id: str
    actor: str
    csrf: str


def csrf_field(frame: Frame) -> str:
    return f'<input type="hidden" name="csrf" value="{e(frame.csrf)}">'


def document(title: str, root: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · vaultd console</title>"
        f'<link rel="stylesheet" href="{root}/static/console.css">'
        f'<script src="{root}/static/console.js" defer></script>'
        f"</head><body>{body}</body></html>"
    )


def page(frame: Frame, current: str, title: str, content: str, status: str = "") -> str:
    links = "".join(
        f'<li><a href="{frame.root}/{path}"'
        + (' aria-current="page"' if key == current else "")
        + f">{e(label)}</a></li>"
        for key, label, path in NAV
    )
    notice = f'<p class="notice" role="status">{e(status)}</p>' if status else ""
    body = (
        '<a class="skip" href="#main">Skip to content</a>'
        '<header><span class="brand">vaultd console</span>'
        f'<nav aria-label="Pages"><ul>{links}</ul></nav>'
        f'<div class="who">environment <b>{e(frame.environment_id)}</b> · {e(frame.actor)}'
        f'<form method="post" action="{frame.root}/logout">{csrf_field(frame)}'
        '<button type="submit">Sign out</button></form></div></header>'
        f'<main id="main"><h1>{e(title)}</h1>{notice}{content}</main>'
    )
    return document(title, frame.root, body)


def login(root: str, error: str = "") -> str:
    alert = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = (
        '<main id="main" class="login"><h1>vaultd console</h1>'
        "<p>Sign in with an admin API key. The console acts in that key's environment; the key "
        "is checked once and not kept, and the session ends after 30 minutes.</p>"
        f'{alert}<form method="post" action="{root}/login">'
        '<label for="api_key">Admin API key</label>'
        '<input id="api_key" name="api_key" type="password" autocomplete="off" required '
        'spellcheck="false" placeholder="sk_…">'
        '<button type="submit">Sign in</button></form></main>'
    )
    return document("Sign in", root, body)


def error(root: str, title: str, message: str, signed_in: bool) -> str:
    back = (
        f'<a href="{root}/">Back to the overview</a>'
        if signed_in
        else f'<a href="{root}/login">Sign in</a>'
    )
    body = (
        f'<main id="main"><h1>{e(title)}</h1><p class="error" role="alert">{e(message)}</p>'
        f"<p>{back}</p></main>"
    )
    return document(title, root, body)


_CELL = re.compile(r'<(td|th scope="row")')


def _labelled(row: str, headers: Sequence[str]) -> str:
    """Each cell with its column's name (data-label), which a phone-width layout shows beside
    the cell instead of the header row. Rows are built here with every text escaped, so the
    only `<td` in them are cells."""
    labels = iter(headers)
    return _CELL.sub(lambda m: f'<{m.group(1)} data-label="{e(next(labels, ""))}"', row)


def table(caption: str, headers: Sequence[str], rows: Iterable[str], empty: str) -> str:
    rows = [_labelled(r, headers) for r in rows]
    if not rows:
        return f'<p class="empty">{e(empty)}</p>'
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    return (
        f'<div class="scroll"><table><caption>{e(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


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


# Jobs ----------------------------------------------------------------------------------------


def job_view(job: RewrapJob, now: datetime) -> dict[str, object]:
    """What the Jobs page (and its JSON) shows of a job: progress, rate and ETA."""
    elapsed = max((job.updated_at - job.created_at).total_seconds(), 0.0)
    rate = job.objects_done / elapsed if elapsed > 0 and job.objects_done else 0.0
    remaining = max(job.objects_total - job.objects_done, 0)
    eta = remaining / rate if rate > 0 and job.state is RewrapState.RUNNING else None
    return {
        "id": job.id,
        "state": job.state.value,
        "keks": len(job.kek_ids),
        "objects_done": job.objects_done,
        "objects_total": job.objects_total,
        "versions_rewrapped": job.versions_rewrapped,
        "rate": round(rate, 1),
        "eta_seconds": None if eta is None else round(eta),
        "error": job.error,
        "started": when(job.created_at),
        "updated": when(job.updated_at),
    }


def job_row(view: Mapping[str, object]) -> str:
    done, total = int(str(view["objects_done"])), int(str(view["objects_total"]))
    eta = view["eta_seconds"]
    return (
        f'<tr data-job="{e(view["id"])}"><th scope="row"><code>{e(view["id"])}</code></th>'
        f'<td class="state" data-state="{e(view["state"])}">{e(view["state"])}</td>'
        f'<td><progress max="{max(total, 1)}" value="{done}"></progress> '
        f'<span class="count">{done} / {total}</span></td>'
        f'<td class="rate">{e(view["rate"])}/s</td>'
        f'<td class="eta">{"" if eta is None else f"{eta} s"}</td>'
        f"<td>{e(view['keks'])}</td><td>{e(view['started'])}</td>"
        f'<td class="error">{e(view["error"])}</td></tr>'
    )


def jobs(frame: Frame, views: Sequence[Mapping[str, object]]) -> str:
    content = (
        f'<div id="jobs" data-poll="{frame.root}/api/jobs" aria-live="polite">'
        + table(
            "Rewrap jobs, newest first (updates itself while a job runs)",
            ["Job", "State", "Objects", "Rate", "ETA", "KEKs", "Started", "Error"],
            (job_row(v) for v in views),
            "No rewrap job yet: start one from the Keys page.",
        )
        + "</div>"
    )
    return page(frame, "jobs", "Jobs", content)


# Audit ---------------------------------------------------------------------------------------


AUDIT_FIELDS = ("since", "until", "type", "actor", "object", "outcome")


def audit(
    frame: Frame,
    filters: Mapping[str, str],
    types: Sequence[str],
    events: Sequence[AuditEvent],
    next_after: str,
    error_text: str = "",
) -> str:
    def field(name: str, label: str, kind: str = "text", hint: str = "") -> str:
        return (
            f'<div><label for="f-{name}">{e(label)}</label><input id="f-{name}" name="{name}" '
            f'type="{kind}" value="{e(filters.get(name, ""))}" placeholder="{e(hint)}"></div>'
        )

    options = '<option value="">any</option>' + "".join(
        f"<option{' selected' if filters.get('type') == t else ''}>{e(t)}</option>" for t in types
    )
    form = (
        f'<form method="get" action="{frame.root}/audit" class="filters">'
        + field("since", "From (UTC)", "datetime-local")
        + field("until", "Until (UTC)", "datetime-local")
        + f'<div><label for="f-type">Event type</label><select id="f-type" name="type">'
        f"{options}</select></div>"
        + field("actor", "Actor", hint="id or name")
        + field("object", "Object", hint="id or name")
        + field("outcome", "Outcome", hint="success, PERMISSION_DENIED…")
        + '<div><button type="submit">Filter</button></div></form>'
    )
    query = {k: v for k, v in filters.items() if v}
    export = f"{frame.root}/audit.jsonl?{urlencode(query)}"
    rows = [
        f'<tr><td class="time">{e(when(ev.time).removesuffix(" UTC"))}</td>'
        f"<td>{e(ev.type)}</td>"
        f"<td>{e(ev.actor_name or ev.actor_id)}<br><small>{e(ev.actor_id)}</small></td>"
        f'<td class="object">{e(ev.object_name)}<br><small>{e(ev.object_id)}</small></td>'
        f"<td>{e(ev.outcome)}</td><td><small>{e(', '.join(ev.key_ids))}"
        f"{'<br>' if ev.key_ids and ev.key_context else ''}"
        f"{e(', '.join(f'{k}={v}' for k, v in ev.key_context.items()))}</small></td>"
        f"<td><small>{e(ev.method)}</small></td></tr>"
        for ev in events
    ]
    pager = ""
    if next_after:
        following = urlencode(query | {"after": next_after})
        pager = f'<a rel="next" href="{frame.root}/audit?{e(following)}">Next page</a>'
    alert = f'<p class="error" role="alert">{e(error_text)}</p>' if error_text else ""
    content = (
        form
        + alert
        + f'<p><a href="{e(export)}" download>Export these filters as JSON lines</a></p>'
        + table(
            "Audit events, oldest first",
            ["Time (UTC)", "Type", "Actor", "Object", "Outcome", "Keys and context", "Method"],
            rows,
            "No event matches these filters.",
        )
        + f'<nav class="pager" aria-label="Pages of events">{pager}</nav>'
    )
    return page(frame, "audit", "Audit", content)


# API keys ------------------------------------------------------------------------------------


def api_keys(
    frame: Frame,
    records: Sequence[ApiKeyRecord],
    own_key_id: str,
    new_secret: tuple[str, str] | None = None,
    status: str = "",
) -> str:
    shown = ""
    if new_secret is not None:
        key_id, secret = new_secret
        shown = (
            '<section class="secret" aria-labelledby="new-key"><h2 id="new-key">New API key '
            f"<code>{e(key_id)}</code></h2><p>Copy it now: vaultd keeps only its hash and "
            "cannot show it again.</p>"
            f'<p><output id="new-secret"><code>{e(secret)}</code></output></p></section>'
        )
    rows = []
    for k in records:
        action = ""
        if k.revoked_at is None:
            label = "Revoke (signs you out)" if k.id == own_key_id else "Revoke"
            action = (
                f'<form method="post" action="{frame.root}/api-keys/revoke">{csrf_field(frame)}'
                f'<input type="hidden" name="id" value="{e(k.id)}">'
                f'<button type="submit" class="danger" aria-label="Revoke {e(k.name)}">'
                f"{e(label)}</button></form>"
            )
        rows.append(
            f'<tr data-key="{e(k.id)}"><th scope="row">{e(k.name)}</th><td><code>{e(k.id)}</code>'
            f"</td><td>{e(', '.join(k.permissions))}</td><td>{e(when(k.created_at))}</td>"
            f'<td class="revoked">{e(when(k.revoked_at)) or "live"}</td><td>{action}</td></tr>'
        )
    boxes = "".join(
        f'<label class="check"><input type="checkbox" name="permissions" value="{p.value}"'
        f"{' checked' if p is not Permission.ADMIN else ''}> {p.value}</label>"
        for p in Permission
    )
    content = (
        shown
        + table(
            f"API keys of environment {frame.environment_id}",
            ["Name", "Id", "Permissions", "Created", "Revoked", ""],
            rows,
            "No API key.",
        )
        + f'<section><h2>Create an API key</h2><form method="post" action="{frame.root}/api-keys">'
        f'{csrf_field(frame)}<label for="name">Name</label>'
        '<input id="name" name="name" maxlength="200" autocomplete="off">'
        f"<fieldset><legend>Permissions</legend>{boxes}</fieldset>"
        '<button type="submit">Create</button></form></section>'
    )
    return page(frame, "apikeys", "API keys", content, status)
