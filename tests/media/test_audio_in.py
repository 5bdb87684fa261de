"""The inbound audio timeline: exact 200 ms micro-turns on the session clock, anchored to arrival."""

import av
import numpy as np

from inference.protocol import MICROTURN_SAMPLES
from media.audio_in import GRACE_MARGIN_S, MAX_GRACE_S, SLICE_GRACE_S, AudioInput, AudioTimeline
from media.clock import SessionClock

FRAME = 320  # 20 ms at 16 kHz


def ramp(start: int, n: int = FRAME) -> np.ndarray:
    """Samples that encode their own sender position, so misplacement is visible."""
    return (np.arange(start, start + n) % 1000 / 1000).astype(np.float32)


def feed(timeline: AudioTimeline, first: int, count: int, arrival_of) -> None:
    for i in range(first, first + count):
        pts = i * FRAME
        timeline.write(ramp(pts), pts, arrival_of(i))


def test_steady_stream_is_cut_into_exact_microturns() -> None:
    clock = SessionClock(t0=100.0)
    timeline = AudioTimeline(clock)
    feed(timeline, 0, 30, lambda i: 100.0 + (i + 1) * 0.020)
    for k in range(3):
        audio, gaps = timeline.take(k)
        assert audio.shape == (MICROTURN_SAMPLES,)
        assert gaps == 0
        np.testing.assert_allclose(audio, ramp(k * MICROTURN_SAMPLES, MICROTURN_SAMPLES))


def test_missing_audio_is_silence_and_counted() -> None:
    clock = SessionClock(t0=0.0)
    timeline = AudioTimeline(clock)
    # frames 0-9 arrive, 10-14 are lost, 15-19 arrive on time
    feed(timeline, 0, 10, lambda i: (i + 1) * 0.020)
    feed(timeline, 15, 5, lambda i: (i + 1) * 0.020)
    _, gaps0 = timeline.take(0)
    second, gaps1 = timeline.take(1)
    assert gaps0 == 0
    assert gaps1 == 5 * FRAME
    assert np.all(second[: 5 * FRAME] == 0)
    np.testing.assert_allclose(second[5 * FRAME :], ramp(15 * FRAME, 5 * FRAME))
    assert timeline.stats.gap_samples == 5 * FRAME


def test_no_audio_at_all_gives_silent_microturns() -> None:
    timeline = AudioTimeline(SessionClock(t0=0.0))
    audio, gaps = timeline.take(0)
    assert gaps == MICROTURN_SAMPLES and not audio.any()


def test_mic_that_starts_late_lands_at_its_arrival_time() -> None:
    clock = SessionClock(t0=0.0)
    timeline = AudioTimeline(clock)
    # The sender's pts start at 0, but its first frame arrives 2 s into the call.
    feed(timeline, 0, 10, lambda i: 2.0 + (i + 1) * 0.020)
    for k in range(10):
        _, gaps = timeline.take(k)
        assert gaps == MICROTURN_SAMPLES, f"micro-turn {k} is before the mic started"
    audio, gaps = timeline.take(10)
    assert gaps == 0
    np.testing.assert_allclose(audio, ramp(0, MICROTURN_SAMPLES))


def test_sender_pause_invisible_in_pts_is_placed_by_arrival() -> None:
    timeline = AudioTimeline(SessionClock(t0=0.0))
    arrivals = [((i + 1) * 0.020, i) for i in range(10)]  # 0.0-0.2 s
    # The sender pauses 1 s; its pts continue as if nothing happened.
    arrivals += [(1.0 + (i + 1) * 0.020, i) for i in range(10, 20)]  # arrive 1.22-1.40 s
    turns = simulate(timeline, arrivals, 8)
    assert timeline.stats.reanchors == 1
    np.testing.assert_allclose(turns[0][0], ramp(0, MICROTURN_SAMPLES))
    for k in range(1, 6):
        assert turns[k][1] == MICROTURN_SAMPLES, f"micro-turn {k} falls in the pause"
    audio6, gaps6 = turns[6]
    assert gaps6 == 0, "nothing of the audio after the pause is lost"
    np.testing.assert_allclose(audio6, ramp(10 * FRAME, MICROTURN_SAMPLES))
    assert timeline.stats.late_samples == 0


