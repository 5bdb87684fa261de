"""Playback position: how much of the model's current utterance the user has actually heard.

When the model is interrupted, what matters is what reached the user's ear, not what it generated.
Two sources, the better one wins:

- the browser's `output_audio.played {microturn, played_ms}` reports (ms played out since the
  utterance that started at `microturn`), extrapolated by the time since the report, never past
  what was sent; authoritative while fresh;
- otherwise the sender: how much of the utterance the paced track has handed to aiortc, minus an
  estimate of what is still in flight (network and the browser's jitter buffer).
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.protocol import MICROTURN_MS, SAMPLE_RATE_HZ

DOWNSTREAM_MS = 80.0  # sent but not yet heard: network + the browser's jitter buffer (loopback)
REPORT_FRESH_S = 1.5  # a browser report older than this gives way to the sender's estimate


@dataclass
class _Report:
    played_ms: float
    at: float


class PlaybackTracker:
    def __init__(self, downstream_ms: float = DOWNSTREAM_MS) -> None:
        self.downstream_ms = downstream_ms
        self.utterance: int | None = None  # micro-turn at which the current utterance started
        self._sent_ms = 0.0
        self._report: _Report | None = None
        self.reports = 0

    def utterance_started(self, microturn: int) -> None:
        self.utterance = microturn
        self._sent_ms = 0.0
        self._report = None

    def utterance_stopped(self) -> None:
        self.utterance = None

    def on_sent(self, position: tuple[int, int] | None) -> None:
        """The outbound track's `sent_position`: (output micro-turn, samples of it sent)."""
        if self.utterance is None or position is None:
            return
        microturn, samples = position
        if microturn >= self.utterance:
            sent = (microturn - self.utterance) * MICROTURN_MS + samples * 1000 / SAMPLE_RATE_HZ
            self._sent_ms = max(self._sent_ms, sent)

    def on_report(self, microturn: int, played_ms: int, now: float) -> None:
        """A browser report; ignored unless it is about the current utterance."""
        if microturn == self.utterance:
            self._report = _Report(float(played_ms), now)
            self.reports += 1

    def played_ms(self, now: float) -> int | None:
        """ms of the current utterance the user has heard; None when the model is not speaking."""
        if self.utterance is None:
            return None
        report = self._report
        if report is not None and now - report.at <= REPORT_FRESH_S:
            estimate = report.played_ms + (now - report.at) * 1000
            return round(min(estimate, self._sent_ms) if self._sent_ms else estimate)
        return round(max(0.0, self._sent_ms - self.downstream_ms))
