"""The console's HTML frame: escaping, the page around every signed-in page's content, the
sign-in and error pages, and tables (vaultd/console/key_pages.py and record_pages.py build the
pages on it).

No inline script or style anywhere (the Content-Security-Policy forbids both); the one script,
static/console.js, only refreshes the Jobs table and copies nothing but what the page shows.
Forms that change something carry the session's CSRF token. Nothing here is handed a value,
a data key or a wrapped key: the page builders take ids, names, URIs, counts and times.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

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