def test_a_stall_of_our_own_process_does_not_move_the_anchor() -> None:
    """Our loop stalls 300 ms: the frames of that time arrive in one burst. The anchor stays; what
    arrives for micro-turns already cut is late, and everything after is in place."""
    timeline = AudioTimeline(SessionClock(t0=0.0))
    arrivals = [((i + 1) * 0.020, i) for i in range(10)]
    arrivals += [(0.500, i) for i in range(10, 25)]  # due 0.22-0.50, all delivered at 0.5 s
    arrivals += [((i + 1) * 0.020, i) for i in range(25, 60)]
    turns = simulate(timeline, arrivals, 6)
    assert timeline.stats.reanchors == 0
    assert timeline.stats.late_samples > 0, "micro-turn 1 was cut before the burst"
    for k in (2, 3, 4):
        np.testing.assert_allclose(turns[k][0], ramp(k * MICROTURN_SAMPLES, MICROTURN_SAMPLES))


def simulate(
    timeline: AudioTimeline, arrivals: list[tuple[float, int]], microturns: int
) -> list[tuple[np.ndarray, int]]:
    """Run frames (arrival time, frame index) and micro-turn cuts (each at its slice end plus the
    timeline's grace at that moment) in time order, as the call's turn loop does; return every
    micro-turn's (audio, gaps)."""
    pending = sorted(arrivals)
    out = []
    i = 0
    for k in range(microturns):
        cut = timeline.clock.slice_end(k) + timeline.grace_s
        while i < len(pending) and pending[i][0] < cut:
            t, n = pending[i]
            timeline.write(ramp(n * FRAME), n * FRAME, t)
            i += 1
        out.append(timeline.take(k))
    return out


def test_burst_after_jitter_is_placed_contiguously() -> None:
    timeline = AudioTimeline(SessionClock(t0=0.0))
    # A jitter buffer holds 4 frames, then releases them together at 0.1 s, then steady.
    arrivals = [(0.100, i) for i in range(4)]
    arrivals += [(0.100 + (i - 3) * 0.020, i) for i in range(4, 40)]
    turns = simulate(timeline, arrivals, 4)
    audio = np.concatenate([a for a, _ in turns])
    first = int(np.argmax(audio != 0))
    # Everything from the first sample on is the sender's stream in order, without holes.
    n = 36 * FRAME - first
    sender_start = round(float(audio[first]) * 1000)
    np.testing.assert_allclose(audio[first : first + n], ramp(sender_start, n), atol=1e-6)
    assert timeline.stats.late_samples == 0


def test_audio_for_an_emitted_microturn_is_dropped_as_late() -> None:
    clock = SessionClock(t0=0.0)
    timeline = AudioTimeline(clock)
    feed(timeline, 0, 10, lambda i: (i + 1) * 0.020)
    timeline.take(0)
    timeline.take(1)
    # A frame whose place is inside micro-turn 1 arrives now, too late.
    timeline.write(ramp(0), 15 * FRAME, 0.32)
    assert timeline.stats.late_samples > 0


