"""The console in a real browser: headless Chromium, Playwright, a live vaultd (conftest.py).

One walk through every page as an operator would (sign in, check the overview against the
store, rotate a KEK, rewrap it and watch the job finish without a reload, filter the audit
log to one object and export it, create and revoke an API key, sign out), then what must be
refused: a key without the admin permission, a cross-site form post, a form without the CSRF
token. Every page is checked for Content-Security-Policy violations, and a control test proves
the check sees one. Screenshots of each page at 1280 and 390 pixels wide are written on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from playwright.async_api import expect

from testkit.auth import BOOTSTRAP_API_KEY
from testkit.console import READ_ONLY_KEY, WIDTHS, ConsoleServer
from testkit.running import settings_for
from vaultd.core import audit
from vaultd.core.apikeys import secret_hash
from vaultd.core.audit import bounded_context
from vaultd.server import start
from vaultd.storage.records import AuditQuery, RewrapState
from vaultd.v1 import admin_service_pb2 as apb
from vaultd.v1 import object_service_pb2 as pb

ENV = "default"
# The console registers this listener before any page script runs (CDP, not subject to CSP).
CSP_PROBE = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
"""


class Browsing:
    """A browser context with a CSP watch: every violation, from events or the console."""

    def __init__(self, context: Any, page: Any) -> None:
        self.context = context
        self.page = page
        self.violations: list[str] = []
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(message.text)

    async def check_csp(self) -> None:
        """Collect this document's violation events (call before leaving a page)."""
        self.violations += await self.page.evaluate("window.__csp || []")

    async def goto(self, url: str) -> Any:
        await self.check_csp()
        return await self.page.goto(url)


async def browse(browser: Any, width: str = "desktop", **options: Any) -> Browsing:
    w, h = WIDTHS[width]
    context = await browser.new_context(viewport={"width": w, "height": h}, **options)
    await context.add_init_script(CSP_PROBE)
    return Browsing(context, await context.new_page())


@pytest.fixture
async def desk(browser: Any) -> AsyncIterator[Browsing]:
    browsing = await browse(browser)
    yield browsing
    await browsing.context.close()


async def sign_in(b: Browsing, server: ConsoleServer, key: str = BOOTSTRAP_API_KEY) -> Any:
    await b.goto(server.url + "/")
    assert b.page.url == server.url + "/login"  # not signed in: sent to the sign-in page
    await b.page.fill("#api_key", key)
    async with b.page.expect_navigation() as navigation:
        await b.page.click("button[type=submit]")
    return await navigation.value


def row(b: Browsing, attribute: str, value: str) -> Any:
    return b.page.locator(f'tr[{attribute}="{value}"]')


