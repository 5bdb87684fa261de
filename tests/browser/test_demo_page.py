"""The demo page in headless Chromium with a fake camera and mic, against `microturn serve`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser.harness import (
    EVENT_TIMEOUT_MS,
    ServerProcess,
    model_audio_onset_ms,
    played_out_ms,
    type_text,
    wait_event,
    wait_inbound_audio_energy,
    wait_model_audio,
    wait_played,
    watch_console,
)

pytestmark = pytest.mark.browser

T = EVENT_TIMEOUT_MS


async def test_full_page_flow(served: ServerProcess, chromium: Any, artifacts: Path) -> None:
    page = await chromium.new_page()
    console_errors = watch_console(page)
    await page.goto(served.url)
    assert await page.text_content("#privacy-text") == "Not listening"
    assert await page.get_attribute("#stop", "disabled") is not None

    await page.click("#start")
    created = await wait_event(page, "session.created")
    assert created["microturn_ms"] == 200 and created["call_id"]

    # What the model perceives is on screen, in words and in the tab title.
    await page.wait_for_function("() => window.microturn.senses.mic === 'on'", timeout=T)
    assert "hears you" in (await page.text_content("#sense-mic") or "")
    assert "sees you" in (await page.text_content("#sense-camera") or "")
    assert await page.text_content("#privacy-text") == "Live: hearing and seeing you"
    assert (await page.title()).startswith("● Live")
    assert await page.is_hidden("#preview-off")
    # the fake mic's speech moves the level meter
    await page.wait_for_function("() => window.microturn.maxLocalLevel > 0.01", timeout=T)

    # The model's audio plays in the page, and the page tells the server what it played.
    assert await wait_model_audio(page) > 0.005
    onset = await model_audio_onset_ms(page)
    assert 0 < onset < T, onset  # Start pressed -> the model audible in the page
    assert await wait_inbound_audio_energy(page) > 0, "the <audio> element played the remote track"
    started = await wait_event(page, "output_audio.started")
    first = await wait_played(page, 300)
    assert first["microturn"] == started["microturn"]
    later = await wait_played(page, first["played_ms"] + 400)
    assert later["microturn"] == started["microturn"]
    assert await played_out_ms(page) >= later["played_ms"], "reports never exceed the playout"
    assert await page.get_attribute("#speaking", "data-speaking") == "true"

    # Typed text joins the model's input and shows in the conversation.
    await type_text(page, "hello model")
    await page.wait_for_selector(".turn.user >> text=hello model", timeout=T)
    sent = await page.evaluate("window.microturn.sent.filter((e) => e.type === 'input_text')")
    assert sent == [{"type": "input_text", "text": "hello model"}]

    # Background tasks become cards that fill in: a calculation, then a streaming timer.
    await type_text(page, "/ask what is 12*7")
    done = await wait_event(page, "agent.task", {"status": "done"})
    assert done["data"]["value"] == 84 and "84" in done["text"]
    card = page.locator(f'.mt-card[data-task-id="{done["task_id"]}"]')
    assert await card.locator(".mt-value").text_content() == "84"
    assert await card.locator(".mt-card-title").text_content() == "what is 12*7"
    assert await card.get_attribute("data-status") == "done"

    await type_text(page, "/ask set a timer for 5 seconds")
    partial = await wait_event(page, "agent.task", {"status": "partial"})
    assert partial["data"]["tool"] == "set_timer" and partial["data"]["timer_s"] == 5
    timer = page.locator(f'.mt-card[data-task-id="{partial["task_id"]}"]')
    face = await timer.locator(".mt-timer-face").text_content()
    assert face and re.fullmatch(r"0:0[0-5]", face), face

    # Connection quality from getStats.
    await page.wait_for_function(
        "() => window.microturn.quality && Number.isFinite(window.microturn.quality.rttMs)",
        timeout=T,
    )
    assert re.fullmatch(r"\d+ ms", await page.text_content("#q-rtt") or "")
    assert re.fullmatch(r"[\d.]+ %", await page.text_content("#q-loss") or "")
    # the countdown ticks in the page between the agent's progress events
    await page.wait_for_function(
        "(id) => /^0:0[0-3]$/.test(document.querySelector(`.mt-card[data-task-id='${id}'] "
        ".mt-timer-face`).textContent)",
        arg=partial["task_id"],
        timeout=T,
    )
    await page.screenshot(path=str(artifacts / "demo-page-call.png"), full_page=True)

    await wait_event(page, "agent.task", {"task_id": partial["task_id"], "status": "done"})
    await page.wait_for_function(
        "(id) => document.querySelector(`.mt-card[data-task-id='${id}'] .mt-timer-face`)"
        '.textContent.includes("time\'s up")',
        arg=partial["task_id"],
        timeout=T,
    )

    # Mic and camera off release the devices; the indicators say so.
    await page.click("#toggle-mic")
    await page.wait_for_function("() => window.microturn.senses.mic === 'off'", timeout=T)
    assert await page.get_attribute("#toggle-mic", "aria-pressed") == "false"
    assert "hears silence" in (await page.text_content("#sense-mic") or "")
    audio_sender = await page.evaluate(
        """() => { const s = window.microturn.pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
                   return s ? s.track.label : null; }"""
    )
    assert audio_sender is not None and "Fake" not in audio_sender, audio_sender
    await page.click("#toggle-camera")
    await page.wait_for_function("() => window.microturn.senses.camera === 'off'", timeout=T)
    assert await page.is_visible("#preview-off")
    assert await page.text_content("#privacy-text") == "In a call: mic and camera off"
    await page.click("#toggle-camera")
    await page.wait_for_function("() => window.microturn.senses.camera === 'on'", timeout=T)

    errors = await page.evaluate("window.microturn.errors")
    assert errors == [], errors

    await page.click("#stop")
    await page.wait_for_function("() => window.microturn.state === 'closed'", timeout=15_000)
    assert await page.text_content("#privacy-text") == "Not listening"
    assert not (await page.title()).startswith("●")
    assert console_errors == [], console_errors


async def test_phone_width_and_keyboard_only(
    served: ServerProcess, chromium: Any, artifacts: Path
) -> None:
    page = await chromium.new_page()
    console_errors = watch_console(page)
    await page.set_viewport_size({"width": 375, "height": 812})
    await page.goto(served.url)
    no_overflow = "document.documentElement.scrollWidth <= window.innerWidth"
    assert await page.evaluate(no_overflow)

    # Focus order follows the page: start, the senses, the devices.
    order = []
    for _ in range(5):
        await page.keyboard.press("Tab")
        order.append(await page.evaluate("document.activeElement.id"))
    assert order == ["start", "toggle-mic", "toggle-camera", "mic-select", "camera-select"]

    # Start, type and hang up with the keyboard alone.
    await page.focus("#start")
    await page.keyboard.press("Enter")
    await wait_event(page, "session.created")
    await page.wait_for_selector("#text:not([disabled])", timeout=T)
    for _ in range(20):
        if await page.evaluate("document.activeElement.id") == "text":
            break
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "text"
    await page.keyboard.type("hi from a phone")
    await page.keyboard.press("Enter")
    await page.wait_for_selector(".turn.user >> text=hi from a phone", timeout=T)
    assert await page.evaluate(no_overflow), "no sideways scrolling at 375 px"
    await page.screenshot(path=str(artifacts / "demo-page-phone.png"), full_page=True)

    for _ in range(20):
        if await page.evaluate("document.activeElement.id") == "stop":
            break
        await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_function("() => window.microturn.state === 'closed'", timeout=15_000)
    assert await page.evaluate("document.activeElement.id") == "start"
    assert console_errors == [], console_errors


DEGRADE_STATS = """
(() => {
  // A network too poor for realtime: 800 ms round trip and 90 ms jitter, as getStats reports them.
  const real = RTCPeerConnection.prototype.getStats;
  RTCPeerConnection.prototype.getStats = async function (...args) {
    const report = await real.apply(this, args);
    const out = new Map();
    report.forEach((s, id) => {
      if (s.type === "candidate-pair") s = { ...s, currentRoundTripTime: 0.8 };
      if (s.type === "inbound-rtp" && s.kind === "audio") s = { ...s, jitter: 0.09 };
      out.set(id, s);
    });
    return out;
  };
})();
"""


async def test_poor_network_shows_a_plain_warning(served: ServerProcess, chromium: Any) -> None:
    page = await chromium.new_page()
    console_errors = watch_console(page)
    await page.add_init_script(DEGRADE_STATS)
    await page.goto(served.url)

    verdicts = await page.evaluate(
        """async () => {
          const { assessQuality } = await import("/static/quality.js");
          return [
            assessQuality({ rttMs: 40, jitterMs: 5, lossPct: 0 }).level,
            assessQuality({ rttMs: 200, jitterMs: 5, lossPct: 0 }).level,
            assessQuality({ rttMs: 40, jitterMs: 5, lossPct: 12 }).level,
            assessQuality({ rttMs: null, jitterMs: null, lossPct: null }).level,
          ];
        }"""
    )
    assert verdicts == ["good", "fair", "poor", "unknown"]

    await page.click("#start")
    await wait_event(page, "session.created")
    warning = page.locator("#quality-warning")
    await warning.wait_for(state="visible", timeout=T)
    text = await warning.text_content() or ""
    assert "too poor for a realtime conversation" in text and "round-trip time" in text
    assert await page.get_attribute("#quality-warning", "role") == "alert"
    assert await page.text_content("#q-rtt") == "800 ms"
    assert await page.text_content("#q-level") == "poor"
    await page.click("#stop")
    await page.wait_for_function("() => window.microturn.state === 'closed'", timeout=15_000)
    assert await page.is_hidden("#quality-warning")
    assert console_errors == [], console_errors


PLAYBACK_SCRIPT = """
async () => {
  // The client's output_audio.played reports, driven by scripted events and a scripted playout
  // counter (inbound-rtp totalSamplesDuration), without a call.
  const { MicroturnClient } = await import("/static/client.js");
  const client = new MicroturnClient();
  let playedOutS = 10.0;
  const sent = [];
  client.pc = { getStats: async () => new Map([["in", { type: "inbound-rtp", kind: "audio", totalSamplesDuration: playedOutS }]]) };
  client.channel = { readyState: "open", send: (text) => sent.push(JSON.parse(text)) };
  const settle = () => new Promise((r) => setTimeout(r, 20));
  client._onMessage(JSON.stringify({ type: "output_audio.started", microturn: 7 }));
  await settle();
  playedOutS += 0.5;
  await client._tick();            // the every-500-ms report while speaking
  await settle();
  playedOutS += 0.74;
  client._onMessage(JSON.stringify({ type: "output_audio.stopped", microturn: 13 }));
  await settle();
  playedOutS += 3;                 // silence: nothing more is reported
  await client._tick();
  await settle();
  client._onMessage(JSON.stringify({ type: "output_audio.started", microturn: 40 }));
  await settle();
  playedOutS += 0.2;
  await client._tick();
  await settle();
  client.pc = null;
  return sent;
}
"""


async def test_playback_reports_follow_the_contract(served: ServerProcess, chromium: Any) -> None:
    page = await chromium.new_page()
    console_errors = watch_console(page)
    await page.goto(served.url)
    sent = await page.evaluate(PLAYBACK_SCRIPT)
    played = [(e["microturn"], e["played_ms"]) for e in sent if e["type"] == "output_audio.played"]
    assert played == [(7, 500), (7, 1240), (40, 200)], sent
    assert console_errors == [], console_errors


async def test_a_call_the_server_ends_is_shown_as_ended(
    served: ServerProcess, chromium: Any
) -> None:
    page = await chromium.new_page()
    console_errors = watch_console(page)
    await page.goto(served.url)
    await page.click("#start")
    created = await wait_event(page, "session.created")
    async with aiohttp.ClientSession() as http:  # someone else (an operator) ends the call
        async with http.delete(f"{served.url}/v1/calls/{created['call_id']}") as resp:
            assert resp.status == 204
    ended = await wait_event(page, "session.ended")
    assert ended["reason"]
    await page.wait_for_function("() => window.microturn.state === 'closed'", timeout=15_000)
    status = await page.text_content("#state") or ""
    assert status.startswith("The call ended:") and "Nothing is being sent" in status, status
    assert await page.text_content("#privacy-text") == "Not listening"
    assert await page.is_enabled("#start")
    assert console_errors == [], console_errors


async def test_the_page_sends_only_the_video_the_model_uses(
    served: ServerProcess, chromium: Any
) -> None:
    """session.created says what video the model uses; the page caps its sender to it (the fake
    camera's 320x240 at 15 fps becomes ~107x80 at 10) and the server receives that."""
    page = await chromium.new_page()
    console_errors = watch_console(page)
    await page.goto(served.url)
    await page.click("#start")
    created = await wait_event(page, "session.created")
    want = created["video"]
    assert want == {"max_framerate": 10, "short_side_px": 80, "model_frame_px": 40}
    await page.wait_for_function("() => window.microturn.videoSent !== null", timeout=T)
    sent = await page.evaluate("window.microturn.videoSent")
    assert sent == {"maxFramerate": 10, "scale": 3, "via": "setParameters"}, sent
    encodings = await page.evaluate(
        """() => window.microturn.pc.getSenders()
             .find((s) => s.track && s.track.kind === 'video').getParameters().encodings"""
    )
    assert encodings[0]["maxFramerate"] == 10 and encodings[0]["scaleResolutionDownBy"] == 3

    url = f"{served.url}/v1/calls/{created['call_id']}"
    async with aiohttp.ClientSession() as http:

        async def status() -> dict[str, Any]:
            async with http.get(url) as resp:
                assert resp.status == 200
                result: dict[str, Any] = await resp.json()
                return result

        # The picture the server receives shrinks to the request (the encoder applies it at its
        # next frame) ...
        while (size := (await status())["video_frame_size"]) is None or min(size) > 80:
            await page.wait_for_timeout(200)
        assert min(size) >= 40, size  # still larger than the model's frame
        # ... and comes at most about 10 times a second: 2 per micro-turn (15 fps would be 3),
        # counted against the call's own micro-turns rather than the wall clock.
        first = await status()
        while (now := await status())["microturns"] < first["microturns"] + 25:
            await page.wait_for_timeout(200)
        per_microturn = (now["video_frames_received"] - first["video_frames_received"]) / (
            now["microturns"] - first["microturns"]
        )
        assert 0 < per_microturn <= 2.4, per_microturn
        assert now["video_frames_used"] > first["video_frames_used"]
    assert console_errors == [], console_errors
