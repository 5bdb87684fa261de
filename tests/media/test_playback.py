"""Playback position: from the sender's progress, or from the browser's reports when fresh."""

from media.playback import DOWNSTREAM_MS, PlaybackTracker


def test_not_speaking_means_no_position() -> None:
    tracker = PlaybackTracker()
    tracker.on_sent((3, 1600))
    assert tracker.played_ms(0.0) is None


def test_sender_estimate_counts_sent_audio_minus_what_is_in_flight() -> None:
    tracker = PlaybackTracker()
    tracker.utterance_started(10)
    tracker.on_sent((9, 3200))  # the tail of the previous utterance does not count
    assert tracker.played_ms(0.0) == 0
    tracker.on_sent((12, 1600))  # two whole micro-turns and half of the third
    assert tracker.played_ms(0.0) == int(500 - DOWNSTREAM_MS)


def test_fresh_browser_report_wins_and_is_extrapolated_but_never_past_what_was_sent() -> None:
    tracker = PlaybackTracker()
    tracker.utterance_started(4)
    tracker.on_sent((6, 0))  # 400 ms sent
    tracker.on_report(4, 250, now=100.0)
    assert tracker.played_ms(100.0) == 250
    assert tracker.played_ms(100.1) == 350
    assert tracker.played_ms(100.5) == 400, "capped by what the sender has sent"


def test_stale_or_foreign_reports_give_way_to_the_sender() -> None:
    tracker = PlaybackTracker()
    tracker.utterance_started(4)
    tracker.on_sent((7, 0))  # 600 ms sent
    tracker.on_report(2, 50, now=0.0)  # about an older utterance: ignored
    assert tracker.reports == 0
    tracker.on_report(4, 100, now=0.0)
    assert tracker.played_ms(10.0) == int(600 - DOWNSTREAM_MS), "a 10 s old report is stale"


def test_a_new_utterance_starts_from_zero() -> None:
    tracker = PlaybackTracker()
    tracker.utterance_started(1)
    tracker.on_sent((5, 0))
    tracker.utterance_stopped()
    tracker.utterance_started(20)
    assert tracker.played_ms(0.0) == 0


def test_a_stopped_utterance_was_heard_as_far_as_it_was_sent_then_as_the_browser_says() -> None:
    tracker = PlaybackTracker()
    tracker.utterance_started(4)
    tracker.on_sent((9, 1600))  # 1100 ms sent; the rest was flushed
    assert tracker.utterance_stopped() == 1100
    assert tracker.utterance_stopped() is None, "only once"
    assert tracker.on_report(4, 700, now=0.0) == 700, "a report sent before the stop arrived"
    assert tracker.on_report(4, 1050, now=0.1) == 1050, "the browser's last word"
    assert tracker.on_report(4, 900, now=0.2) == 1050, "the largest report counts"
    assert tracker.on_report(4, 5000, now=0.3) == 1100, "never more than was sent"
    assert tracker.on_report(3, 100, now=0.4) is None