async def test_an_operator_walks_through_every_page(
    server: ConsoleServer, desk: Browsing, shots: Path, browser: Any
) -> None:
    b = desk
    org_a, org_b = "org_console_a", "org_console_b"
    ids_a = await server.seed(org_a, 12)
    await server.seed(org_b, 3)
    watched = ids_a[0]
    await server.objects.GetObject(pb.GetObjectRequest(id=watched))

    # Sign in, and the overview says what the store says.
    await sign_in(b, server)
    assert b.page.url == server.url + "/"
    store = server.vaultd.store
    live = [k for k in await store.list_keks(ENV) if k.shredded_at is None]
    assert await b.page.text_content("#object-count") == str(await store.count_objects(ENV))
    assert await b.page.text_content("#kek-count") == str(len(live)) == "2"
    assert await b.page.text_content('[data-kek-provider="internal"]') == "2"
    assert int(await b.page.text_content("#calls-minute") or "0") >= 16  # the seeding calls
    cookies = await b.context.cookies()
    (session,) = [c for c in cookies if c["name"] == "vaultd_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert await b.page.evaluate("window.localStorage.length + window.sessionStorage.length") == 0

    # Keys: rotate org A's KEK through the confirmation step; its version goes up.
    item = f"organization_id={org_a}"
    await b.goto(server.url + "/keys")
    assert await row(b, "data-item", item).locator(".version").text_content() == "1"
    await row(b, "data-item", item).get_by_role("link", name="Rotate…").click()
    await b.page.wait_for_url("**/keys/confirm?action=rotate*")
    await b.page.get_by_role("button", name=f"Rotate {item}").click()
    await b.page.wait_for_url(server.url + "/keys/rotate")
    assert await row(b, "data-item", item).locator(".version").text_content() == "2"
    (kek,) = [k for k in await store.list_keks(ENV) if k.item_value == org_a]
    assert len(kek.versions) == 2
    rotated = await events(server, "vault.kek.rotated")
    # Context values are stored as the audit log stores them (keyed hashes when it has keys).
    stored_item = stored_context(server, {"organization_id": org_a})
    assert [(e.method, e.actor_name, e.key_ids, dict(e.key_context)) for e in rotated] == [
        ("console:RotateKeks", "bootstrap", (kek.kek_id,), stored_item)
    ]
    # The new version's vault.kek.created names the console call that made it, as for an RPC.
    v2 = [e for e in await events(server, "vault.kek.created") if e.key_ids[0].endswith(".v2")]
    assert [(e.method, e.actor_name, dict(e.key_context)) for e in v2] == [
        ("console:RotateKeks", "bootstrap", stored_item)
    ]

    # Shred is never one click: the confirmation wants the item typed, and a wrong one is refused.
    await b.goto(server.url + f"/keys/confirm?action=shred&item={item}")
    await b.page.fill("#typed", "organization_id=wrong")
    await b.page.get_by_role("button", name=f"Shred {item}").click()
    await b.page.wait_for_url("**/keys/shred")
    assert "does not match" in (await b.page.text_content("[role=alert]") or "")
    assert all(k.shredded_at is None for k in await store.list_keks(ENV))

    # Rewrap org A's KEK: the Jobs page follows the job to done without being reloaded.
    await b.goto(server.url + f"/keys/confirm?action=rewrap&item={item}")
    await b.page.get_by_role("button", name=f"Start a rewrap {item}").click()
    await b.page.wait_for_url("**/console/jobs*")
    await b.page.evaluate("window.__same_document = true")
    (job,) = await store.list_rewrap_jobs()
    state = row(b, "data-job", job.id).locator(".state")
    # The progress bar moves as the job goes, fed by console.js (no navigation in between).
    await expect(row(b, "data-job", job.id).locator(".count")).not_to_have_text(
        re.compile(r"^0 / "), timeout=60_000
    )
    await b.page.screenshot(path=shots / "jobs-running-desktop.png")
    await state.filter(has_text="done").wait_for(timeout=60_000)
    assert await b.page.evaluate("window.__same_document") is True  # no reload happened
    (job,) = await store.list_rewrap_jobs()
    assert job.state is RewrapState.DONE and job.objects_done == job.objects_total
    count = await row(b, "data-job", job.id).locator(".count").text_content()
    assert count == f"{job.objects_done} / {job.objects_total}"
    assert job.versions_rewrapped == len(ids_a)

    # Audit: filtered to one object, exactly that object's events, in the page and the export.
    await b.goto(server.url + "/audit")
    await b.page.fill("#f-object", watched)
    await b.page.get_by_role("button", name="Filter").click()
    await b.page.wait_for_url("**/audit?*")
    cells = await b.page.locator("td.object small").all_text_contents()
    expected = [e for e in await all_events(server) if e.object_id == watched]
    assert [e.type for e in expected] == ["vault.data.created", "vault.data.read"]
    assert cells == [watched] * len(expected)
    export = await b.context.request.get(f"{server.url}/audit.jsonl?object={watched}")
    assert export.status == 200
    lines = [json.loads(line) for line in (await export.text()).splitlines()]
    assert [(x["id"], x["object_id"]) for x in lines] == [(e.id, watched) for e in expected]

    # API keys: create one (its secret shown once, and it works), then revoke it.
    await b.goto(server.url + "/api-keys")
    await b.page.fill("#name", "ci-robot")
    await b.page.get_by_role("button", name="Create").click()
    await b.page.wait_for_url(server.url + "/api-keys")
    secret = (await b.page.text_content("#new-secret") or "").strip()
    assert secret.startswith("sk_")
    made = await store.find_api_key(secret_hash(secret))
    assert made is not None and made.name == "ci-robot" and made.revoked_at is None
    assert "admin" not in made.permissions
    await b.page.screenshot(
        path=shots / "api-keys-created-desktop.png", mask=[b.page.locator("#new-secret")]
    )
    await row(b, "data-key", made.id).get_by_role("button", name="Revoke ci-robot").click()
    await b.page.wait_for_url(server.url + "/api-keys/revoke")
    assert await row(b, "data-key", made.id).locator(".revoked").text_content() != "live"
    assert (await store.get_api_key(made.id)).revoked_at is not None  # type: ignore[union-attr]
    await b.goto(server.url + "/api-keys")
    assert secret not in await b.page.content()  # shown once, never again

    # BYOK: verifying every provider key shows its result.
    await b.goto(server.url + "/byok")
    await b.page.get_by_role("button", name="Verify all rule keys now").click()
    await b.page.wait_for_url(server.url + "/byok/verify")
    assert await b.page.locator("td.ok").count() == 1

    # Run-time BYOK keys, added over gRPC against the OpenBao stand-in (each verified on the
    # way in), are listed beside the rules with their last verification.
    suffix = uuid.uuid4().hex[:8]
    good_uri = server.kms.create_key(f"console-good-{suffix}")
    bad_uri = server.kms.create_key(f"console-bad-{suffix}")
    good = await add_byok_key(server, "org_byok_good*", good_uri)
    bad = await add_byok_key(server, "org_byok_bad", bad_uri)
    await b.goto(server.url + "/byok")
    good_row, bad_row = row(b, "data-byok-key", good.id), row(b, "data-byok-key", bad.id)
    assert good_uri in (await good_row.text_content() or "")
    assert "organization_id=org_byok_good*" in (await good_row.text_content() or "")
    assert await good_row.locator("td.ok").text_content() == "ok"
    assert await bad_row.locator("td.ok").text_content() == "ok"
    # The KMS stops letting vaultd use one key: "Verify now" on the page records and shows the
    # failure, as VerifyByokKey would (restored at the end, after the screenshots show it).
    server.kms.revoke(bad_uri)
    await bad_row.get_by_role("button", name=f"Verify {bad.id} now").click()
    await b.page.wait_for_url(server.url + "/byok/keys/verify")
    notice = await b.page.text_content("[role=status]") or ""
    assert notice.startswith(f"Verified {bad.id}: failed"), notice
    failed_text = await bad_row.locator("td.failed").text_content() or ""
    assert failed_text.startswith("failed: ") and len(failed_text) > len("failed: ")
    stored = await store.get_byok_key(ENV, bad.id)
    assert stored is not None and stored.verified is False and stored.verified_at is not None
    assert stored.verification_error and stored.verification_error in failed_text
    assert await bad_row.locator(".checked").text_content() != ""
    over_grpc = await server.admin.GetByokKey(apb.GetByokKeyRequest(id=bad.id))
    assert not over_grpc.byok_key.verified and over_grpc.byok_key.verification_error
    assert server.kms.provider_settings["token"] not in await b.page.content()

    # Verifying the working key from the page records an event shaped exactly like the one
    # VerifyByokKey records over gRPC; only `method` tells the two front doors apart.
    await good_row.get_by_role("button", name=f"Verify {good.id} now").click()
    await b.page.wait_for_url(server.url + "/byok/keys/verify")
    assert await b.page.text_content("[role=status]") == f"Verified {good.id}: ok"
    assert await good_row.locator("td.ok").text_content() == "ok"
    await server.admin.VerifyByokKey(apb.VerifyByokKeyRequest(id=good.id))
    verified = [e for e in await events(server, audit.BYOK_KEY_VERIFIED) if good.id in e.key_ids]
    by_console, by_grpc = verified[-2], verified[-1]
    assert by_console.method == "console:VerifyByokKey"
    assert by_grpc.method.endswith("AdminService/VerifyByokKey"), by_grpc.method
    good_item = stored_context(server, {"organization_id": "org_byok_good*"})
    assert (
        byok_event(by_console)
        == byok_event(by_grpc)
        == (audit.SUCCESS, "bootstrap", (good.id,), good_item)
    )
    (by_page,) = [
        e
        for e in await events(server, audit.BYOK_KEY_VERIFIED)
        if bad.id in e.key_ids and e.method == "console:VerifyByokKey"
    ]
    assert by_page.outcome == audit.SUCCESS  # a failed check is a result, as over gRPC

    # A key id the environment lacks is a clear 404 (the form's id swapped in the page).
    await b.page.evaluate("document.querySelector('input[name=id]').value = 'byok_missing'")
    async with b.page.expect_navigation() as lost:
        await b.page.locator("tr[data-byok-key] button").first.click()
    assert (await lost.value).status == 404
    assert "no BYOK key" in (await b.page.text_content("main") or "")

    # The overview counts the run-time keys and the failing ones.
    await b.goto(server.url + "/")
    assert await b.page.text_content("#byok-keys") == "2"
    assert await b.page.text_content("#byok-failed") == "1"

    # Some traffic, errors included, sampled so the overview's chart has a shape.
    rates = server.vaultd.console.rates  # type: ignore[union-attr]
    assert rates is not None
    for burst in range(4):
        for n in range(3 + 2 * burst):
            await server.objects.DescribeObject(pb.DescribeObjectRequest(id=ids_a[n]))
        with contextlib.suppress(grpc.aio.AioRpcError):
            await server.objects.GetObject(pb.GetObjectRequest(id="obj_missing"))
        await asyncio.sleep(0.5)
        rates.sample()

    # Each page at both widths; none renders a stored value.
    state_file = await b.context.storage_state()
    for width in WIDTHS:
        signed_out = await browse(browser, width)
        await signed_out.goto(server.url + "/login")
        await signed_out.page.screenshot(path=shots / f"login-{width}.png")
        await signed_out.context.close()
        shot = await browse(browser, width, storage_state=state_file)
        for name, path in [*PAGES, ("audit", f"/audit?object={watched}")]:
            await shot.goto(server.url + path)
            assert b"not shown by the console" not in (await shot.page.content()).encode()
            await shot.page.screenshot(path=shots / f"{name}-{width}.png", full_page=True)
        await shot.check_csp()
        assert shot.violations == []
        await shot.context.close()

    # Sign out: the session ends, and its cookie is worth nothing afterwards.
    await b.goto(server.url + "/")
    await b.page.get_by_role("button", name="Sign out").click()
    await b.page.wait_for_url(server.url + "/login")
    await b.context.add_cookies([session])
    await b.goto(server.url + "/keys")
    assert b.page.url == server.url + "/login"

    await b.check_csp()
    assert b.violations == []
    server.kms.restore(bad_uri)


PAGES = [
    ("overview", "/"),
    ("keys", "/keys"),
    ("rotate-confirm", "/keys/confirm?action=rotate&item=organization_id=org_console_b"),
    ("shred-confirm", "/keys/confirm?action=shred&item=organization_id=org_console_b"),
    ("byok", "/byok"),
    ("jobs", "/jobs"),
    ("api-keys", "/api-keys"),
]


async def add_byok_key(server: ConsoleServer, pattern: str, key_uri: str) -> Any:
    """A run-time BYOK key for organization_id=pattern, added over gRPC as an operator would."""
    reply = await server.admin.CreateByokKey(
        apb.CreateByokKeyRequest(match={"organization_id": pattern}, key_uri=key_uri)
    )
    return reply.byok_key


def byok_event(event: Any) -> tuple[object, ...]:
    """What a BYOK key verification event says, but for the front door it came through."""
    return (event.outcome, event.actor_name, event.key_ids, dict(event.key_context))


def stored_context(server: ConsoleServer, context: dict[str, str]) -> dict[str, str]:
    keys = server.vaultd.audit_log.keys  # type: ignore[union-attr]
    return bounded_context(context, keys.field_hash if keys else None)


async def all_events(server: ConsoleServer) -> list[Any]:
    page = await server.vaultd.store.read_audit_events(ENV, AuditQuery(limit=100_000))
    return list(page.events)


async def events(server: ConsoleServer, kind: str) -> list[Any]:
    return [e for e in await all_events(server) if e.type == kind]


async def test_a_key_without_admin_permission_is_refused(
    server: ConsoleServer, desk: Browsing, shots: Path
) -> None:
    response = await sign_in(desk, server, READ_ONLY_KEY)
    assert response.status == 403
    assert "no admin permission" in (await desk.page.text_content("[role=alert]") or "")
    assert await desk.context.cookies() == []
    await desk.page.screenshot(path=shots / "login-refused-desktop.png")
    response = await sign_in(desk, server, "sk_" + "x" * 43)
    assert response.status == 401
    assert await desk.context.cookies() == []
    await desk.check_csp()
    assert desk.violations == []


async def test_a_cross_site_form_post_is_refused(server: ConsoleServer, desk: Browsing) -> None:
    await sign_in(desk, server)
    before = len(await server.vaultd.store.list_api_keys())
    # A page of another site, with a form aimed at the console, as an attacker would serve it.
    attacker = "http://attacker.example/"
    form = (
        f'<form method="post" action="{server.url}/api-keys">'
        '<input name="name" value="planted"><input name="permissions" value="admin">'
        '<button id="go">Win a prize</button></form>'
    )

    async def serve_attacker(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/html", body=form)

    await desk.page.route(attacker, serve_attacker)
    await desk.page.goto(attacker)
    async with desk.page.expect_navigation() as navigation:
        await desk.page.click("#go")
    assert (await navigation.value).status == 403
    assert len(await server.vaultd.store.list_api_keys()) == before

    # Same origin, signed in, but without the form's CSRF token: refused too.
    reply = await desk.context.request.post(
        f"{server.url}/api-keys", form={"name": "planted", "permissions": "admin"}
    )
    assert reply.status == 403
    assert len(await server.vaultd.store.list_api_keys()) == before


async def test_the_csp_watch_sees_a_violation(server: ConsoleServer, desk: Browsing) -> None:
    """Control for the CSP checks above: an inline script on a console page is blocked and
    reported, so an empty list there means no violation, not a blind watch."""
    await desk.goto(server.url + "/login")
    await desk.page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__ran = 1'; document.body.append(s); }"
    )
    await desk.page.wait_for_timeout(200)
    await desk.check_csp()
    assert await desk.page.evaluate("window.__ran === undefined")
    assert any("script-src" in v for v in desk.violations), desk.violations


async def test_keyboard_only_with_empty_states(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A fresh vaultd, driven by the keyboard alone: sign in, reach a page by Tab and Enter;
    each page says plainly that there is nothing yet."""
    settings = settings_for(
        tmp_path_factory.mktemp("console-empty"), None, console_listen="127.0.0.1:0"
    )
    vaultd = await start(settings)
    b = await browse(browser)
    try:
        assert vaultd.console is not None
        url = f"http://127.0.0.1:{vaultd.console.port}/console"
        await b.goto(url + "/login")
        await b.page.keyboard.press("Tab")  # the first stop is the key field
        assert await b.page.evaluate("document.activeElement.id") == "api_key"
        await b.page.keyboard.type(BOOTSTRAP_API_KEY)
        async with b.page.expect_navigation():
            await b.page.keyboard.press("Enter")
        assert b.page.url == url + "/"
        for _ in range(10):  # past the skip link and the first links, to the Jobs link
            await b.page.keyboard.press("Tab")
            if await b.page.evaluate("document.activeElement.textContent") == "Jobs":
                break
        async with b.page.expect_navigation():
            await b.page.keyboard.press("Enter")
        assert b.page.url == url + "/jobs"
        assert "No rewrap job yet" in (await b.page.text_content(".empty") or "")
        await b.goto(url + "/keys")
        assert "No KEK yet" in (await b.page.text_content(".empty") or "")
        await b.goto(url + "/audit?type=vault.kek.shredded")
        assert "No event matches" in (await b.page.text_content(".empty") or "")
        await b.check_csp()
        assert b.violations == []
    finally:
        await b.context.close()
        await vaultd.stop(None)