def test_slow_sender_clock_does_not_slide_the_count() -> None:
    """A sender whose clock runs 0.5 % slow over 10 minutes: the micro-turn count is wall time / 200
    ms by construction, and the audio it sends is not lost; it is re-anchored in small steps."""
    timeline = AudioTimeline(SessionClock(t0=0.0))
    n_frames = 30_000  # 10 minutes of 20 ms frames
    arrivals = [((i + 1) * 0.020 * 1.005, i) for i in range(n_frames)]
    wall_s = n_frames * 0.020 * 1.005
    microturns = int(wall_s / 0.2) - 1
    turns = simulate(timeline, arrivals, microturns)
    got = sum(len(a) - gaps for a, gaps in turns)
    assert microturns > 3000  # 603 s of wall time
    assert got >= (n_frames - 20) * FRAME, "a slow sender must not lose audio"
    assert timeline.stats.late_samples == 0
    # the gaps are many small slews, not one big slide
    assert timeline.stats.reanchors > 10


def test_fast_sender_clock_loses_at_most_its_surplus() -> None:
    timeline = AudioTimeline(SessionClock(t0=0.0))
    n_frames = 30_000
    arrivals = [((i + 1) * 0.020 / 1.005, i) for i in range(n_frames)]
    microturns = int(n_frames * 0.020 / 1.005 / 0.2) - 1
    turns = simulate(timeline, arrivals, microturns)
    gaps = sum(g for _, g in turns)
    assert gaps < 2 * FRAME, "a fast sender fills every micro-turn"


def test_audio_input_resamples_48k_stereo_frames_to_16k_mono() -> None:
    clock = SessionClock(t0=0.0)
    timeline = AudioTimeline(clock)
    audio_in = AudioInput(timeline)
    t = np.arange(960 * 50) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    for i in range(50):
        chunk = tone[i * 960 : (i + 1) * 960]
        stereo = np.repeat(chunk, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = i * 960
        audio_in.push_frame(frame, (i + 1) * 0.020)
    audio, gaps = timeline.take(2)
    assert gaps == 0
    rms = float(np.sqrt(np.mean(audio**2)))
    assert 0.3 < rms < 0.4, rms  # a 0.5-amplitude sine has RMS 0.354
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 10


def test_network_jitter_within_the_grace_loses_nothing() -> None:
    rng = np.random.default_rng(7)
    timeline = AudioTimeline(SessionClock(t0=0.0))
    n_frames = 1500  # 30 s
    jitter = rng.uniform(0, 0.035, n_frames)
    arrivals = [((i + 1) * 0.020 + jitter[i], i) for i in range(n_frames)]
    turns = simulate(timeline, arrivals, int(n_frames * 0.020 / 0.2) - 1)
    got = sum(len(a) - g for a, g in turns)
    assert timeline.stats.late_samples == 0
    assert got >= (n_frames - 15) * FRAME


def test_grace_adapts_to_jitter_beyond_it_then_relaxes() -> None:
    """Arrivals up to 150 ms behind: some audio is late at first, then the grace grows and
    nothing more is lost; when the jitter is gone the grace comes back down."""
    rng = np.random.default_rng(3)
    timeline = AudioTimeline(SessionClock(t0=0.0))
    n_jittery = 1500  # 30 s with up to 150 ms of jitter, then 150 s on time
    jitter = np.concatenate([rng.uniform(0, 0.150, n_jittery), np.zeros(7500)])
    arrivals = [((i + 1) * 0.020 + jitter[i], i) for i in range(len(jitter))]
    turns = simulate(timeline, arrivals, 890)
    assert timeline.stats.late_samples > 0, "the first jitter is beyond the starting grace"
    assert timeline.stats.max_grace_ms >= 150
    assert timeline.stats.max_grace_ms <= MAX_GRACE_S * 1000
    adapted = turns[25:150]
    # once adapted, no frame is lost (a few samples may move when the anchor does)
    assert sum(g for _, g in adapted) < 10, "once adapted, the jittery audio all arrives in time"
    # quiet minutes bring the grace back down, below the first grace, but never under what
    # frames on time need (they arrive one 20 ms frame after their slice's first sample)
    assert timeline.grace_s < SLICE_GRACE_S, "quiet minutes bring the grace back down"
    assert timeline.grace_s >= 0.020 + GRACE_MARGIN_S
