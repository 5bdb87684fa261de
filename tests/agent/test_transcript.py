"""The call's transcript: the model's speech cut to what the user heard, marked as cut."""

from __future__ import annotations

from agent.transcript import MAX_PIECES, Transcript
from agent.types import ContextPackage


def speak(transcript: Transcript, start: int, words: list[str]) -> None:
    transcript.utterance_started(start)
    for i, word in enumerate(words):
        transcript.model_text(start + i, word)


WORDS = ["one ", "two ", "three ", "four ", "five "]


def test_an_utterance_heard_to_its_end_is_one_whole_speech_turn() -> None:
    transcript = Transcript()
    transcript.add(0, "user", "text", "count")
    speak(transcript, 3, WORDS)
    transcript.utterance_stopped(8, heard_ms=1000)
    turns = transcript.turns()
    assert [(t.role, t.kind, t.microturn, t.text, t.truncated) for t in turns] == [
        ("user", "text", 0, "count", False),
        ("model", "speech", 3, "one two three four five ", False),
    ]


def test_a_barge_in_keeps_the_words_whose_audio_was_heard_and_marks_the_cut() -> None:
    transcript = Transcript()
    speak(transcript, 10, WORDS)
    transcript.utterance_stopped(15, heard_ms=500)  # 2.5 words' audio: "three" half heard
    (turn,) = transcript.turns()
    assert turn.text == "one two three " and turn.truncated
    assert transcript.heard(10, 300) and transcript.turns()[0].text == "one two "
    assert not transcript.heard(9, 1000), "only the latest utterance is re-cut"
    wire = ContextPackage.new("c", "what did you say", transcript.turns()).to_wire()
    assert wire["conversation"][0]["truncated"] is True


def test_the_rest_of_an_utterance_said_after_its_audio_stopped_is_not_heard() -> None:
    transcript = Transcript()
    speak(transcript, 0, WORDS[:2])
    transcript.utterance_stopped(2, heard_ms=400)
    transcript.model_text(2, "three ")  # the text stream goes on, silently
    transcript.model_text(3, "four ", end=True)
    transcript.model_text(9, "later")  # a new piece of silent text: its own turn
    turns = transcript.turns()
    assert [(t.kind, t.text, t.truncated) for t in turns] == [
        ("speech", "one two ", True),
        ("text", "later", False),
    ]


def test_turns_of_others_during_speech_split_it_and_the_cut_reaches_both_parts() -> None:
    transcript = Transcript()
    transcript.utterance_started(0)
    transcript.model_text(0, "one ")
    transcript.model_text(1, "two ")
    transcript.add(1, "user", "text", "wait")
    transcript.model_text(2, "three ")
    transcript.model_text(3, "four ")
    transcript.utterance_stopped(4, heard_ms=250)
    assert [(t.role, t.text, t.truncated) for t in transcript.turns()] == [
        ("model", "one ", True),
        ("user", "wait", False),
        ("model", "", True),
    ]


def test_silent_text_merges_until_the_end_of_its_utterance_and_nothing_grows_unbounded() -> None:
    transcript = Transcript(max_turns=3)
    transcript.model_text(0, "hel")
    transcript.model_text(1, "lo", end=True)
    transcript.model_text(2, "again")
    assert [t.text for t in transcript.turns()] == ["hello", "again"]
    transcript.utterance_started(5)
    for k in range(MAX_PIECES + 1):
        transcript.model_text(5 + k, "x")
    assert [len(t.text) for t in transcript.turns()] == [5, MAX_PIECES, 1]
    transcript.add(999, "user", "text", "and more")
    assert len(transcript) == 3, "the oldest turns go first"


def test_text_that_is_not_valid_unicode_is_cleaned() -> None:
    transcript = Transcript()
    transcript.add(0, "user", "text", "bad \ud800")
    speak(transcript, 1, ["ok \udc00"])
    ContextPackage.new("c", "x", transcript.turns()).encode()
