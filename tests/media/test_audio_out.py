"""The outbound paced track: bounded ring, 20 ms frames on the clock, no clicks, instant flush."""

import asyncio
import time

import numpy as np

from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ
from media.audio_out import (
    FRAME_SAMPLES,
    MIN_CUSHION_S,
    PLAYOUT_MARGIN_S,
    LoopJitter,
    PacedAudioTrack,
    SampleRing,
)


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


def _play(track: PacedAudioTrack, writes: list[float], start: float, until: float) -> list[float]:
    """Writes of 200 ms of tone at the given times, frames pulled every 20 ms from `start` to
    `until`, in time order; returns when each frame was sent that carried sound after silence."""
    onsets: list[float] = []
    t, i, silent = start, 0, True
    tone = np.full(3200, 0.5, np.float32)
    while t < until:
        while i < len(writes) and writes[i] <= t:
            track.write(tone, i, now=writes[i])
            i += 1
        loud = bool(np.abs(track._next_samples(t)).max() > 0)
        if loud and silent:
            onsets.append(t)
        silent = not loud
        t = round(t + 0.020, 6)
    return onsets


def test_cushion_shrinks_on_steady_outputs_and_grows_after_an_underrun() -> None:
    steady = PacedAudioTrack()
    _play(steady, [k * 0.2 for k in range(600)], 0.0, 120.0)  # 2 minutes of outputs on time
    assert steady.cushion_s <= MIN_CUSHION_S + 0.003 < PLAYOUT_MARGIN_S
    assert steady.stats.underruns == 0
    # re-primed (after a barge-in flush), the track plays new audio after the small cushion
    steady.flush()
    [onset] = _play(steady, [120.0], 120.0, 120.3)
    assert onset - 120.0 <= MIN_CUSHION_S + 0.020

    jittery = PacedAudioTrack()
    # every 5th output 60 ms late: beyond the first 40 ms cushion
    writes = [k * 0.2 + (0.06 if k % 5 == 4 else 0.0) for k in range(100)]
    _play(jittery, writes, 0.0, 20.0)
    assert jittery.stats.underruns >= 1, "the first late output runs the ring dry"
    assert jittery.cushion_s >= 0.06, "then the cushion covers the jitter measured"
    before = jittery.stats.underruns
    _play(jittery, [20.0 + w for w in writes], 20.0, 40.0)
    assert jittery.stats.underruns == before, "once adapted, the late outputs play without gaps"


def test_queued_silence_is_skipped_to_bring_the_delay_back_to_the_cushion() -> None:
    """Outputs start coming 30 ms earlier (the grace came down): 30 ms more wait in the ring.
    While the model is silent the surplus is skipped, so its next word is heard a cushion after
    it was written; mid-utterance nothing is skipped."""
    delays = {}
    for speaking in (False, True):
        track = PacedAudioTrack()
        writes = [k * 0.2 for k in range(20)] + [k * 0.2 - 0.03 for k in range(20, 30)]
        loud_at = writes[-1]
        t, i, heard = 0.0, 0, None
        while t < 6.5 and heard is None:
            while i < len(writes) and writes[i] <= t + 1e-9:
                level = 0.5 if i == len(writes) - 1 else 0.0
                track.write(np.full(3200, level, np.float32), i, now=writes[i], speaking=speaking)
                i += 1
            if np.abs(track._next_samples(t)).max() > 0:
                heard = t
            t = round(t + 0.020, 6)
        assert heard is not None
        delays[speaking] = heard - loud_at
    cushion = PLAYOUT_MARGIN_S  # not yet decayed much in 6 s of steady outputs
    assert delays[False] <= cushion + 0.020 + 1e-6, delays
    assert delays[True] >= delays[False] + 0.020, "mid-utterance, the queue is left whole"


def test_calls_of_one_process_share_what_they_learn_of_the_loops_jitter() -> None:
    """One call's late outputs set the cushion of every call on the loop: a call started later
    plays the same jitter without running dry, where a call on its own would have."""
    jitter = LoopJitter()
    writes = [k * 0.2 + (0.06 if k % 5 == 4 else 0.0) for k in range(100)]
    first = PacedAudioTrack(jitter=jitter)
    _play(first, writes, 0.0, 20.0)
    assert first.stats.underruns >= 1 and first.cushion_s >= 0.06

    later = PacedAudioTrack(jitter=jitter)
    _play(later, [20.0 + w for w in writes], 20.0, 40.0)
    assert later.stats.underruns == 0, "it started at the cushion the first call learnt"
    alone = PacedAudioTrack()
    _play(alone, [20.0 + w for w in writes], 20.0, 40.0)
    assert alone.stats.underruns >= 1, "(on its own it would have run dry)"

    # what was learnt fades when the loop is calm: a minute's half-life
    assert jitter.peak(40.0 + 120.0) <= jitter.peak(40.0) / 3


def test_a_pause_in_the_outputs_is_not_taken_for_jitter() -> None:
    """Outputs that stop for seconds (a suspended call, a session moved to another worker) and
    come back on time do not raise the shared cushion."""
    jitter = LoopJitter()
    track = PacedAudioTrack(jitter=jitter)
    writes = [k * 0.2 for k in range(50)] + [13.0 + k * 0.2 for k in range(50)]
    _play(track, writes, 0.0, 23.0)
    assert jitter.peak(23.0) < 0.001  # (float rounding of the write times)
    assert track.cushion_s < PLAYOUT_MARGIN_S
