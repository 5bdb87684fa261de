"""The outbound paced track: bounded ring, 20 ms frames on the clock, no clicks, instant flush."""

import asyncio
import time

import numpy as np

from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ
from media.audio_out import FRAME_SAMPLES, PacedAudioTrack, SampleRing


def test_ring_keeps_order_and_tags_microturns() -> None:
    ring = SampleRing(1000)
    ring.write(np.arange(300, dtype=np.float32), microturn=0)
    ring.write(np.arange(300, 600, dtype=np.float32), microturn=1)
    out, last = ring.read(400)
    np.testing.assert_array_equal(out, np.arange(400))
    assert last == (1, 100), "the last sample read is the 100th of micro-turn 1's output"
    out, last = ring.read(400)
    np.testing.assert_array_equal(out[:200], np.arange(400, 600))
    assert not out[200:].any(), "reading past the end pads with silence"


def test_ring_drops_oldest_when_full() -> None:
    ring = SampleRing(1000)
    ring.write(np.zeros(800, dtype=np.float32), microturn=0)
    dropped = ring.write(np.ones(400, dtype=np.float32), microturn=1)
    assert dropped == 200 and len(ring) == 1000
    out, _ = ring.read(1000)
    assert out[:600].sum() == 0 and out[600:].sum() == 400


async def test_track_paces_20ms_frames_with_contiguous_pts() -> None:
    track = PacedAudioTrack()
    start = time.monotonic()
    frames = [await track.recv() for _ in range(25)]
    elapsed = time.monotonic() - start
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(25)]
    assert all(f.samples == FRAME_SAMPLES and f.sample_rate == SAMPLE_RATE_HZ for f in frames)
    # 24 intervals of 20 ms: the track must not run ahead of the clock (it may run late on a busy CI).
    assert elapsed >= 0.47
    track.stop()


async def test_sine_across_microturn_boundaries_has_no_discontinuity() -> None:
    track = PacedAudioTrack()
    t = np.arange(MICROTURN_SAMPLES * 3) / SAMPLE_RATE_HZ
    sine = (0.5 * np.sin(2 * np.pi * 300 * t + 0.3)).astype(np.float32)  # first sample non-zero
    for k in range(3):
        track.write(sine[k * MICROTURN_SAMPLES : (k + 1) * MICROTURN_SAMPLES], microturn=k)
    samples = []
    for _ in range(40):
        frame = await track.recv()
        samples.append(frame.to_ndarray().reshape(-1).astype(np.float32) / 32767)
    audio = np.concatenate(samples)
    start = int(np.argmax(np.abs(audio) > 0))
    played = audio[start : start + len(sine)]
    # The sine comes out whole: sample-exact, so no step at the 200 ms joins.
    np.testing.assert_allclose(played, sine[: len(played)], atol=2e-4)
    max_step = np.abs(np.diff(played)).max()
    assert max_step < 0.5 * 2 * np.pi * 300 / SAMPLE_RATE_HZ * 1.05
    assert track.sent_position == (2, MICROTURN_SAMPLES)
    track.stop()


async def test_flush_silences_the_next_frame() -> None:
    track = PacedAudioTrack()
    track.write(np.full(MICROTURN_SAMPLES * 5, 0.5, dtype=np.float32), microturn=0)
    loud = []
    for _ in range(5):
        loud.append(np.abs((await track.recv()).to_ndarray()).max())
    assert max(loud) > 10000
    track.flush()
    assert track.queued_ms == 0
    after = (await track.recv()).to_ndarray()
    assert not after.any(), "the frame after a flush is silence"
    track.stop()


async def test_stopped_track_ends_the_stream() -> None:
    from aiortc.mediastreams import MediaStreamError

    track = PacedAudioTrack()
    track.stop()
    try:
        await asyncio.wait_for(track.recv(), 1)
    except MediaStreamError:
        return
    raise AssertionError("recv on a stopped track must raise MediaStreamError")
