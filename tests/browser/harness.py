"""Browser QA harness: generated fake media, a served Microturn, headless Chromium driving it.

Reusable by anyone writing scenarios:

    media = make_media(tmp_dir, speech="hello there", seconds=4)      # WAV + Y4M (speech=None: quiet)
    with ServerProcess(port=free_port()) as server:                    # `microturn serve`
        browser = await launch_chromium(playwright, media)             # fake mic and camera
        page = await browser.new_page(); errors = watch_console(page)
        await page.goto(server.url); await page.click("#start")
        await wait_event(page, "session.created")                      # the demo page's events
        await type_text(page, "/ask what is 12*7")                     # input_text
        await wait_event(page, "agent.task", {"status": "done"})
        await wait_model_audio(page); await wait_played(page, 1000)    # what the page played

The demo page exposes what it sees on `window.microturn`, the widget on `window.Microturn` (pass
`hook="Microturn"`). `EmbeddingSite` serves a page that embeds the widget, with a token-minting
backend, on another origin.

The demo page's Content-Security-Policy forbids `eval`: give `page.wait_for_function` a function
("() => window.microturn.state === 'closed'"), never a bare expression, which Playwright evals.
"""

from __future__ import annotations

import asyncio
import html
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from media.synthetic import moving_square_frame

CHROMIUM = os.environ.get("MICROTURN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("MICROTURN_TEST_ARTIFACTS", "test-artifacts"))
EVENT_TIMEOUT_MS = 45_000  # generous: chromium + server + model on a loaded 2-core machine


@dataclass(frozen=True)
class FakeMedia:
    wav: Path
    y4m: Path


def make_speech_wav(path: Path, text: str) -> Path:
    """espeak-ng speech as Chromium's fake mic wants it: 48 kHz mono 16-bit WAV."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(
        ["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path)],
        check=True,
        capture_output=True,
    )
    raw.unlink()
    return path


def make_room_wav(path: Path, seconds: float = 4.0, level_dbfs: float = -60.0) -> Path:
    """A quiet room as Chromium's fake mic wants it (48 kHz mono 16-bit WAV): white noise at
    `level_dbfs`, nobody talking."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(int(seconds * 48_000)) * 10 ** (level_dbfs / 20)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48_000)
        out.writeframes((np.clip(noise, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def make_motion_y4m(
    path: Path, seconds: float = 4.0, width: int = 320, height: int = 240, fps: int = 15
) -> Path:
    """A white square circling on grey, as a Y4M (text header + raw I420 frames)."""
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(int(seconds * fps)):
            rgb = moving_square_frame(n, width, height, fps).astype(np.float32)
            r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = (b - y) * 0.564 + 128
            v = (r - y) * 0.713 + 128
            sub = lambda c: c.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))  # noqa: E731
            out.write(b"FRAME\n")
            for plane in (y, sub(u), sub(v)):
                out.write(np.clip(plane, 0, 255).astype(np.uint8).tobytes())
    return path


def make_media(
    directory: Path, speech: str | None = "hello, can you hear me?", seconds: float = 4.0
) -> FakeMedia:
    """The fake mic (`speech` looped, or a quiet room when None) and camera (the circling square)."""
    directory.mkdir(parents=True, exist_ok=True)
    wav = (
        make_speech_wav(directory / "speech.wav", speech)
        if speech is not None
        else make_room_wav(directory / "room.wav", seconds)
    )
    return FakeMedia(wav=wav, y4m=make_motion_y4m(directory / "motion.y4m", seconds))


def chromium_args(media: FakeMedia | None) -> list[str]:
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
    ]
    if media is not None:
        args += [
            f"--use-file-for-fake-audio-capture={media.wav}",
            f"--use-file-for-fake-video-capture={media.y4m}",
        ]
    return args


async def launch_chromium(playwright: Any, media: FakeMedia | None) -> Any:
    """Debian's Chromium, headless, with the fake devices (a fresh profile each launch)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: run `make test` (installs chromium) first")
    profile = tempfile.mkdtemp(prefix="microturn-chromium-")
    context = await playwright.chromium.launch_persistent_context(
        profile,
        executable_path=CHROMIUM,
        headless=True,
        args=chromium_args(media),
    )
    context._microturn_profile = profile  # removed by close_chromium
    return context


async def close_chromium(context: Any) -> None:
    await context.close()
    shutil.rmtree(getattr(context, "_microturn_profile", ""), ignore_errors=True)


class ServerProcess:
    """`microturn serve` as a child process, as a user runs it; stopped with Ctrl-C (SIGINT)."""

    def __init__(
        self,
        port: int,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # Scenarios run on a shared, loaded machine: no load-based admission unless asked for.
        self.env = {"MICROTURN_MAX_LOOP_LAG_MS": "0", **os.environ, **(env or {})}
        self.args = args or []
        self.log_path = log_path or ARTIFACTS / f"server-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float = 120.0) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "signaling.cli", "serve", "--port", str(self.port), *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start; see {self.log_path}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready within {ready_timeout_s} s; see {self.log_path}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 20.0) -> int:
        """Ctrl-C, as a user would; returns the exit code. A server that does not stop in time is
        killed and reported with a warning (the scenario under test is not what failed)."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            warnings.warn(
                f"microturn serve did not stop within {timeout_s:.0f} s of Ctrl-C and was "
                f"killed; see {self.log_path}",
                stacklevel=2,
            )
            return code

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


