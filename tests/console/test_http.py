"""The console over plain HTTP(S), without a browser: headers, cookies, settings, sessions and
the audit trail of its actions next to the RPCs'. The client runs in a thread, since the
console is served by this test's own event loop."""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from http.client import HTTPConnection, HTTPSConnection
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from pydantic import ValidationError

from testkit.auth import BOOTSTRAP_API_KEY, add_api_key
from testkit.console import ConsoleServer
from testkit.running import settings_for
from testkit.serving import ServeProcess, clean_env, free_port, wait_serving
from testkit.tls import make_pki
from vaultd import cli
from vaultd.console.app import CSP
from vaultd.console.services import Signed
from vaultd.console.sessions import SESSION_SECONDS, Sessions
from vaultd.core.apikeys import new_secret
from vaultd.core.types import Actor
from vaultd.server import start
from vaultd.settings import Settings
from vaultd.storage.records import AuditQuery
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import admin_service_pb2_grpc as apb_grpc

COOKIE = "vaultd_console"
MISSING_KEY_ID = "key_" + "0" * 26


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name), "")


def _fetch(
    base: str,
    method: str,
    path: str,
    form: dict[str, str] | None,
    headers: dict[str, str],
    context: ssl.SSLContext | None,
) -> Reply:
    url = urlsplit(base)
    assert url.hostname and url.port
    if url.scheme == "https":
        conn: HTTPConnection = HTTPSConnection(url.hostname, url.port, context=context, timeout=10)
    else:
        conn = HTTPConnection(url.hostname, url.port, timeout=10)
    body = urlencode(form).encode() if form is not None else None
    if body is not None:
        headers = {"content-type": "application/x-www-form-urlencoded", **headers}
    conn.request(method, url.path + path, body=body, headers=headers)
    reply = conn.getresponse()
    result = Reply(reply.status, reply.getheaders(), reply.read().decode())
    conn.close()
    return result


