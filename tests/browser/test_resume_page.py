"""Calls that survive a reload: the demo page in headless Chromium keeps its call's resume token
when it goes away, and the reloaded page takes the same call up again (same call id, same engine
session, the background task started before the reload finishing into it)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.browser.harness import (
    EVENT_TIMEOUT_MS,
    ServerProcess,
    type_text,
    wait_event,
    watch_console,
)

pytestmark = pytest.mark.browser


async def call_status(served: ServerProcess, call_id: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{served.url}/v1/calls/{call_id}") as resp:
            return resp.status, await resp.json()


async def test_a_reloaded_page_resumes_its_call(served: ServerProcess, chromium: Any) -> None:
    page = await chromium.new_page()
    errors = watch_console(page)
    await page.goto(served.url)
    await page.click("#start")
    created = await wait_event(page, "session.created")
    assert created["resume_token"] and created["resume_window_s"] > 0
    await type_text(page, "/ask set a timer for 4 seconds")
    queued = await wait_event(page, "agent.task", {"status": "queued"})

    await page.reload()  # the page goes away mid-call and comes back
    again = await wait_event(page, "session.created", {"resumed": True})
    assert again["call_id"] == created["call_id"]
    done = await wait_event(page, "agent.task", {"task_id": queued["task_id"], "status": "done"})
    assert done["text"]
    status, body = await call_status(served, created["call_id"])
    assert status == 200 and body["state"] == "active" and body["resumes"] == 1
    await page.wait_for_function(
        "() => window.microturn.state === 'connected'", timeout=EVENT_TIMEOUT_MS
    )

    await page.click("#stop")  # a hang-up still ends it at once, and nothing is kept for later
    await page.wait_for_function(
        "() => window.microturn.state === 'closed'", timeout=EVENT_TIMEOUT_MS
    )
    status, _ = await call_status(served, created["call_id"])
    assert status == 404
    assert await page.evaluate("Object.keys(sessionStorage).length") == 0
    assert not [e for e in errors if "resume" in e.lower()], errors