# -- page helpers -----------------------------------------------------------------------------
def watch_console(page: Any) -> list[str]:
    """Collect the page's console errors and uncaught exceptions (assert it stays empty)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def wait_event(
    page: Any,
    type_: str,
    match: dict[str, Any] | None = None,
    timeout_ms: int = EVENT_TIMEOUT_MS,
    hook: str = "microturn",
) -> dict[str, Any]:
    """Wait until the page has received a server event of this type (whose fields include
    `match`, if given); return it. `hook`: `microturn` (demo page) or `Microturn` (widget)."""
    handle = await page.wait_for_function(
        """([hook, t, match]) => {
          const probe = window[hook];
          if (!probe || !probe.events) return null;
          return probe.events.find((e) => e.type === t &&
            Object.entries(match).every(([k, v]) => JSON.stringify(e[k]) === JSON.stringify(v))) || null;
        }""",
        arg=[hook, type_, match or {}],
        timeout=timeout_ms,
    )
    event: dict[str, Any] = await handle.json_value()
    return event


async def type_text(page: Any, text: str, selector: str = "#text") -> None:
    """Type into the page's text box and press Enter (the text joins the model's input)."""
    await page.wait_for_selector(f"{selector}:not([disabled])", timeout=EVENT_TIMEOUT_MS)
    await page.fill(selector, text)
    await page.press(selector, "Enter")


async def wait_model_audio(
    page: Any, level: float = 0.005, timeout_ms: int = EVENT_TIMEOUT_MS
) -> float:
    """Wait until the model's audio plays in the page (RMS through WebAudio); return the peak."""
    handle = await page.wait_for_function(
        "(l) => window.microturn && window.microturn.maxRemoteLevel > l && window.microturn.maxRemoteLevel",
        arg=level,
        timeout=timeout_ms,
    )
    return float(await handle.json_value())


async def model_audio_onset_ms(page: Any, timeout_ms: int = EVENT_TIMEOUT_MS) -> float:
    """Milliseconds from pressing Start to the model's audio first being audible in the page."""
    handle = await page.wait_for_function(
        """() => { const m = window.microturn && window.microturn.marks;
                   return m && m.firstModelAudio !== undefined && m.firstModelAudio - m.start; }""",
        timeout=timeout_ms,
    )
    return float(await handle.json_value())


async def wait_played(
    page: Any, min_ms: int = 1, timeout_ms: int = EVENT_TIMEOUT_MS, hook: str = "microturn"
) -> dict[str, Any]:
    """Wait until the page has reported (output_audio.played) at least `min_ms` of model audio
    played out; return that event. The widget's client reports the same way."""
    handle = await page.wait_for_function(
        """([hook, min]) => {
          const p = window[hook];
          const sent = p && p.sent ? p.sent : [];
          for (let i = sent.length - 1; i >= 0; i--) {
            if (sent[i].type === "output_audio.played" && sent[i].played_ms >= min) return sent[i];
          }
          return null;
        }""",
        arg=[hook, min_ms],
        timeout=timeout_ms,
    )
    event: dict[str, Any] = await handle.json_value()
    return event


async def played_out_ms(page: Any) -> float:
    """Model audio the page has played out so far (inbound-rtp totalSamplesDuration), in ms."""
    return float(
        await page.evaluate(
            """async () => {
              const pc = window.microturn.pc;
              if (!pc) return 0;
              let seconds = 0;
              (await pc.getStats()).forEach((s) => {
                if (s.type === "inbound-rtp" && s.kind === "audio") seconds += s.totalSamplesDuration || 0;
              });
              return seconds * 1000;
            }"""
        )
    )


