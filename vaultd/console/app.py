"""The console's ASGI application: routes -> pages, over sign-in (signin.py), the HTTP plumbing
and security headers (web.py) and the page builders (layout.py, key_pages.py, record_pages.py,
audit_view.py).

Served under a path prefix (`root`, "/console" by default) so that the same app can later be
mounted on the WorkOS-compatible HTTP listener beside its API routes; today listener.py serves
it on its own port (console_listen).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vaultd.console import audit_view, key_pages, layout, record_pages
from vaultd.console.rates import Rates
from vaultd.console.services import Console
from vaultd.console.sessions import Sessions
from vaultd.console.signin import SignedIn, SignIn
from vaultd.console.web import (
    CSP,
    HTTP_STATUS,
    Receive,
    Refused,
    Request,
    Response,
    Scope,
    Send,
    html,
    read_request,
    redirect,
    send_response,
)
from vaultd.core.errors import InvalidArgument, VaultError
from vaultd.storage.records import RewrapJob

__all__ = ["CSP", "ConsoleApp"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
Handler = Callable[[Request, SignedIn], Awaitable[Response]]


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
        self._signin = SignIn(console, sessions or Sessions(), root=self._root, tls=tls)
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
            response = html(exc.status, layout.error(self._root, exc.title, exc.message, False))
        except Exception:
            error_id = uuid.uuid4().hex
            log.exception(
                "unhandled error serving console %s (error id %s)", scope["path"], error_id
            )
            response = html(
                500,
                layout.error(
                    self._root, "Error", f"Something went wrong (error id {error_id}).", False
                ),
            )
        await send_response(response, send, tls=self._tls)

    # Routing ------------------------------------------------------------------------------

    async def _respond(self, scope: Scope, receive: Receive) -> Response:
        request = await read_request(scope, receive, self._root)
        if request is None:
            if scope["path"] == "/":
                return redirect(self._root + "/")
            raise Refused(404, "Not found", "There is no such page.")
        method, path = request.method, request.path
        if path.startswith("/static/") and method == "GET":
            return self._static(path.removeprefix("/static/"))
        if path == "/login":
            if method == "POST":
                return await self._signin.login(request)
            return html(200, layout.login(self._root))
        if method == "POST":
            self._signin.check_origin(request)
        signed = await self._signin.signed_in(request)
        if signed is None:
            if method == "GET" and not path.startswith("/api/") and path != "/audit.jsonl":
                return redirect(self._root + "/login")
            raise Refused(403, "Refused", "Sign in first: this request carries no live session.")
        if method == "POST":
            self._signin.check_csrf(request, signed)
        handler = self._routes().get((method, path))
        if handler is None:
            raise Refused(404, "Not found", "There is no such page.")
        try:
            return await handler(request, signed)
        except VaultError as exc:
            status = HTTP_STATUS.get(exc.code, 500)
            if status == 500:
                raise
            title = "Refused" if status in (401, 403) else "Could not do that"
            return html(status, layout.error(self._root, title, exc.message, True))

    def _routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", ""): self._overview,
            ("POST", "/logout"): self._signin.logout,
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
            ("GET", "/audit"): audit_view.audit_page,
            ("GET", "/audit.jsonl"): audit_view.audit_export,
            ("GET", "/api-keys"): self._api_keys,
            ("POST", "/api-keys"): self._create_api_key,
            ("POST", "/api-keys/revoke"): self._revoke_api_key,
        }

    def _static(self, name: str) -> Response:
        found = self._files.get(name)
        if found is None:
            raise Refused(404, "Not found", "There is no such file.")
        return Response(200, *found)

    # Pages --------------------------------------------------------------------------------

    async def _overview(self, request: Request, signed: SignedIn) -> Response:
        acting = signed.acting
        objects, keks, jobs, byok_keys = await asyncio.gather(
            acting.count_objects(), acting.list_keks(), acting.jobs(), acting.list_byok_keys()
        )
        rates = self._rates
        text = key_pages.overview(
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
        return {key_pages.item_of(r): r for r in await signed.acting.list_keks()}

    async def _keys(self, request: Request, signed: SignedIn, status: str = "") -> Response:
        records = list((await self._keks(signed)).values())
        return html(200, key_pages.keys(signed.frame, records, self._c.rules, status))

    async def _confirm(self, request: Request, signed: SignedIn) -> Response:
        action, item = request.query.get("action", ""), request.query.get("item", "")
        if action not in key_pages.CONFIRM_TEXT:
            raise InvalidArgument("action", "must be rotate, rewrap or shred")
        record = (await self._keks(signed)).get(item)
        if record is None or record.shredded_at is not None:
            return html(
                404, layout.error(self._root, "Not found", f"No live KEK for {item}.", True)
            )
        return html(200, key_pages.confirm(signed.frame, action, record))

    async def _rotate(self, request: Request, signed: SignedIn) -> Response:
        record = await signed.acting.rotate(request.value("item"))
        status = (
            f"Rotated {key_pages.item_of(record)}: version {len(record.versions)} is now current."
        )
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
            text = key_pages.confirm(
                signed.frame,
                "shred",
                record,
                "The typed item does not match: nothing was shredded.",
            )
            return html(400, text)
        record = await signed.acting.shred(item)
        return await self._keys(request, signed, f"Shredded {key_pages.item_of(record)}.")

    async def _byok(self, request: Request, signed: SignedIn, status: str = "") -> Response:
        records = await signed.acting.list_byok_keys()
        text = key_pages.byok(signed.frame, self._c.rules, self._c.verifications, records, status)
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
        return [
            record_pages.job_view(j, now) for j in sorted(jobs, key=lambda j: j.id, reverse=True)
        ]

    async def _jobs(self, request: Request, signed: SignedIn) -> Response:
        return html(200, record_pages.jobs(signed.frame, await self._job_views(signed)))

    async def _jobs_json(self, request: Request, signed: SignedIn) -> Response:
        body = json.dumps({"jobs": await self._job_views(signed)}).encode()
        return Response(200, body, "application/json")

    # API keys -----------------------------------------------------------------------------

    async def _api_keys(
        self,
        request: Request,
        signed: SignedIn,
        new_secret: tuple[str, str] | None = None,
        status: str = "",
    ) -> Response:
        records = await signed.acting.list_api_keys()
        text = record_pages.api_keys(
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
            self._signin.close_key(revoked.id)
            return self._signin.signed_out()
        return await self._api_keys(request, signed, status=f"Revoked API key {revoked.name}.")
