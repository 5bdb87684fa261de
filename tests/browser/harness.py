"""Browser QA harness: generated fake media, a served Microturn, headless Chromium driving it.

Reusable by anyone writing scenarios:

    media = make_media(tmp_dir, speech="hello there", seconds=4)      # WAV + Y4M files
    with ServerProcess(port=free_port()) as server:                    # `microturn serve`
        browser = await launch_chromium(playwright, media)             # fake mic and camera
        page = await browser.new_page(); await page.goto(server.url)
        await start_call(page); await wait_event(page, "session.created")
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    directory: Path, speech: str = "hello, can you hear me?", seconds: float = 4.0
) -> FakeMedia:
    directory.mkdir(parents=True, exist_ok=True)
    return FakeMedia(
        wav=make_speech_wav(directory / "speech.wav", speech),
        y4m=make_motion_y4m(directory / "motion.y4m", seconds),
    )


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
        self.env = {**os.environ, **(env or {})}
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

    def stop(self, timeout_s: float = 30.0) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


# -- page helpers -----------------------------------------------------------------------------
async def wait_event(page: Any, type_: str, timeout_ms: int = EVENT_TIMEOUT_MS) -> dict[str, Any]:
    """Wait until the page has received a server event of this type; return it."""
    handle = await page.wait_for_function(
        "(t) => window.microturn && window.microturn.events.find((e) => e.type === t)",
        arg=type_,
        timeout=timeout_ms,
    )
    event: dict[str, Any] = await handle.json_value()
    return event


async def type_text(page: Any, text: str) -> None:
    await page.wait_for_selector("#text:not([disabled])", timeout=EVENT_TIMEOUT_MS)
    await page.fill("#text", text)
    await page.press("#text", "Enter")


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
