"""Episodes as real calls: headless Chromium (the QA harness) against a served Microturn.

Each episode is one call from one page (lab/live/page.html, which uses the shipped client): the
page plays the episode's microphone audio through WebAudio into the track it sends, types its
text and draws its camera frames at their micro-turns, optionally feeds the model's voice back
into its microphone (own echo), and records the model's audio as received. `calls` pages run at
once, each taking the next episode when it is done.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lab.live.heard import LiveRun, segments
from lab.tasks.episode import Episode

PAGE = Path(__file__).with_name("page.html")
TAIL_S = 2.0  # recorded after the episode's last micro-turn: replies still on their way
EPISODE_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class Echo:
    """The model's voice back into the microphone: a speakerphone without echo cancellation."""

    gain_db: float  # -25 .. -10
    delay_ms: float  # 30 .. 80


def random_echo(rng: np.random.Generator) -> Echo:
    return Echo(round(float(rng.uniform(-25, -10)), 1), round(float(rng.uniform(30, 80)), 1))


def episode_spec(ep: Episode, echo: Echo | None, tail_s: float = TAIL_S) -> dict[str, Any]:
    pcm = (np.clip(ep.mic(), -1.0, 1.0) * 32767).astype("<i2")
    frames = None
    has_frame: list[bool] = []
    if ep.frames is not None and ep.has_frame is not None:
        frames = base64.b64encode(np.ascontiguousarray(ep.frames, np.uint8).tobytes()).decode()
        has_frame = [bool(x) for x in ep.has_frame]
    return {
        "audio": base64.b64encode(pcm.tobytes()).decode(),
        "n": ep.n,
        "typed": [[mt, text] for mt, text in ep.typed],
        "frames": frames,
        "has_frame": has_frame,
        "echo": None if echo is None else {"gain_db": echo.gain_db, "delay_ms": echo.delay_ms},
        "tail_s": tail_s,
    }


def to_run(ep: Episode, result: dict[str, Any]) -> LiveRun:
    received = np.frombuffer(base64.b64decode(result["audio"]), "<i2").astype(np.float32) / 32768
    return LiveRun(
        ep,
        heard=segments(received),
        events=[e for e in result["events"] if e.get("t") is not None],
        received=received,
        rtt_ms=result.get("rtt_ms"),
        jitter_buffer_ms=result.get("jitter_buffer_ms"),
        call_id=result.get("call_id"),
        error=result.get("error"),
    )


async def run_live(
    base_url: str,
    episodes: list[Episode],
    calls: int = 2,
    echo: list[Echo | None] | None = None,
    progress: bool = True,
) -> list[LiveRun]:
    """Every episode as its own call to `base_url`, `calls` at a time; in episode order."""
    from playwright.async_api import async_playwright

    from tests.browser.harness import close_chromium, launch_chromium

    echoes = echo or [None] * len(episodes)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(episodes)):
        queue.put_nowait(i)
    runs: dict[int, LiveRun] = {}
    html = PAGE.read_text()

    async def worker(context: Any) -> None:
        page = await context.new_page()
        await page.route(
            f"{base_url}/__live",
            lambda route: route.fulfill(status=200, content_type="text/html", body=html),
        )
        await page.goto(f"{base_url}/__live")
        await page.wait_for_function("() => window.live && window.live.state === 'ready'")
        while not queue.empty():
            i = queue.get_nowait()
            ep = episodes[i]
            spec = episode_spec(ep, echoes[i])
            result = await asyncio.wait_for(
                page.evaluate("(spec) => window.runEpisode(spec)", spec),
                EPISODE_TIMEOUT_MS / 1000 + ep.n * 0.2,
            )
            runs[i] = to_run(ep, result)
            if progress:
                r = runs[i]
                status = f"error: {r.error}" if r.error else f"{len(r.heard)} segments heard"
                print(f"  live {len(runs)}/{len(episodes)} {ep.task}: {status}", file=sys.stderr)
        await page.close()

    async with async_playwright() as playwright:
        context = await launch_chromium(playwright, None)
        try:
            await asyncio.gather(*(worker(context) for _ in range(max(1, calls))))
        finally:
            await close_chromium(context)
    return [runs[i] for i in range(len(episodes))]
