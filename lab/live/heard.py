"""What the page heard: the model's speech as time segments of the received audio, and its words.

Timing comes from the audio the page received (16 kHz, on the page's audio clock, from the
episode's t0; see page.html), never from the text stream: the text deltas say *what* was said
and are placed at the heard onset they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ
from lab.eval.runner import Run, Said
from lab.tasks.episode import Utterance

HOP = SAMPLE_RATE_HZ // 100  # 10 ms analysis frames
MICROTURN_S = MICROTURN_SAMPLES / SAMPLE_RATE_HZ
SPEECH_DBFS = -45.0  # a 10 ms frame louder than this is the model speaking (its voice: ~-25)
BRIDGE_S = 0.25  # quieter stretches shorter than this are inside one utterance (between words)
MIN_SEGMENT_S = 0.05  # shorter bursts are clicks, not speech
TEXT_TO_AUDIO_S = (-0.05, 1.0)  # a text delta's audio is heard this long after it arrived


def segments(
    audio: np.ndarray,
    threshold_dbfs: float = SPEECH_DBFS,
    bridge_s: float = BRIDGE_S,
    min_s: float = MIN_SEGMENT_S,
) -> list[tuple[float, float]]:
    """Speech segments [(start_s, end_s)] of a 16 kHz signal: loud 10 ms frames, gaps shorter
    than `bridge_s` bridged, bursts shorter than `min_s` dropped."""
    n = len(audio) // HOP
    if n == 0:
        return []
    frames = audio[: n * HOP].astype(np.float64).reshape(n, HOP)
    loud = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-12) > threshold_dbfs
    out: list[list[float]] = []
    hop_s = HOP / SAMPLE_RATE_HZ
    for i in np.flatnonzero(loud):
        t = i * hop_s
        if out and t - out[-1][1] <= bridge_s:
            out[-1][1] = t + hop_s
        else:
            out.append([t, t + hop_s])
    return [(round(float(a), 3), round(float(b), 3)) for a, b in out if b - a >= min_s]


def text_utterances(events: list[dict[str, Any]]) -> list[tuple[float, str, int]]:
    """(arrival s, text, first micro-turn) per utterance of the text stream: deltas of
    consecutive micro-turns form one utterance, as the offline runner groups them."""
    out: list[list[Any]] = []
    last = None
    for e in events:
        if e.get("type") != "output_text.delta" or e.get("t") is None:
            continue
        mt = int(e["microturn"])
        if out and last is not None and mt == last + 1:
            out[-1][1] += e["text"]
        else:
            out.append([float(e["t"]), e["text"], mt])
        last = mt
    return [(a, t.strip(), m) for a, t, m in out if t.strip()]


def heard_microturn(t_s: float) -> int:
    """The offline convention: micro-turn k's output is heard from (k + 1) * 0.2 s."""
    return round(t_s / MICROTURN_S) - 1


@dataclass
class LiveRun(Run):
    """An episode as a live call: the received audio, the server's events (times relative to the
    episode's t0) and what was heard when. Metric functions written for offline runs read it
    through the same `utterances()`, with heard timing; turn metrics read `heard`."""

    heard: list[tuple[float, float]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    received: np.ndarray | None = None
    rtt_ms: float | None = None
    jitter_buffer_ms: float | None = None  # the page's mean (inbound-rtp jitterBufferDelay)
    call_id: str | None = None
    error: str | None = None

    def lead(self, u: Utterance) -> int:
        """Heard: a schedule's word said ahead (`Utterance.lead`) is due where it is heard."""
        return u.lead

    def schedule_end(self) -> int:
        """Heard: a word heard after the call's last micro-turn is due past its end."""
        return self.ep.n

    def utterances(self) -> list[Said]:
        out = []
        onsets = [a for a, _ in self.heard]
        for arrival, text, _ in text_utterances(self.events):
            lo, hi = arrival + TEXT_TO_AUDIO_S[0], arrival + TEXT_TO_AUDIO_S[1]
            at = next((o for o in onsets if lo <= o <= hi), None)
            # text without audio (the model spoke silently): placed where its audio would be
            out.append(Said(heard_microturn(at if at is not None else arrival + 0.1), text))
        return out
