"""Playback position: how much of the model's current utterance the user has actually heard.

When the model is interrupted, what matters is what reached the user's ear, not what it generated.
Two sources, the better one wins:

- the browser's `output_audio.played {microturn, played_ms}` reports (ms played out since the
  utterance that started at `microturn`), extrapolated by the time since the report, never past
  what was sent; authoritative while fresh;
- otherwise the sender: how much of the utterance the paced track has handed to aiortc, minus an
  estimate of what is still in flight (network and the browser's jitter buffer).

When the utterance stops (it ended, or a barge-in flushed the rest), what the user will have
heard of it is all that was sent (what is in flight still plays); the browser's reports that
arrive after that (its last one is sent when it sees `output_audio.stopped`) refine it, never past
what was sent. The call cuts the model's turn in its transcript to that (agent/transcript.py).
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


@dataclass
class _Ended:
    utterance: int  # the micro-turn it started at
    sent_ms: float  # all of it that was sent
    reported_ms: float | None = None  # the largest browser report that came after the stop


class PlaybackTracker:
    def __init__(self, downstream_ms: float = DOWNSTREAM_MS) -> None:
        self.downstream_ms = downstream_ms
        self.utterance: int | None = None  # micro-turn at which the current utterance started
        self._sent_ms = 0.0
        self._report: _Report | None = None
        self._ended: _Ended | None = None  # the latest utterance that stopped
        self.reports = 0

    def utterance_started(self, microturn: int) -> None:
        self.utterance = microturn
        self._sent_ms = 0.0
        self._report = None

    def utterance_stopped(self) -> int | None:
        """The utterance stopped; returns how much of it the user will have heard: all that was
        sent (call `on_sent` first). None when none was playing."""
        if self.utterance is None:
            return None
        self._ended = _Ended(self.utterance, self._sent_ms)
        self.utterance = None
        return round(self._sent_ms)

    def on_sent(self, position: tuple[int, int] | None) -> None:
        """The outbound track's `sent_position`: (output micro-turn, samples of it sent)."""
        if self.utterance is None or position is None:
            return
        microturn, samples = position
        if microturn >= self.utterance:
            sent = (microturn - self.utterance) * MICROTURN_MS + samples * 1000 / SAMPLE_RATE_HZ
            self._sent_ms = max(self._sent_ms, sent)

    def on_report(self, microturn: int, played_ms: int, now: float) -> int | None:
        """A browser report about the current utterance, or about the one that just stopped:
        then returns how much of that one the user heard, now that the browser said (reports
        sent before the browser saw the stop may arrive after it: the largest counts)."""
        if microturn == self.utterance:
            self._report = _Report(float(played_ms), now)
            self.reports += 1
            return None
        ended = self._ended
        if ended is None or microturn != ended.utterance:
            return None
        self.reports += 1
        ended.reported_ms = max(ended.reported_ms or 0.0, float(played_ms))
        return round(min(ended.reported_ms, ended.sent_ms))

    def played_ms(self, now: float) -> int | None:
        """ms of the current utterance the user has heard; None when the model is not speaking."""
        if self.utterance is None:
            return None
        report = self._report
        if report is not None and now - report.at <= REPORT_FRESH_S:
            estimate = report.played_ms + (now - report.at) * 1000
            return round(min(estimate, self._sent_ms) if self._sent_ms else estimate)
        return round(max(0.0, self._sent_ms - self.downstream_ms))