class Client:
    """A console visitor: keeps the session cookie, reads the CSRF token off each page."""

    def __init__(self, base: str, context: ssl.SSLContext | None = None) -> None:
        self.base = base
        self.context = context
        self.cookie = ""
        self.csrf = ""

    async def call(
        self, method: str, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> Reply:
        if self.cookie:
            headers = {"cookie": self.cookie, **headers}
        reply = await asyncio.to_thread(
            _fetch, self.base, method, path, form, headers, self.context
        )
        if found := re.search(r'name="csrf" value="([^"]+)"', reply.body):
            self.csrf = found.group(1)
        return reply

    async def sign_in(self, key: str = BOOTSTRAP_API_KEY) -> Reply:
        reply = await self.call("POST", "/login", {"api_key": key})
        if cookie := reply.header("set-cookie"):
            self.cookie = cookie.split(";", 1)[0]
        await self.call("GET", "/")
        return reply


async def test_every_response_carries_the_security_headers(server: ConsoleServer) -> None:
    client = Client(server.url)
    replies = [await client.call("GET", "/login"), await client.call("GET", "/nowhere")]
    await client.sign_in()
    for path in ("/", "/keys", "/jobs", "/api/jobs", "/audit", "/static/console.js"):
        replies.append(await client.call("GET", path))
        assert replies[-1].status == 200, path
    for reply in replies:
        assert reply.header("content-security-policy") == CSP
        assert "frame-ancestors 'none'" in CSP and "'unsafe-inline'" not in CSP
        assert reply.header("referrer-policy") == "no-referrer"
        assert reply.header("x-content-type-options") == "nosniff"
        assert reply.header("cache-control") == "no-store"
    assert replies[-1].header("content-type").startswith("text/javascript")
    assert "<script>" not in "".join(r.body for r in replies)  # no inline script anywhere


async def test_the_session_cookie_is_httponly_strict_and_short(server: ConsoleServer) -> None:
    reply = await Client(server.url).sign_in()
    assert reply.status == 303
    cookie = reply.header("set-cookie")
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", f"Max-Age={SESSION_SECONDS}"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plaintext here; the TLS test checks the other way


async def test_a_cross_origin_post_is_refused_before_anything_happens(
    server: ConsoleServer,
) -> None:
    client = Client(server.url)
    await client.sign_in()
    before = len(await server.vaultd.store.list_api_keys())
    for headers in ({"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"}):
        reply = await client.call(
            "POST", "/api-keys", {"csrf": client.csrf, "name": "x", "permissions": "admin"},
            **headers,
        )  # fmt: skip
        assert reply.status == 403
    reply = await client.call("POST", "/login", {"api_key": BOOTSTRAP_API_KEY}, origin="null")
    assert reply.status == 403 and not reply.header("set-cookie")
    assert len(await server.vaultd.store.list_api_keys()) == before


async def test_a_revoked_key_ends_its_sessions_at_once(server: ConsoleServer) -> None:
    secret = new_secret()
    record = await add_api_key(server.vaultd.store, secret, permissions=("admin",), name="gone")
    client = Client(server.url)
    assert (await client.sign_in(secret)).status == 303
    assert (await client.call("GET", "/keys")).status == 200
    await server.vaultd.store.revoke_api_key(record.id, datetime.now(UTC))
    reply = await client.call("GET", "/keys")
    assert (reply.status, reply.header("location")) == (303, "/console/login")
    assert (await client.call("GET", "/api/jobs")).status == 403


async def test_console_actions_leave_the_events_their_rpcs_leave(server: ConsoleServer) -> None:
    admin = apb_grpc.AdminServiceStub(server.channel)
    client = Client(server.url)
    await client.sign_in()
    await client.call("GET", "/api-keys")
    made = await client.call(
        "POST", "/api-keys", {"csrf": client.csrf, "name": "via-console", "permissions": "keys:use"}
    )
    assert made.status == 200
    new_id = re.search(r"New API key <code>(key_\w+)</code>", made.body)
    assert new_id is not None
    await admin.CreateApiKey(apb.CreateApiKeyRequest(name="via-grpc", permissions=["keys:use"]))
    missing = await client.call(
        "POST", "/api-keys/revoke", {"csrf": client.csrf, "id": MISSING_KEY_ID}
    )
    assert missing.status == 404 and "no API key" in missing.body
    with pytest.raises(Exception):  # noqa: B017 - the status is checked by the admin tests
        await admin.RevokeApiKey(apb.RevokeApiKeyRequest(id=MISSING_KEY_ID))

    page = await server.vaultd.store.read_audit_events("default", AuditQuery(limit=100_000))
    created = [e for e in page.events if e.type == "vault.apikey.created" and e.actor_id]
    by_console = [e for e in created if e.method == "console:CreateApiKey"]
    by_grpc = [e for e in created if e.method.endswith("/CreateApiKey")]
    assert [(e.outcome, e.api_key_id) for e in by_console] == [("success", new_id.group(1))]
    assert [e.outcome for e in by_grpc] == ["success"] and by_grpc[0].api_key_id
    assert by_console[0].actor_id == by_grpc[0].actor_id  # the same admin key, either door
    revoked = [e for e in page.events if e.type == "vault.apikey.revoked"]
    assert sorted((e.method.split("/")[-1].split(":")[-1], e.outcome) for e in revoked) == [
        ("RevokeApiKey", "API_KEY_NOT_FOUND"),
        ("RevokeApiKey", "API_KEY_NOT_FOUND"),
    ]


async def test_over_tls_the_cookie_is_secure_and_host_bound(tmp_path: Path) -> None:
    files = make_pki().write(tmp_path / "pki")
    settings = settings_for(
        tmp_path,
        None,
        console_listen="127.0.0.1:0",
        tls_cert_file=files["server_cert"],
        tls_key_file=files["server_key"],
    )
    vaultd = await start(settings)
    try:
        assert vaultd.console is not None
        context = ssl.create_default_context(cafile=str(files["ca"]))
        client = Client(f"https://127.0.0.1:{vaultd.console.port}/console", context)
        reply = await client.sign_in()
        cookie = reply.header("set-cookie")
        assert cookie.startswith("__Host-vaultd_console=") and "; Secure" in cookie
        assert reply.header("strict-transport-security").startswith("max-age=")
        assert (await client.call("GET", "/keys")).status == 200
    finally:
        await vaultd.stop(None)


async def test_the_console_is_off_unless_asked_for(tmp_path: Path) -> None:
    vaultd = await start(settings_for(tmp_path, None))
    try:
        assert vaultd.console is None
    finally:
        await vaultd.stop(None)


def test_console_with_several_workers_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="console_listen serves from one process"):
        Settings(console_listen="127.0.0.1:0", workers=2)
    code = cli.main(
        ["serve", "--data-dir", str(tmp_path), "--console-listen", "127.0.0.1:0", "--workers", "2"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "console_listen serves from one process" in err
    assert "Traceback" not in err


def test_a_console_address_that_cannot_be_bound_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cli.main(["serve", "--data-dir", str(tmp_path), "--console-listen", "nonsense"])
    err = capsys.readouterr().err
    assert code == 2 and "console_listen 'nonsense' is not HOST:PORT" in err, err


def test_sessions_end_at_their_lifetime_and_at_sign_out() -> None:
    now = [1000.0]
    sessions = Sessions(clock=lambda: now[0])
    who = Signed("key_x", "default", Actor("key_x", "x"))
    token, session = sessions.open(who)
    assert sessions.find(token) == session and session.csrf != token
    now[0] += SESSION_SECONDS - 1
    assert sessions.find(token) == session  # use does not extend it
    now[0] += 1
    assert sessions.find(token) is None
    token, _ = sessions.open(who)
    sessions.close(token)
    assert sessions.find(token) is None
    assert sessions.find("") is None and sessions.find("made-up") is None


async def test_names_and_context_values_are_escaped(server: ConsoleServer) -> None:
    """Key context values are caller-chosen text; on a page they stay text."""
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    await server.seed(hostile, 1)
    client = Client(server.url)
    await client.sign_in()
    reply = await client.call("GET", "/keys")
    assert reply.status == 200
    assert hostile not in reply.body and "<script>alert" not in reply.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in reply.body
    # The audit log keeps context values as it stores them (keyed hashes): never raw here.
    reply = await client.call("GET", "/audit?type=vault.kek.created")
    assert reply.status == 200 and "<script>alert" not in reply.body
    confirm = await client.call(
        "GET",
        "/keys/confirm?" + urlencode({"action": "rotate", "item": f"organization_id={hostile}"}),
    )
    assert confirm.status == 200 and "<script>alert" not in confirm.body


async def test_vaultd_serve_starts_the_console_from_its_variable(tmp_path: Path) -> None:
    """As operators run it: `vaultd serve` with VAULTD_CONSOLE_LISTEN, stopped by SIGTERM."""
    port = free_port()
    env = clean_env() | {
        "VAULTD_CONSOLE_LISTEN": f"127.0.0.1:{port}",
        "VAULTD_BOOTSTRAP_API_KEY": BOOTSTRAP_API_KEY,
        "VAULTD_DATA_DIR": str(tmp_path / "data"),
    }
    process = ServeProcess(tmp_path, env)
    channel = await wait_serving(process.start())
    try:
        client = Client(f"http://127.0.0.1:{port}/console")
        assert (await client.call("GET", "/login")).status == 200
        assert (await client.sign_in()).status == 303
        assert (await client.call("GET", "/keys")).status == 200
    finally:
        await channel.close()
        process.stop()
    log = process.log_tail()
    assert "web console on http://127.0.0.1:" in log
    assert '"stopped"' in log  # SIGTERM stopped the console with the gRPC server, cleanly


async def test_verifying_a_missing_byok_key_is_audited_as_the_rpc_audits_it(
    server: ConsoleServer,
) -> None:
    missing_id = "byok_01J00000000000000000000000"
    client = Client(server.url)
    await client.sign_in()
    await client.call("GET", "/byok")
    refused = await client.call("POST", "/byok/keys/verify", {"id": missing_id})  # no CSRF token
    assert refused.status == 403
    reply = await client.call("POST", "/byok/keys/verify", {"csrf": client.csrf, "id": missing_id})
    assert reply.status == 404 and "no BYOK key" in reply.body
    with pytest.raises(Exception):  # noqa: B017 - the status is checked by the byok tests
        await server.admin.VerifyByokKey(apb.VerifyByokKeyRequest(id=missing_id))

    page = await server.vaultd.store.read_audit_events("default", AuditQuery(limit=100_000))
    verified = [
        e
        for e in page.events
        if e.type == "vault.byok_key.verification_completed" and missing_id in e.key_ids
    ]
    shapes = sorted(
        (e.method.split("/")[-1].split(":")[-1], e.outcome, e.key_ids, dict(e.key_context))
        for e in verified
    )
    assert shapes == 2 * [("VerifyByokKey", "BYOK_KEY_NOT_FOUND", (missing_id,), {})]
    assert sorted(e.method.startswith("console:") for e in verified) == [False, True]
