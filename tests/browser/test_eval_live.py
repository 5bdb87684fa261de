"""`make eval-live`: episodes as real calls from Chromium, scored from the audio the page received.

The measurement itself is checked against `--model echo` (whose output is its own input): what the
page hears must line up with what it played, a fixed pipeline delay later, and the page's own-echo
path must put the model's voice back into the microphone at the level asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from infra.embedded_redis import free_port
from lab.eval.suites import episodes_for
from lab.live.cli import main as eval_live
from lab.live.heard import HOP, LiveRun, segments
from lab.live.runner import Echo, run_live
from lab.live.score import (
    BARGE_PARTS,
    TIMING_PARTS,
    barge_parts,
    latency_parts,
    timing_parts,
    turn_events,
    typed_entries,
    typed_late,
)
from lab.tasks.episode import Episode, Utterance
from tests.browser.harness import ARTIFACTS, ServerProcess

pytestmark = pytest.mark.browser
SR = 16_000


def tone(seconds: float, dbfs: float = -10.0, hz: float = 700.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (np.sin(2 * np.pi * hz * t) * 10 ** (dbfs / 20) * np.sqrt(2)).astype(np.float32)


def probe(n: int, bursts: list[tuple[float, float]], dbfs: float = -10.0) -> Episode:
    """An episode whose microphone is silence with tone bursts (start s, length s)."""
    audio = np.zeros(n * 3200, np.float32)
    for at, length in bursts:
        clip = tone(length, dbfs)
        audio[int(at * SR) : int(at * SR) + len(clip)] = clip
    return Episode(task="probe", n=n, audio=audio)


def level_db(x: np.ndarray) -> float:
    """The loudest 10 ms of a burst, in dBFS (its edges and any gap filled in do not count)."""
    frames = x[: len(x) // HOP * HOP].astype(np.float64).reshape(-1, HOP)
    return float(20 * np.log10(np.sqrt((frames**2).mean(axis=1)).max() + 1e-12))


# -- the scoring, on made-up heard audio ----------------------------------------------------------
def test_speech_segments_bridge_gaps_between_words_and_drop_clicks() -> None:
    x = np.zeros(4 * SR, np.float32)
    x[int(0.5 * SR) : int(1.0 * SR)] = tone(0.5)
    x[int(1.1 * SR) : int(1.4 * SR)] = tone(0.3)  # 100 ms later: the same utterance
    x[int(2.0 * SR) : int(2.5 * SR)] = tone(0.5)  # 600 ms later: a new one
    x[int(3.2 * SR) : int(3.2 * SR) + HOP * 2] = tone(HOP * 2 / SR)  # a 20 ms click
    x += np.random.default_rng(0).standard_normal(len(x)).astype(np.float32) * 1e-3  # -60 dBFS
    assert segments(x) == [(0.5, 1.4), (2.0, 2.5)]


def test_turns_are_scored_on_heard_time() -> None:
    ep = Episode(task="turn", n=100)
    ep.info = {
        "turns": [
            {"start": 1 * SR, "end": 3 * SR, "take_mt": 16, "long": True},
            {"start": 8 * SR, "end": 10 * SR, "take_mt": 51, "long": False},
            {"start": 14 * SR, "end": 16 * SR, "take_mt": 81, "long": True},
        ],
        "barge": [{"at": 8 * SR, "stop_mt": 41, "end": 10 * SR}],
    }
    heard = [(2.0, 2.4), (3.45, 7.0), (7.5, 8.3), (10.6, 11.0)]  # the turn at 14 s never taken
    got = turn_events(ep, heard)
    assert got["false_interruption"] == [1.0, 0.0]  # spoke at 2.0 s inside the first turn
    assert got["latency"][:2] == pytest.approx([0.45, 0.6])
    assert got["latency"][2] == float("inf")
    assert got["barge_stop"] == pytest.approx([0.3])  # talking at 8.0 s, quiet from 8.3 s


def test_latency_parts_add_up_to_what_was_heard() -> None:
    ep = Episode(task="turn", n=50)
    ep.info = {"turns": [{"start": 1 * SR, "end": 3 * SR, "take_mt": 16, "long": True}]}
    started = {
        "type": "output_audio.started",
        "microturn": 30,
        "t": 3.52,
        "after_slice_end_ms": 95.0,
        "grace_ms": 60.0,
        "step_ms": 30.0,
    }
    run = LiveRun(ep, heard=[(3.65, 5.0)], events=[started], rtt_ms=10.0)
    parts = latency_parts([run])
    assert parts["turns"] == 1
    assert parts["total"] == pytest.approx(650.0)
    assert sum(v for k, v in parts.items() if k not in ("total", "total_median", "turns")) == (
        pytest.approx(650.0, abs=0.2)
    )
    # the speaking micro-turn's slice ended at 3.52 - 0.095 - 0.005 = 3.42 s; speech ended at
    # 3.0 s and reached the server at 3.005 s, in the slice that closed at 3.02 s: 15 ms of
    # waiting, then two whole micro-turns before the model spoke
    assert parts["model reaction (whole micro-turns)"] == pytest.approx(400.0)
    assert parts["wait for the micro-turn to close"] == pytest.approx(15.0, abs=0.2)
    assert parts["cushion, jitter buffer, playout"] == pytest.approx(130.0, abs=0.2)
    assert parts["grace"] == 60.0 and parts["step and queueing"] == 35.0


def test_barge_parts_split_a_cut_ins_stop_into_the_models_reaction_and_the_path() -> None:
    ep = Episode(task="turn", n=100)
    ep.info = {
        "turns": [{"start": 8 * SR, "end": 10 * SR, "take_mt": 51, "long": False}],
        "barge": [{"at": 8 * SR, "stop_mt": 41, "end": 10 * SR}],
    }
    stopped = {
        "type": "output_audio.stopped",
        "microturn": 41,
        "after_slice_end_ms": 70.0,
        "grace_ms": 40.0,
        "step_ms": 25.0,
    }
    # the user cut in at 8.0 s; the stop's event arrived at 8.5 s, the audio ended at 8.6 s
    early = {**stopped, "t": 7.5}  # an earlier stop, before the cut-in: not this one
    run = LiveRun(
        ep, heard=[(6.0, 7.4), (7.6, 8.6)], events=[early, {**stopped, "t": 8.5}], rtt_ms=10.0
    )
    parts = barge_parts([run])
    assert parts["barge_ins"] == 1
    assert parts["total"] == pytest.approx(600.0)
    assert sum(parts[k] for k in BARGE_PARTS) == pytest.approx(600.0, abs=0.3)
    # the quiet micro-turn's slice ended at 8.5 - 0.07 - 0.005 = 8.425 s; the cut-in reached the
    # server at 8.005 s: 20 ms to close its micro-turn, then two whole micro-turns of talking on
    assert parts["model reaction (whole micro-turns)"] == pytest.approx(400.0)
    assert parts["wait for the micro-turn to close"] == pytest.approx(20.0, abs=0.2)
    assert parts["grace"] == 40.0 and parts["step and queueing"] == 30.0
    assert parts[BARGE_PARTS[5]] == pytest.approx(100.0, abs=0.2)
    # not talking when the user cut in, or no stop event: nothing to decompose
    assert barge_parts([LiveRun(ep, heard=[(8.2, 9.0)], events=[{**stopped, "t": 9.0}])]) == {
        "barge_ins": 0
    }
    assert barge_parts([LiveRun(ep, heard=[(7.6, 8.6)], events=[early])]) == {"barge_ins": 0}


_STARTED = {
    "type": "output_audio.started",
    "microturn": 71,
    "after_slice_end_ms": 80.0,
    "grace_ms": 45.0,
    "step_ms": 30.0,
}


def test_timing_parts_add_up_to_how_late_a_due_word_was_heard() -> None:
    ep = Episode(task="long_timespeak", n=100)
    # due at micro-turn 24 (heard from 5.0 s) and 49 (10.0 s); the second never heard
    ep.say = [Utterance(24, "hello"), Utterance(49, "hello")]
    started = {**_STARTED, "t": 5.17}
    # an onset 2 s before the first due word (not it) and one 290 ms after it
    run = LiveRun(ep, heard=[(3.0, 3.2), (5.29, 5.6)], events=[started], rtt_ms=20.0)
    parts = timing_parts([run])
    assert parts["utterances"] == 1
    assert parts["total"] == pytest.approx(290.0)
    assert sum(parts[k] for k in TIMING_PARTS) == pytest.approx(290.0, abs=0.3)
    # the server's slice ended at 5.17 - 0.08 - 0.01 = 5.08 s: the model on its micro-turn,
    # the server's grid 80 ms behind the page's; no typed text, none late
    assert parts[TIMING_PARTS[0]] == 0.0 and parts[TIMING_PARTS[1]] == 0.0
    assert parts[TIMING_PARTS[2]] == pytest.approx(80.0, abs=0.2)
    assert parts["grace"] == 45.0 and parts["step and queueing"] == 35.0
    assert parts[TIMING_PARTS[6]] == pytest.approx(120.0, abs=0.2)
    # a word a micro-turn late shows as the model's, not the transport's
    late = LiveRun(ep, heard=[(5.49, 5.8)], events=[{**started, "t": 5.37}], rtt_ms=20.0)
    assert timing_parts([late])[TIMING_PARTS[1]] == pytest.approx(200.0)
    assert timing_parts([LiveRun(ep, heard=[], events=[started])]) == {"utterances": 0}


def test_typed_text_that_entered_the_model_late_is_told_apart_from_the_models_timing() -> None:
    ep = Episode(task="long_timespeak", n=100)
    ep.typed = [(10, "say hello every 5 seconds")]
    ep.say = [Utterance(24, "hello")]
    # the server's micro-turn 25 ended at 5.37 - 0.09 = 5.28 s: its grid 80 ms behind the page's
    started = {**_STARTED, "microturn": 25, "t": 5.37}

    def run(committed_mt: int) -> LiveRun:
        committed = {"type": "input_text.committed", "microturn": committed_mt, "chars": 25}
        return LiveRun(ep, heard=[(5.49, 5.8)], events=[started, committed], rtt_ms=20.0)

    # typed in the page's micro-turn 10, read by the model from the server's 10: on time, so
    # the word heard a micro-turn late is the model's
    assert typed_entries(run(10)) == [(10, 0)]
    on_time = timing_parts([run(10)])
    assert on_time[TIMING_PARTS[0]] == 0.0 and on_time[TIMING_PARTS[1]] == pytest.approx(200.0)
    # read from 11: the text was a micro-turn late and the model timed its word right from it
    assert typed_entries(run(11)) == [(10, 1)]
    late = timing_parts([run(11)])
    assert late[TIMING_PARTS[0]] == pytest.approx(200.0) and late[TIMING_PARTS[1]] == 0.0
    assert sum(late[k] for k in TIMING_PARTS) == pytest.approx(late["total"], abs=0.3)
    assert typed_late([run(10), run(11)]) == {
        "messages": 2,
        "late_mt_mean": 0.5,
        "late_mt_max": 1,
        "on_time": 50.0,
    }
    # an /ask goes to the background model and is not announced: the messages still pair up
    ep.typed = [(3, "/ask what is 12*7"), (10, "say hello every 5 seconds")]
    assert typed_entries(run(11)) == [(10, 1)]
    # a server that does not say when text entered: nothing known, nothing blamed on the text
    silent = LiveRun(ep, heard=[(5.49, 5.8)], events=[started], rtt_ms=20.0)
    assert typed_entries(silent) == [] and typed_late([silent]) == {"messages": 0}


def test_a_schedules_word_said_ahead_is_scored_where_it_is_said_offline_and_heard_live() -> None:
    from lab.eval.metrics.timing import eval_timespeak
    from lab.eval.runner import Run
    from lab.tasks.common import scheduled
    from tests.lab.test_tasks import _out

    ep = Episode(task="timespeak/every", n=100)
    ep.say = [scheduled(25, "hello")]  # due in micro-turn 25 (heard from 5.2 s), said in 24
    assert (ep.say[0].mt, ep.say[0].due) == (24, 25)
    assert Run(ep).expected() == [(24, "hello")] and LiveRun(ep).expected() == [(25, "hello")]

    def offline(at: int) -> Run:
        return Run(ep, outputs=[_out(at, "hello ", eou=True)])

    def live(onset: float) -> LiveRun:
        delta = {"type": "output_text.delta", "t": onset - 0.2, "microturn": 24, "text": "hello "}
        return LiveRun(ep, heard=[(onset, onset + 0.4)], events=[delta])

    def score(run: Run) -> float:
        return float(eval_timespeak([run])["macro_accuracy"])

    # said a micro-turn ahead: on time; said when due (as a model without clock_ahead): late
    assert score(offline(24)) == 100.0 and score(offline(26)) == 0.0
    # heard 265 ms past due (v5's mean lateness): a micro-turn late, on time; 465 ms: late
    assert score(live(5.465)) == 100.0 and score(live(5.665)) == 0.0
    # timing_parts measures against when it is due to be heard, not when it is said
    started = {**_STARTED, "t": 5.13}
    parts = timing_parts([LiveRun(ep, heard=[(5.265, 5.6)], events=[started], rtt_ms=20.0)])
    assert parts["total"] == pytest.approx(65.0)


# -- the measurement, through a real call ---------------------------------------------------------
@pytest.fixture(scope="module")
def echo_server() -> Iterator[ServerProcess]:
    server = ServerProcess(
        free_port(), args=["--model", "echo"], log_path=ARTIFACTS / "eval-live-echo-server.log"
    )
    with server:
        yield server


async def test_what_the_page_hears_lines_up_with_what_it_played(echo_server: ServerProcess) -> None:
    bursts = [(1.0, 0.6), (3.3, 0.4), (5.9, 0.8)]
    [run] = await run_live(echo_server.url, [probe(45, bursts)], calls=1, progress=False)
    assert run.error is None
    assert len(run.heard) == len(bursts), run.heard
    delays = [h[0] - at for h, (at, _) in zip(run.heard, bursts, strict=True)]
    # one micro-turn of framing, the grace, the cushion and the jitter buffer: a fixed delay
    assert 0.2 < min(delays) and max(delays) < 0.9, delays
    assert max(delays) - min(delays) < 0.25, delays
    for (a, b), (_, length) in zip(run.heard, bursts, strict=True):
        assert b - a == pytest.approx(length, abs=0.25)
    # the server's timing reaches the page with the events
    for kind in ("output_audio.started", "output_audio.stopped"):
        timed = [e for e in run.events if e["type"] == kind]
        assert timed and all(e["after_slice_end_ms"] >= e["grace_ms"] > 0 for e in timed)
    # and the page's jitter buffer from its stats: it held every 20 ms frame for some time
    assert run.jitter_buffer_ms is not None and 0 < run.jitter_buffer_ms < 500


async def test_own_echo_goes_back_into_the_microphone_at_its_level(
    echo_server: ServerProcess,
) -> None:
    ep = probe(30, [(1.0, 0.15)], dbfs=-10.0)
    # an echo 400 ms late: with a speakerphone's 30-80 ms, the burst's tail and its echo one
    # round trip later sometimes came closer than the segmenter's 250 ms bridge and were heard
    # as one segment (make test failed on it once)
    [run] = await run_live(
        echo_server.url, [ep], calls=1, echo=[Echo(-10.0, 400.0)], progress=False
    )
    assert run.error is None and run.received is not None
    first, second = run.heard[0], run.heard[1]
    delay = first[0] - 1.0
    # the echo model returns the echo of its own output, one round trip plus 400 ms later
    assert second[0] - first[0] == pytest.approx(delay + 0.4, abs=0.1), run.heard

    def burst(seg: tuple[float, float]) -> np.ndarray:
        assert run.received is not None
        return run.received[int(seg[0] * SR) : int(seg[1] * SR)]

    # each pass through the call changes the level the same way (the first pass: -10 dBFS sent,
    # about -13 heard); the echo's -10 dB come on top of that on the second
    path_db = level_db(burst(first)) - (-10.0)
    echo_db = level_db(burst(second)) - level_db(burst(first)) - path_db
    assert echo_db == pytest.approx(-10.0, abs=1.5), (path_db, echo_db)


def test_eval_live_reports_live_beside_offline(
    served_shipped: ServerProcess, tmp_path: Path
) -> None:
    out, md = tmp_path / "live.json", tmp_path / "live.md"
    args = ["--suite", "turn,noise,timespeak", "--episodes", "1", "--length", "60"]
    args += ["--url", served_shipped.url, "--json", str(out), "--markdown", str(md)]
    assert eval_live(args) == 0
    report = json.loads(out.read_text())
    turn = report["suites"]["turn"]
    assert turn["errors"] == []
    expected_turns = len(
        [t for t in episodes_for("turn", 1, 10, 60)[0].info["turns"] if t["take_mt"]]
    )
    assert turn["live"]["turns"] == turn["offline"]["turns"] == expected_turns
    assert "took_floor" in turn["live"] and "took_floor" in turn["offline"]
    assert "barge_ins" in turn["barge_parts"] and turn["jitter_buffer_ms"] > 0
    assert report["suites"]["noise"]["live"]["episodes"] == 1
    # timed speech: its lateness decomposed from the server's events (no turns to time there)
    parts = report["suites"]["timespeak"]["timing_parts"]
    assert "latency_parts" not in report["suites"]["timespeak"]
    if parts["utterances"]:
        assert sum(parts[k] for k in TIMING_PARTS) == pytest.approx(parts["total"], abs=1.0)
        # the server said when the typed instruction entered the model (input_text.committed)
        assert report["suites"]["timespeak"]["typed_late"]["messages"] >= 1
    assert len(report["suites"]["timespeak"]["typed_late_per_call"]) == 1
    assert report["seed_range"] == "dev"
    table = md.read_text()
    assert "| measure | target | offline | live | live met |" in table
    assert "lab voices and sentences: takes the floor (%)" in table
