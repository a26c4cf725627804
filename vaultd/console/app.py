"""The console's ASGI application: sessions, CSRF, security headers, routes -> pages.

Served under a path prefix (`root`, "/console" by default) so that the same app can later be
mounted on the WorkOS-compatible HTTP listener beside its API routes; today listener.py serves
it on its own port (console_listen).

Every response carries a strict Content-Security-Policy (scripts and styles from this origin
only, no inline script or style, no framing), no-referrer, nosniff and no-store. A request that
changes something must be a POST from this origin (Origin and Sec-Fetch-Site are checked when
the browser sends them) with the session's CSRF token; the session cookie is SameSite=Strict,
so a cross-site form carries no session in the first place.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from vaultd.api.observe import REQUEST_ID_HEADER, request_id_from
from vaultd.console import pages
from vaultd.console.rates import Rates
from vaultd.console.services import Acting, Console, Signed
from vaultd.console.sessions import SESSION_SECONDS, Session, Sessions
from vaultd.core import audit
from vaultd.core.apikeys import Permission, actor_of, require
from vaultd.core.audit import event_json
from vaultd.core.errors import InvalidArgument, Unauthenticated, VaultError
from vaultd.storage.records import AuditEvent, AuditQuery, RewrapJob

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
MAX_FORM_BYTES = 64 * 1024
AUDIT_PAGE_EVENTS = 50
AUDIT_SCAN_PAGES = 10  # store pages of MAX_READ_LIMIT read at most per console page
EXPORT_MAX_EVENTS = 100_000
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Headers = [
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
}
AUDIT_TYPES = sorted(
    value
    for name, value in vars(audit).items()
    if name.isupper() and str(value).startswith("vault.")
)


@dataclass
class Response:
    status: int
    body: bytes | AsyncIterator[bytes]
    content_type: str = "text/html; charset=utf-8"
    headers: Headers = field(default_factory=list)


def html(status: int, text: str, headers: Headers | None = None) -> Response:
    return Response(status, text.encode(), headers=headers or [])


def redirect(location: str, headers: Headers | None = None) -> Response:
    return Response(303, b"", headers=[(b"location", location.encode()), *(headers or [])])


@dataclass
class Request:
    method: str
    path: str  # below the root, "" for the root itself
    query: dict[str, str]
    headers: dict[str, str]
    peer: str
    form: dict[str, list[str]] = field(default_factory=dict)

    def value(self, name: str) -> str:
        return (self.form.get(name) or [""])[0]

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None


class Refused(Exception):
    """A request the console will not serve, with its status and a message for the page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


@dataclass
class SignedIn:
    token: str
    session: Session
    acting: Acting
    frame: pages.Frame


