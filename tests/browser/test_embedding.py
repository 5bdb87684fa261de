"""The widget embedded in a page on another origin, against a server with auth on.

The embedding site (tests/browser/harness.py: EmbeddingSite) runs on its own port, so its origin
(http://127.0.0.1:PORT) differs from the server's; http://localhost:PORT is the same site under
an origin the server does not allow (Chromium treats them as different origins).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from infra.embedded_redis import free_port
from tests.browser.harness import (
    ARTIFACTS,
    EVENT_TIMEOUT_MS,
    EmbeddingSite,
    ServerProcess,
    mint_token,
    type_text,
    wait_event,
    wait_played,
    watch_console,
)

pytestmark = pytest.mark.browser

API_KEY = "embed-test-key"
T = EVENT_TIMEOUT_MS
WIDGET = "#microturn-widget"  # Playwright's CSS pierces the widget's (open) shadow root


@pytest.fixture(scope="module")
def embed_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def auth_server(embed_port: int) -> Iterator[ServerProcess]:
    """Auth on, one API key, one allowed origin (the embedding site). The echo engine: these tests
    are about embedding and auth, not the model, and the machine is shared."""
    args = ["--auth", "on", "--api-keys", API_KEY, "--allowed-origins"]
    args += [f"http://127.0.0.1:{embed_port}", "--model", "echo", "--agent-workers", "0"]
    server = ServerProcess(free_port(), args=args, log_path=ARTIFACTS / "embed-server.log")
    with server:
        yield server


@pytest.fixture
async def site(auth_server: ServerProcess, embed_port: int) -> AsyncIterator[EmbeddingSite]:
    async with EmbeddingSite(embed_port, auth_server.url, API_KEY) as site:
        yield site


def expected_refusals(errors: list[str]) -> list[str]:
    """Console errors other than Chromium's own note about the refused HTTP request."""
    return [e for e in errors if "Failed to load resource" not in e]


async def start_from_launcher(page: Any) -> None:
    await page.click(f"{WIDGET} .launcher")
    await page.wait_for_selector(f"{WIDGET} .panel", state="visible", timeout=T)
    await page.click(f"{WIDGET} .start")


async def widget_error(page: Any) -> str:
    error = page.locator(f"{WIDGET} .error")
    await error.wait_for(state="visible", timeout=T)
    return await error.text_content() or ""


async def test_widget_on_an_allowed_origin_starts_a_call(
    site: EmbeddingSite, chromium: Any, artifacts: Path
) -> None:
    page = await chromium.new_page()
    console_errors = watch_console(page)
    await page.goto(site.url())
    launcher = page.locator(f"{WIDGET} .launcher")
    await launcher.wait_for(state="visible", timeout=T)
    # The page's loud `button { background: hotpink !important }` does not reach the widget.
    background = await launcher.evaluate("(b) => getComputedStyle(b).backgroundColor")
    assert background == "rgb(20, 33, 61)", background
    spacing = await launcher.evaluate("(b) => getComputedStyle(b).letterSpacing")
    assert spacing == "normal", "inherited page styles (`* { letter-spacing }`) are cut off"
    site_button = await page.eval_on_selector(
        "#site-button", "(b) => getComputedStyle(b).backgroundColor"
    )
    assert site_button == "rgb(255, 105, 180)", "the widget's styles do not leak into the page"

    await page.evaluate(
        """() => { window.seen = [];
                   Microturn.on("session.created", (e) => window.seen.push(e));
                   Microturn.on("state", (s) => window.seen.push({ state: s })); }"""
    )
    await launcher.press("Enter")  # keyboard: the launcher opens the panel and focuses Start
    await page.wait_for_selector(f"{WIDGET} .panel", state="visible", timeout=T)
    assert await launcher.get_attribute("aria-expanded") == "true"
    await page.keyboard.press("Enter")

    created = await wait_event(page, "session.created", hook="Microturn")
    assert created["call_id"] and created["model"] == "echo"
    await page.wait_for_function("() => window.seen.some((e) => e.call_id)", timeout=T)
    assert len(site.minted) == 1
    assert site.minted[0]["origin"] == f"http://127.0.0.1:{site.port}", "bound to the site"
    live = page.locator(f"{WIDGET} .live")
    assert await live.text_content() == "Live: hearing you"  # camera off unless asked for
    assert await page.evaluate("Microturn.errors") == []

    # The model (echo) speaks back; the widget reports what it played, like the demo page.
    await wait_event(page, "output_audio.started", hook="Microturn")
    played = await wait_played(page, 200, hook="Microturn")
    assert played["played_ms"] >= 200
    await type_text(page, "hello from the widget", selector=f"{WIDGET} input")
    await page.wait_for_function(
        "() => Microturn.sent.some((e) => e.type === 'input_text')", timeout=T
    )
    await page.screenshot(path=str(artifacts / "widget-call.png"))

    await page.evaluate("Microturn.stop()")
    await page.wait_for_function("() => Microturn.state === 'closed'", timeout=15_000)
    assert await live.text_content() == "Not listening"
    # Escape closes the panel and gives focus back to the launcher.
    await page.focus(f"{WIDGET} .start")
    await page.keyboard.press("Escape")
    await page.wait_for_selector(f"{WIDGET} .panel", state="hidden", timeout=T)
    assert await launcher.get_attribute("aria-expanded") == "false"
    assert console_errors == [], console_errors


