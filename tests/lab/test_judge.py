"""The speech judge (lab/eval/metrics/heard.py): pocketsphinx hears the model's voice, numbers are
read as words on both sides, and a phrase counts as done only if its key content was heard too,
offline and in the live report (scored without a browser, on made-up received audio)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.protocol import MICROTURN_SAMPLES, MicroTurnOutput
from lab.eval.metrics.heard import (
    cardinal,
    judge_suite,
    key_heard,
    transcribe,
    word_errors,
)
from lab.eval.metrics.timing import eval_repcount, eval_timespeak
from lab.eval.runner import VOCODER_DELAY, Run
from lab.live.heard import LiveRun, segments
from lab.live.report import markdown_table
from lab.live.score import score_heard
from lab.tasks.episode import Episode, Utterance
from lab.tasks.room import model_voice_played
from lab.tasks.voice import MODEL_VOICE, Voice, speech

SR = 16_000
SENTENCES = [
    "the weather was nice today and we went for a long walk",
    "i think the meeting is at noon but it may have moved",
    "could you tell me what we talked about last week",
]


def word_accuracy(voice: Voice) -> float:
    errors = words = 0
    for text in SENTENCES:
        e, n = word_errors(text, transcribe(speech(text, voice)))
        errors, words = errors + e, words + n
    return 1.0 - errors / words


def test_the_judge_hears_the_teachers_voice_and_hardly_espeak() -> None:
    festival = word_accuracy(MODEL_VOICE)  # festival's slt: ~0.97 measured
    espeak = word_accuracy(Voice("en-us", 170, 50))  # formant synthesis: ~0.3
    assert festival >= 0.8, festival
    assert espeak <= festival - 0.3, (festival, espeak)
    assert transcribe(np.zeros(SR, np.float32)) == ""


def test_numbers_are_compared_as_the_words_they_are_said_with() -> None:
    assert word_errors("14.91 miles", "fourteen point nine one miles") == (0, 5)
    assert word_errors("14.91 miles", "fourteen point nine nine miles") == (1, 5)
    assert key_heard("14.91 miles", "fourteen point nine one miles")
    assert key_heard("14.91 miles", "a fourteen point nine one")  # the number, not the unit
    assert not key_heard("14.91 miles", "fourteen point nine nine miles")
    assert not key_heard("14.91 miles", "miles")
    assert key_heard("7", "seven") and not key_heard("7", "twenty seven")
    assert key_heard("2", "to")  # alike sounds are one word
    assert key_heard("0.62 km", "point six two kilometers")
    # clock times and four digits as festival reads them, and as a recogniser may spell them
    assert key_heard("14:05", "fourteen oh five") and key_heard("14:05", "fourteen of five")
    assert key_heard("2401", "twenty four oh one")
    assert key_heard("2401", "two thousand four hundred and one")
    assert not key_heard("2401", "two thousand four hundred")
    assert cardinal(3015, with_and=True) == ["three", "thousand", "and", "fifteen"]
    assert cardinal(-40) == ["minus", "forty"]
    # words: the content words, each heard somewhere
    assert key_heard("call anna", "call an anna") and not key_heard("call anna", "call")
    assert key_heard("let me think about that for a moment", "think of a moment")


def said_run(ep: Episode, voiced: bool, silent: set[str] | None = None) -> Run:
    """The engine's output for `ep` as if the model said every phrase right on time: its text
    in the phrase's micro-turn, and its audio the teacher's through the vocoder (or silence)."""
    audio = np.zeros(ep.n * MICROTURN_SAMPLES, np.float32)
    texts: dict[int, str] = {}
    for u in ep.say:
        texts[u.mt] = u.text + " "
        if voiced and u.text not in (silent or set()):
            clip = model_voice_played(u.text)
            a = u.mt * MICROTURN_SAMPLES + VOCODER_DELAY
            audio[a : a + len(clip)] = clip[: len(audio) - a]
    outs = [
        MicroTurnOutput(
            index=k,
            text=texts.get(k, ""),
            audio=audio[k * MICROTURN_SAMPLES : (k + 1) * MICROTURN_SAMPLES],
            speaking=bool(np.abs(audio[k * MICROTURN_SAMPLES : (k + 1) * MICROTURN_SAMPLES]).max()),
            end_of_utterance=k in texts,
        )
        for k in range(ep.n)
    ]
    return Run(ep, outputs=outs)


def countdown() -> Episode:
    say = [Utterance(3, "12", "count"), Utterance(13, "7", "count"), Utterance(23, "3", "count")]
    return Episode(task="timespeak/countdown", n=35, say=say)


def test_a_phrase_is_done_only_if_its_words_are_heard() -> None:
    voiced, _ = judge_suite([said_run(countdown(), voiced=True)], eval_timespeak)
    mute, _ = judge_suite([said_run(countdown(), voiced=False)], eval_timespeak)
    assert voiced["utterances"] == mute["utterances"] == 3
    assert voiced["key_accuracy"] == 100.0 and voiced["wer"] == 0.0
    assert mute["key_accuracy"] == 0.0 and mute["wer"] == 100.0
    # the ceiling is the same texts in the teacher's voice, whatever the model's audio was
    assert voiced["ceiling"] == mute["ceiling"] and mute["ceiling"]["key_accuracy"] == 100.0
    assert mute["key_accuracy_of_ceiling"] == 0.0 and voiced["key_accuracy_of_ceiling"] == 100.0
    # the text stream was right in both: only the heard number tells them apart
    assert voiced["done"]["macro_accuracy"] == {"text": 100.0, "text_and_heard": 100.0}
    assert mute["done"]["macro_accuracy"] == {"text": 100.0, "text_and_heard": 0.0}


def test_repcounts_final_answer_must_be_heard() -> None:
    say = [Utterance(3, "10", "count"), Utterance(10, "11", "count"), Utterance(17, "12", "count")]
    say.append(Utterance(26, "12", "answer"))
    ep = Episode(task="repcount/plain", n=35, say=say, info={"q0": 26, "total": 12})
    heard, _ = judge_suite([said_run(ep, voiced=True)], eval_repcount)
    assert heard["done"]["off_by_one_accuracy"] == {"text": 100.0, "text_and_heard": 100.0}
    # the counts heard, the answer silent: a listener never got the total (the last count
    # heard does not stand in for it)
    ep2 = Episode(task="repcount/plain", n=35, say=[*say[:3], Utterance(26, "13", "answer")])
    ep2.info = {"q0": 26, "total": 12}
    muted, _ = judge_suite([said_run(ep2, voiced=True, silent={"13"})], eval_repcount)
    assert muted["done"]["off_by_one_accuracy"] == {"text": 100.0, "text_and_heard": 0.0}


def live_run(ep: Episode, delay_s: float, voiced: bool) -> LiveRun:
    """A live call of `ep` as the page would record it: each phrase's text event on time, its
    audio received `delay_s` after its offline heard time (micro-turn k: (k + 1) x 0.2 s)."""
    received = np.zeros(int((ep.n * 0.2 + 2.0) * SR), np.float32)
    events = []
    for u in ep.say:
        at = (u.mt + 1) * 0.2 + delay_s
        events.append(
            {"type": "output_text.delta", "t": at - 0.1, "microturn": u.mt, "text": u.text}
        )
        if voiced:
            clip = model_voice_played(u.text) * 0.5
            received[int(at * SR) : int(at * SR) + len(clip)] = clip
    received += np.random.default_rng(0).standard_normal(len(received)).astype(np.float32) * 1e-4
    return LiveRun(ep, heard=segments(received), events=events, received=received)


def test_the_live_report_says_what_the_page_heard() -> None:
    ep = Episode(task="timespeak/countdown", n=35, say=[Utterance(3, "14.91 miles", "result")])
    ep.say.append(Utterance(20, "12", "count"))
    got = score_heard([live_run(ep, 0.1, voiced=True)], eval_timespeak)["heard"]
    assert got["utterances"] == 2 and got["key_accuracy"] == 100.0
    assert [h for _, h in got["examples"]] == ["fourteen point nine one miles", "twelve"]
    assert got["done"]["macro_accuracy"] == {"text": 100.0, "text_and_heard": 100.0}
    # text on time but no audio heard: the text stream scores it, the listener does not
    quiet = score_heard([live_run(ep, 0.1, voiced=False)], eval_timespeak)["heard"]
    assert quiet["key_accuracy"] == 0.0
    assert quiet["done"]["macro_accuracy"] == {"text": 100.0, "text_and_heard": 0.0}
    offline = judge_suite([said_run(ep, voiced=True)], eval_timespeak)[0]
    report = {"suites": {"timespeak": {"live": {"heard": got}, "offline": {"heard": offline}}}}
    table = markdown_table(report)
    assert "Words heard (pocketsphinx)" in table
    row = next(line for line in table.splitlines() if line.startswith("| timespeak |"))
    assert row.count("100.0 / 0.0 of 2") == 2, row  # key content / WER, offline and live


@pytest.mark.parametrize("delay_s", [0.05, 0.3])
def test_live_phrases_are_cut_from_the_received_audio_at_their_heard_onset(
    delay_s: float,
) -> None:
    ep = Episode(task="timespeak/countdown", n=35, say=[Utterance(5, "7", "count")])
    got = score_heard([live_run(ep, delay_s, voiced=True)], eval_timespeak)["heard"]
    assert got["examples"] == [["7", "seven"]]
