"""The demo page in headless Chromium with a fake camera and mic, against `microturn serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import (
    ServerProcess,
    type_text,
    wait_event,
    wait_inbound_audio_energy,
    wait_model_audio,
)

pytestmark = pytest.mark.browser


async def test_page_connects_and_plays_the_models_audio(
    served: ServerProcess, chromium: Any, artifacts: Path
) -> None:
    page = await chromium.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    await page.goto(served.url)
    await page.click("#start")

    created = await wait_event(page, "session.created")
    assert created["microturn_ms"] == 200 and created["call_id"]

    await type_text(page, "hello model")
    peak = await wait_model_audio(page)
    assert peak > 0.005
    assert await wait_inbound_audio_energy(page) > 0, "the <audio> element played the remote track"
    assert await page.text_content("#sense-mic") == "mic on"
    assert await page.text_content("#sense-camera") == "camera on"
    errors = await page.evaluate("window.microturn.errors")
    assert errors == [], errors
    await page.screenshot(path=str(artifacts / "demo-page-call.png"), full_page=True)

    await page.click("#stop")
    await page.wait_for_function("window.microturn.state === 'closed'", timeout=15_000)
    assert console_errors == [], console_errors