async def test_a_disallowed_origin_is_refused_with_a_clear_message(
    site: EmbeddingSite, chromium: Any, artifacts: Path
) -> None:
    page = await chromium.new_page()
    console_errors = watch_console(page)
    await page.set_viewport_size({"width": 375, "height": 740})  # and the panel fits a phone
    await page.goto(site.url(host="localhost"))  # same site, an origin the server does not allow
    await start_from_launcher(page)
    message = await widget_error(page)
    assert "not allowed to use this Microturn server" in message, message
    assert await page.evaluate("Microturn.lastError.code") == "origin_not_allowed"
    assert await page.evaluate("Microturn.state") == "failed"
    assert await page.evaluate("Microturn.callId") is None
    box = await page.locator(f"{WIDGET} .panel").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box
    await page.screenshot(path=str(artifacts / "widget-refused-origin-phone.png"))
    assert expected_refusals(console_errors) == [], console_errors


async def test_an_expired_token_is_refused_with_a_clear_message(
    site: EmbeddingSite, chromium: Any
) -> None:
    page = await chromium.new_page()
    console_errors = watch_console(page)
    await page.goto(site.url(token="expired"))  # the backend mints ttl_s 1, answers once expired
    await start_from_launcher(page)
    message = await widget_error(page)
    assert "expired" in message and "try again" in message, message
    assert await page.evaluate("Microturn.lastError.code") == "token_expired"
    assert await page.evaluate("Microturn.callId") is None
    assert expected_refusals(console_errors) == [], console_errors


async def test_a_reused_token_is_refused_with_a_clear_message(
    site: EmbeddingSite, chromium: Any
) -> None:
    page = await chromium.new_page()
    console_errors = watch_console(page)
    await page.goto(site.url(token="reuse"))  # the backend hands out the same token twice
    await start_from_launcher(page)
    await wait_event(page, "session.created", hook="Microturn")
    await page.evaluate("Microturn.stop()")
    await page.wait_for_function("() => Microturn.state === 'closed'", timeout=15_000)

    await page.click(f"{WIDGET} .start")
    message = await widget_error(page)
    assert "already used" in message, message
    assert await page.evaluate("Microturn.lastError.code") == "token_used"
    assert len(site.minted) == 1
    assert expected_refusals(console_errors) == [], console_errors


async def test_http_rules_for_embedding(auth_server: ServerProcess, embed_port: int) -> None:
    """The headers and refusals the widget relies on, without a browser."""
    allowed = f"http://127.0.0.1:{embed_port}"
    evil = "http://evil.example"
    url = auth_server.url
    async with aiohttp.ClientSession() as http:
        # the widget and its modules load on any page
        for path in ("/widget.js", "/static/client.js", "/static/widget.css"):
            async with http.get(url + path, headers={"Origin": evil}) as resp:
                assert resp.status == 200, path
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
        # the demo page: strict CSP; only this server and allowed origins may frame it
        async with http.get(url + "/") as resp:
            csp = resp.headers["Content-Security-Policy"]
            assert f"frame-ancestors 'self' {allowed}" in csp and "script-src 'self'" in csp
            assert f'camera=(self "{allowed}")' in resp.headers["Permissions-Policy"]
        # preflights: allowed origins cached, others answered so the refusal can be read
        preflight = {"Access-Control-Request-Method": "POST"}
        for origin, max_age in ((allowed, "600"), (evil, "0")):
            async with http.options(
                url + "/v1/calls", headers={"Origin": origin, **preflight}
            ) as resp:
                assert resp.status == 204
                assert resp.headers["Access-Control-Allow-Origin"] == origin
                assert resp.headers["Access-Control-Max-Age"] == max_age
        sdp = {"Content-Type": "application/sdp"}
        async with http.post(
            url + "/v1/calls", data="v=0\r\n", headers={"Origin": evil, **sdp}
        ) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "origin_not_allowed"
            assert r.headers["Access-Control-Allow-Origin"] == evil, "the refusal is readable"
        # a token bound to another origin
        other = await mint_token(url, API_KEY, 60, origin="http://elsewhere.example")
        headers = {"Origin": allowed, "Authorization": f"Bearer {other['token']}", **sdp}
        async with http.post(url + "/v1/calls", data="v=0\r\n", headers=headers) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "origin_mismatch"
        # with auth on, no token, no call
        async with http.post(url + "/v1/calls", data="v=0\r\n", headers=sdp) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
        # browsers on other origins cannot mint tokens even with a key
        key = {"Authorization": f"Bearer {API_KEY}"}
        async with http.post(url + "/v1/tokens", json={}, headers={"Origin": evil, **key}) as r:
            assert r.status == 403
