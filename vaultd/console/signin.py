"""Sign-in, sessions and CSRF for the console.

A request that changes something must be a POST from this origin (Origin and Sec-Fetch-Site
are checked when the browser sends them) with the session's CSRF token; the session cookie is
SameSite=Strict, so a cross-site form carries no session in the first place.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from vaultd.api.observe import REQUEST_ID_HEADER, request_id_from
from vaultd.console import layout
from vaultd.console.services import Acting, Console, Signed
from vaultd.console.sessions import SESSION_SECONDS, Session, Sessions
from vaultd.console.web import HTTP_STATUS, Refused, Request, Response, html, redirect
from vaultd.core.apikeys import Permission, actor_of, require
from vaultd.core.errors import Unauthenticated, VaultError

log = logging.getLogger(__name__)


@dataclass
class SignedIn:
    token: str
    session: Session
    acting: Acting
    frame: layout.Frame


class SignIn:
    """The console's sessions: signing in and out, and who a request is signed in as."""

    def __init__(self, console: Console, sessions: Sessions, *, root: str, tls: bool) -> None:
        self._c = console
        self._sessions = sessions
        self._root = root
        self._tls = tls
        self._cookie = "__Host-vaultd_console" if tls else "vaultd_console"

    def check_origin(self, request: Request) -> None:
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

    @staticmethod
    def check_csrf(request: Request, signed: SignedIn) -> None:
        token = request.value("csrf")
        if not hmac.compare_digest(token.encode(), signed.session.csrf.encode()):
            raise Refused(403, "Refused", "The form's CSRF token is missing or stale; reload.")

    def set_cookie(self, value: str, max_age: int) -> tuple[bytes, bytes]:
        attributes = f"{self._cookie}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
        if self._tls:
            attributes += "; Secure"
        return (b"set-cookie", attributes.encode())

    async def login(self, request: Request) -> Response:
        self.check_origin(request)
        secret = request.value("api_key").strip()
        try:
            key = await self._c.api_keys.authenticate(secret)
            require(key, Permission.ADMIN)
        except Unauthenticated:
            return html(401, layout.login(self._root, "That is not a valid, live API key."))
        except VaultError as exc:
            if exc.code == "PERMISSION_DENIED":
                return html(
                    403,
                    layout.login(
                        self._root, "That key has no admin permission: the console needs one."
                    ),
                )
            # The store did not answer, say: the page says so, and the form stays usable.
            return html(HTTP_STATUS.get(exc.code, 500), layout.login(self._root, exc.message))
        token, _ = self._sessions.open(Signed(key.id, key.environment_id, actor_of(key)))
        log.info("console sign-in with API key %s (environment %s)", key.id, key.environment_id)
        return redirect(self._root + "/", [self.set_cookie(token, SESSION_SECONDS)])

    async def signed_in(self, request: Request) -> SignedIn | None:
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
        frame = layout.Frame(
            self._root, who.environment_id, who.actor.name or who.actor.id, session.csrf
        )
        return SignedIn(token, session, acting, frame)

    async def logout(self, request: Request, signed: SignedIn) -> Response:
        self._sessions.close(signed.token)
        log.info("console sign-out of API key %s", signed.session.who.api_key_id)
        return self.signed_out()

    def signed_out(self) -> Response:
        """To the sign-in page, with the session cookie cleared."""
        return redirect(self._root + "/login", [self.set_cookie("", 0)])

    def close_key(self, api_key_id: str) -> None:
        """End every session of a key (it was just revoked)."""
        self._sessions.close_key(api_key_id)