class ConsoleApp:
    def __init__(
        self,
        console: Console,
        *,
        tls: bool,
        root: str = "/console",
        rates: Rates | None = None,
        sessions: Sessions | None = None,
    ) -> None:
        self._c = console
        self._tls = tls
        self._root = root.rstrip("/")
        self._rates = rates
        self._sessions = sessions or Sessions()
        self._cookie = "__Host-vaultd_console" if tls else "vaultd_console"
        # Read once: a handful of small files, served from memory without blocking the loop.
        self._files = {
            path.name: (path.read_bytes(), _STATIC_TYPES[path.suffix])
            for path in STATIC.iterdir()
            if path.suffix in _STATIC_TYPES
        }

    # ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        try:
            response = await self._respond(scope, receive)
        except Refused as exc:
            response = html(exc.status, pages.error(self._root, exc.title, exc.message, False))
        except Exception:
            error_id = uuid.uuid4().hex
            log.exception(
                "unhandled error serving console %s (error id %s)", scope["path"], error_id
            )
            response = html(
                500,
                pages.error(
                    self._root, "Error", f"Something went wrong (error id {error_id}).", False
                ),
            )
        await self._send(response, send)

    async def _send(self, response: Response, send: Send) -> None:
        headers = [*SECURITY_HEADERS, (b"content-type", response.content_type.encode())]
        if self._tls:
            headers.append((b"strict-transport-security", b"max-age=31536000"))
        headers += response.headers
        if isinstance(response.body, bytes):
            headers.append((b"content-length", str(len(response.body)).encode()))
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": response.body})
            return
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        async for chunk in response.body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _request(self, scope: Scope, receive: Receive) -> Request | None:
        path: str = scope["path"]
        if path != self._root and not path.startswith(self._root + "/"):
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = {
            k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()
        }
        client = scope.get("client") or ("unknown", 0)
        peer = (
            f"ipv6:[{client[0]}]:{client[1]}"
            if ":" in client[0]
            else f"ipv4:{client[0]}:{client[1]}"
        )
        request = Request(
            scope["method"], path[len(self._root) :].rstrip("/"), query, headers, peer
        )
        if request.method == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if len(body) > MAX_FORM_BYTES:
                    raise Refused(413, "Too large", "The form is larger than the console accepts.")
                if not message.get("more_body"):
                    break
            request.form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return request

    # Routing ------------------------------------------------------------------------------

    async def _respond(self, scope: Scope, receive: Receive) -> Response:
        request = await self._request(scope, receive)
        if request is None:
            if scope["path"] == "/":
                return redirect(self._root + "/")
            raise Refused(404, "Not found", "There is no such page.")
        method, path = request.method, request.path
        if path.startswith("/static/") and method == "GET":
            return self._static(path.removeprefix("/static/"))
        if path == "/login":
            if method == "POST":
                return await self._login(request)
            return html(200, pages.login(self._root))
        if method == "POST":
            self._check_origin(request)
        signed = await self._signed_in(request)
        if signed is None:
            if method == "GET" and not path.startswith("/api/") and path != "/audit.jsonl":
                return redirect(self._root + "/login")
            raise Refused(403, "Refused", "Sign in first: this request carries no live session.")
        if method == "POST":
            token = request.value("csrf")
            if not hmac.compare_digest(token.encode(), signed.session.csrf.encode()):
                raise Refused(403, "Refused", "The form's CSRF token is missing or stale; reload.")
        handler = self._routes().get((method, path))
        if handler is None:
            raise Refused(404, "Not found", "There is no such page.")
        try:
            return await handler(request, signed)
        except VaultError as exc:
            status = _HTTP_STATUS.get(exc.code, 500)
            if status == 500:
                raise
            title = "Refused" if status in (401, 403) else "Could not do that"
            return html(status, pages.error(self._root, title, exc.message, True))

    def _routes(
        self,
    ) -> dict[tuple[str, str], Callable[[Request, SignedIn], Awaitable[Response]]]:
        return {
            ("GET", ""): self._overview,
            ("POST", "/logout"): self._logout,
            ("GET", "/keys"): self._keys,
            ("GET", "/keys/confirm"): self._confirm,
            ("POST", "/keys/rotate"): self._rotate,
            ("POST", "/keys/rewrap"): self._rewrap,
            ("POST", "/keys/shred"): self._shred,
            ("GET", "/byok"): self._byok,
            ("POST", "/byok/verify"): self._verify,
            ("POST", "/byok/keys/verify"): self._verify_key,
            ("GET", "/jobs"): self._jobs,
            ("GET", "/api/jobs"): self._jobs_json,
            ("GET", "/audit"): self._audit,
            ("GET", "/audit.jsonl"): self._audit_export,
            ("GET", "/api-keys"): self._api_keys,
            ("POST", "/api-keys"): self._create_api_key,
            ("POST", "/api-keys/revoke"): self._revoke_api_key,
        }

    def _static(self, name: str) -> Response:
        found = self._files.get(name)
        if found is None:
            raise Refused(404, "Not found", "There is no such file.")
        return Response(200, *found)

    # Sign-in, sessions, CSRF --------------------------------------------------------------

    def _check_origin(self, request: Request) -> None:
        """A state-changing request must come from a page of this console."""
        site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        expected = f"{'https' if self._tls else 'http'}://{request.headers.get('host', '')}"
        # Under Referrer-Policy no-referrer, Chromium sends `Origin: null` even on a same-origin
        # form post; Sec-Fetch-Site (which a page cannot forge) decides when it is present.
        if site is not None:
            refused = site != "same-origin"
        else:
            refused = origin is not None and origin != expected
        if refused:
            log.warning(
                "console refused a cross-site %s %s (origin %s, sec-fetch-site %s)",
                request.method,
                request.path,
                origin,
                site,
            )
            raise Refused(403, "Refused", "Cross-site requests are refused.")

    def _set_cookie(self, value: str, max_age: int) -> tuple[bytes, bytes]:
        attributes = f"{self._cookie}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
        if self._tls:
            attributes += "; Secure"
        return (b"set-cookie", attributes.encode())

    async def _login(self, request: Request) -> Response:
        self._check_origin(request)
        secret = request.value("api_key").strip()
        try:
            key = await self._c.api_keys.authenticate(secret)
            require(key, Permission.ADMIN)
        except Unauthenticated:
            return html(401, pages.login(self._root, "That is not a valid, live API key."))
        except VaultError as exc:
            if exc.code == "PERMISSION_DENIED":
                return html(
                    403,
                    pages.login(
                        self._root, "That key has no admin permission: the console needs one."
                    ),
                )
            # The store did not answer, say: the page says so, and the form stays usable.
            return html(_HTTP_STATUS.get(exc.code, 500), pages.login(self._root, exc.message))
        token, _ = self._sessions.open(Signed(key.id, key.environment_id, actor_of(key)))
        log.info("console sign-in with API key %s (environment %s)", key.id, key.environment_id)
        return redirect(self._root + "/", [self._set_cookie(token, SESSION_SECONDS)])

    async def _signed_in(self, request: Request) -> SignedIn | None:
        token = request.cookie(self._cookie)
        session = self._sessions.find(token)
        if token is None or session is None:
            return None
        who = session.who
        # A key revoked since sign-in ends its sessions at once (through any front door).
        live = [
            k for k in await self._c.api_keys.list(who.environment_id) if k.id == who.api_key_id
        ]
        if not live or live[0].revoked_at is not None:
            self._sessions.close_key(who.api_key_id)
            return None
        # The same rule as for RPCs: the client's x-request-id when plausible, else a new one.
        request_id = request_id_from([(REQUEST_ID_HEADER, request.headers.get(REQUEST_ID_HEADER))])
        acting = Acting(self._c, who, request_id, request.peer)
        frame = pages.Frame(
            self._root, who.environment_id, who.actor.name or who.actor.id, session.csrf
        )
        return SignedIn(token, session, acting, frame)

    async def _logout(self, request: Request, signed: SignedIn) -> Response:
        self._sessions.close(signed.token)
        log.info("console sign-out of API key %s", signed.session.who.api_key_id)
        return redirect(self._root + "/login", [self._set_cookie("", 0)])

    # Pages --------------------------------------------------------------------------------

    async def _overview(self, request: Request, signed: SignedIn) -> Response:
        acting = signed.acting
        objects, keks, jobs, byok_keys = await asyncio.gather(
            acting.count_objects(), acting.list_keks(), acting.jobs(), acting.list_byok_keys()
        )
        rates = self._rates
        text = pages.overview(
            signed.frame,
            objects,
            keks,
            jobs,
            self._c.rules,
            self._c.verifications,
            byok_keys,
            rates.last_minute() if rates else None,
            rates.per_minute() if rates else [],
        )
        return html(200, text)

    async def _keks(self, signed: SignedIn) -> dict[str, Any]:
        return {pages.item_of(r): r for r in await signed.acting.list_keks()}

    async def _keys(self, request: Request, signed: SignedIn, status: str = "") -> Response:
        records = list((await self._keks(signed)).values())
        return html(200, pages.keys(signed.frame, records, self._c.rules, status))

    async def _confirm(self, request: Request, signed: SignedIn) -> Response:
        action, item = request.query.get("action", ""), request.query.get("item", "")
        if action not in pages.CONFIRM_TEXT:
            raise InvalidArgument("action", "must be rotate, rewrap or shred")
        record = (await self._keks(signed)).get(item)
        if record is None or record.shredded_at is not None:
            return html(404, pages.error(self._root, "Not found", f"No live KEK for {item}.", True))
        return html(200, pages.confirm(signed.frame, action, record))

    async def _rotate(self, request: Request, signed: SignedIn) -> Response:
        record = await signed.acting.rotate(request.value("item"))
        status = f"Rotated {pages.item_of(record)}: version {len(record.versions)} is now current."
        return await self._keys(request, signed, status)

    async def _rewrap(self, request: Request, signed: SignedIn) -> Response:
        job = await signed.acting.start_rewrap(request.value("item"))
        return redirect(f"{self._root}/jobs#{job.id}")

    async def _shred(self, request: Request, signed: SignedIn) -> Response:
        item = request.value("item")
        if request.value("typed").strip() != item:
            record = (await self._keks(signed)).get(item)
            if record is None:
                raise InvalidArgument("item", "names no KEK of this environment")
            text = pages.confirm(
                signed.frame,
                "shred",
                record,
                "The typed item does not match: nothing was shredded.",
            )
            return html(400, text)
        record = await signed.acting.shred(item)
        return await self._keys(request, signed, f"Shredded {pages.item_of(record)}.")

    async def _byok(self, request: Request, signed: SignedIn, status: str = "") -> Response:
        records = await signed.acting.list_byok_keys()
        text = pages.byok(signed.frame, self._c.rules, self._c.verifications, records, status)
        return html(200, text)

    async def _verify_key(self, request: Request, signed: SignedIn) -> Response:
        record = await signed.acting.verify_byok_key(request.value("id"))
        outcome = "ok" if record.verified else f"failed: {record.verification_error}"
        return await self._byok(request, signed, f"Verified {record.id}: {outcome}")

    async def _verify(self, request: Request, signed: SignedIn) -> Response:
        results = await signed.acting.verify_byok()
        failed = sum(1 for r in results if not r.ok)
        return await self._byok(
            request, signed, f"Verified {len(results)} key(s): {failed} failed."
        )

    async def _job_views(self, signed: SignedIn) -> list[dict[str, object]]:
        jobs: list[RewrapJob] = await signed.acting.jobs()
        now = datetime.now(UTC)
        return [pages.job_view(j, now) for j in sorted(jobs, key=lambda j: j.id, reverse=True)]

    async def _jobs(self, request: Request, signed: SignedIn) -> Response:
        return html(200, pages.jobs(signed.frame, await self._job_views(signed)))

    async def _jobs_json(self, request: Request, signed: SignedIn) -> Response:
        body = json.dumps({"jobs": await self._job_views(signed)}).encode()
        return Response(200, body, "application/json")

    # Audit --------------------------------------------------------------------------------

    def _audit_filters(self, request: Request) -> tuple[dict[str, str], AuditFilter]:
        filters = {k: request.query.get(k, "").strip() for k in pages.AUDIT_FIELDS}
        return filters, AuditFilter.parse(filters)

    async def _audit_events(
        self, signed: SignedIn, wanted: AuditFilter, after: str, limit: int, pages_max: int
    ) -> tuple[list[AuditEvent], str]:
        """Matching events from `after` on, a store page at a time; and where to go on from
        ("" at the end). Stops at a page boundary once `limit` matched (cursors are per page)."""
        found: list[AuditEvent] = []
        cursor = after
        for _ in range(pages_max):
            query = AuditQuery(
                after=cursor, since=wanted.since, type=wanted.type, limit=audit.MAX_READ_LIMIT
            )
            page = await signed.acting.read_audit(query)
            for event in page.events:
                if wanted.until is not None and event.time > wanted.until:
                    return found, ""
                if wanted.matches(event):
                    found.append(event)
            cursor = page.cursor
            if len(page.events) < audit.MAX_READ_LIMIT:
                return found, ""
            if len(found) >= limit:
                break
        return found, cursor

    async def _audit(self, request: Request, signed: SignedIn) -> Response:
        filters, wanted = self._audit_filters(request)
        events, next_after = await self._audit_events(
            signed, wanted, request.query.get("after", ""), AUDIT_PAGE_EVENTS, AUDIT_SCAN_PAGES
        )
        return html(200, pages.audit(signed.frame, filters, AUDIT_TYPES, events, next_after))

    async def _audit_export(self, request: Request, signed: SignedIn) -> Response:
        _, wanted = self._audit_filters(request)
        events, _ = await self._audit_events(
            signed, wanted, "", EXPORT_MAX_EVENTS, EXPORT_MAX_EVENTS // audit.MAX_READ_LIMIT
        )

        async def lines() -> AsyncIterator[bytes]:
            for event in events[:EXPORT_MAX_EVENTS]:
                yield (json.dumps(event_json(event), separators=(",", ":")) + "\n").encode()

        name = f"vaultd-audit-{signed.frame.environment_id}.jsonl"
        disposition = f'attachment; filename="{name}"'.encode()
        return Response(
            200, lines(), "application/x-ndjson", [(b"content-disposition", disposition)]
        )

    # API keys -----------------------------------------------------------------------------

    async def _api_keys(
        self,
        request: Request,
        signed: SignedIn,
        new_secret: tuple[str, str] | None = None,
        status: str = "",
    ) -> Response:
        records = await signed.acting.list_api_keys()
        text = pages.api_keys(
            signed.frame, records, signed.session.who.api_key_id, new_secret, status
        )
        return html(200, text)

    async def _create_api_key(self, request: Request, signed: SignedIn) -> Response:
        permissions = request.form.get("permissions", [])
        if not permissions:
            raise InvalidArgument("permissions", "choose at least one permission")
        new = await signed.acting.create_api_key(request.value("name").strip(), permissions)
        return await self._api_keys(
            request, signed, (new.record.id, new.secret), f"Created API key {new.record.name}."
        )

    async def _revoke_api_key(self, request: Request, signed: SignedIn) -> Response:
        revoked = await signed.acting.revoke_api_key(request.value("id"))
        if revoked.id == signed.session.who.api_key_id:
            self._sessions.close_key(revoked.id)
            return redirect(self._root + "/login", [self._set_cookie("", 0)])
        return await self._api_keys(request, signed, status=f"Revoked API key {revoked.name}.")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    type: str = ""
    actor: str = ""
    object: str = ""
    outcome: str = ""

    @classmethod
    def parse(cls, filters: dict[str, str]) -> AuditFilter:
        if filters["type"] and filters["type"] not in AUDIT_TYPES:
            raise InvalidArgument("type", "is not an audit event type")
        return cls(
            _time(filters["since"], "since"),
            _time(filters["until"], "until"),
            filters["type"],
            filters["actor"],
            filters["object"],
            filters["outcome"],
        )

    def matches(self, event: AuditEvent) -> bool:
        return (
            (not self.actor or self.actor in (event.actor_id, event.actor_name))
            and (not self.object or self.object in (event.object_id, event.object_name))
            and (not self.outcome or self.outcome == event.outcome)
        )


def _time(text: str, name: str) -> datetime | None:
    """A datetime-local value ("2026-12-04T14:05", read as UTC), or None when empty."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(name, "must be a date and time such as 2026-12-04T14:05") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