async def wait_inbound_audio_energy(page: Any, timeout_s: float = EVENT_TIMEOUT_MS / 1000) -> float:
    """Wait until getStats reports energy on the remote audio (stats refresh lazily); return it.
    Stays 0 if the <audio> element does not play the track."""
    deadline = time.monotonic() + timeout_s
    while (energy := await inbound_audio_energy(page)) <= 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    return energy


async def inbound_audio_energy(page: Any) -> float:
    """totalAudioEnergy of the remote audio from getStats (0 if the <audio> element never played)."""
    return float(
        await page.evaluate(
            """async () => {
              const pc = window.microturn.pc;
              if (!pc) return 0;
              const stats = await pc.getStats();
              let energy = 0;
              stats.forEach((s) => {
                if (s.type === "inbound-rtp" && s.kind === "audio") energy += s.totalAudioEnergy || 0;
              });
              return energy;
            }"""
        )
    )


# -- embedding ---------------------------------------------------------------------------------
async def mint_token(
    server_url: str, api_key: str, ttl_s: float = 60, origin: str | None = None
) -> dict[str, Any]:
    """POST /v1/tokens as an embedding site's backend does: {"token", "expires_at"}."""
    body: dict[str, Any] = {"ttl_s": ttl_s}
    if origin is not None:
        body["origin"] = origin
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server_url}/v1/tokens", json=body, headers={"Authorization": f"Bearer {api_key}"}
        ) as resp:
            payload: dict[str, Any] = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"minting a token failed: {resp.status} {payload}")
            return payload


EMBED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ada's Bakery</title>
<link rel="icon" href="data:,">
<style>
  /* the embedding site's own styles, deliberately loud: none of this may reach the widget */
  body {{ font: 18px/1.6 Georgia, serif; color: #4a2c0a; background: #fdf6ec; margin: 0; }}
  header {{ background: #7b3f00; color: #fff; padding: 1rem 1.5rem; }}
  main {{ padding: 1rem 1.5rem; max-width: 40rem; }}
  button {{ background: hotpink !important; font-size: 30px; border-radius: 0; }}
  * {{ letter-spacing: .05em; }}
</style></head>
<body>
<header><h1>Ada's Bakery</h1></header>
<main>
  <p>Fresh bread every morning. Questions about an order? Talk to our assistant: the button in
  the corner starts a call.</p>
  <button type="button" id="site-button">The site's own button</button>
</main>
<script src="{server}/widget.js" data-microturn-token-url="{token_url}"{extra}></script>
</body></html>
"""


@dataclass
class EmbeddingSite:
    """A site that embeds the widget (served on its own port, hence its own origin), with the
    tiny backend every embedder writes: it holds the API key and mints call tokens bound to its
    own origin. The page's token URL picks a backend behaviour (`?token=`):

    - `fresh` (default): a new token per call, as a real backend does;
    - `reuse`: the same token every time (the second call must be refused);
    - `expired`: a token with ttl_s 1, handed out only once it has expired;
    - `fail`: the backend answers 500.
    """

    port: int
    server_url: str
    api_key: str
    ttl_s: float = 60
    minted: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._reused: dict[str, Any] | None = None

    def url(self, host: str = "127.0.0.1", token: str = "fresh", extra: str = "") -> str:
        query = f"?token={token}" + (f"&{extra}" if extra else "")
        return f"http://{host}:{self.port}/{query}"

    async def _page(self, request: web.Request) -> web.Response:
        mode = request.query.get("token", "fresh")
        extra = ""
        if request.query.get("camera") == "on":
            extra = ' data-microturn-camera="on"'
        text = EMBED_PAGE.format(
            server=html.escape(self.server_url),
            token_url=html.escape(f"/token?mode={mode}"),
            extra=extra,
        )
        return web.Response(text=text, content_type="text/html")

    async def _token(self, request: web.Request) -> web.Response:
        mode = request.query.get("mode", "fresh")
        origin = f"{request.scheme}://{request.host}"  # this site's own origin
        if mode == "fail":
            return web.json_response({"error": "backend down"}, status=500)
        if mode == "reuse" and self._reused is not None:
            return web.json_response(self._reused)
        ttl = 1 if mode == "expired" else self.ttl_s
        minted = await mint_token(self.server_url, self.api_key, ttl, origin)
        self.minted.append({**minted, "origin": origin, "mode": mode})
        if mode == "reuse":
            self._reused = minted
        if mode == "expired":
            # `expires_at` is whole seconds, rounded down: the token is dead 1 s after it at most.
            while time.time() <= minted["expires_at"] + 1.05:
                await asyncio.sleep(0.1)
        return web.json_response(minted)

    async def start(self) -> EmbeddingSite:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EmbeddingSite:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
