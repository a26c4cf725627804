"""The console's record pages: rewrap jobs, audit events and API keys. Every dynamic string
is escaped (vaultd/console/layout.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from urllib.parse import urlencode

from vaultd.console.layout import (
    Frame,
    csrf_field,
    e,
    page,
    table,
    when,
)
from vaultd.core.apikeys import Permission
from vaultd.storage.records import ApiKeyRecord, AuditEvent, RewrapJob, RewrapState

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
