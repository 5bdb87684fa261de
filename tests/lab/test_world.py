"""The open-speech training world: corpus splits, the speaker bank, the live path as augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from inference.protocol import MICROTURN_SAMPLES
from lab.tasks import corpus, speakers
from lab.tasks.codec import opus_roundtrip_16k
from lab.tasks.registry import make
from lab.tasks.room import own_voice


def test_held_out_sentences_never_reach_training() -> None:
    from lab.live.episodes import OPEN_SENTENCES

    train, dev = set(corpus.sentences("train")), set(corpus.sentences("dev"))
    assert len(train) > 20_000 and len(dev) > 2_000 and not train & dev
    assert all(corpus.split_of(s) == "dev" for s in dev)
    frozen = {s.lower().rstrip(".?!") for s in OPEN_SENTENCES}
    assert not frozen & {s.lower().rstrip(".?!") for s in train | dev}
    # what the bank's speakers say is training text only
    for i in range(0, speakers.SPEAKERS, 17):
        for part in speakers.turn(i, 3):
            words = part.rstrip(",.?!").split()
            assert words, part
    rng = np.random.default_rng(0)
    turns = [corpus.turn_parts(rng, "dev") for _ in range(200)]
    joined = [" ".join(t) for t in turns]
    assert any("um," in t or "uh," in t for t in joined)  # hesitations
    assert all(t[-1][-1] in ".?!" and all(p[-1] == "," for p in t[:-1]) for t in turns)


def test_the_bank_has_speakers_of_both_training_engines_and_none_held_out() -> None:
    engines = {speakers.voice(i).engine for i in range(speakers.SPEAKERS)}
    assert engines == {"espeak-ng", "festival"}  # flite is held out
    assert speakers.voice(5) == speakers.voice(5) and speakers.turn(5, 7) == speakers.turn(5, 7)


def test_a_warped_voice_is_its_render_with_every_frequency_and_duration_scaled() -> None:
    from dataclasses import replace

    from lab.tasks.voice import Voice, speech

    base = Voice("en-us", 170, 50)
    text = "the weather was nice today"
    plain = speech(text, base)
    higher = speech(text, replace(base, warp=1.1))
    assert abs(len(higher) - len(plain) / 1.1) <= 2

    def centroid(x: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(x)) ** 2
        return float((np.fft.rfftfreq(len(x), 1 / 16_000) * power).sum() / power.sum())

    assert 1.05 <= centroid(higher) / centroid(plain) <= 1.15


def test_bank_voices_are_warped_only_where_a_stage_asks() -> None:
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    v = speakers.voice(0)
    assert speakers.warped(v, rng) == v
    assert rng.bit_generator.state == state, "earlier stages' batches are drawn as before"
    with speakers.warping(1.0):
        assert all(speakers.bank_voice(rng).warp in speakers.WARPS for _ in range(20))
    assert speakers.bank_voice(rng).warp == 1.0
    plain = make("turn_corpus", 4, 120)
    warped = make("turn_corpus", 4, 120, voice_warp=1.0)
    assert not np.array_equal(plain.mic(), warped.mic())
    assert np.array_equal(warped.mic(), make("turn_corpus", 4, 120, voice_warp=1.0).mic())


def test_the_live_path_changes_the_microphone_but_not_what_the_model_must_do() -> None:
    clean = make("turn_corpus", 4, 120)
    live = make("turn_corpus", 4, 120, live_path=1.0)
    assert [(u.mt, u.text) for u in clean.say] == [(u.mt, u.text) for u in live.say]
    assert clean.silence == live.silence and clean.heard == live.heard
    assert not np.array_equal(clean.mic(), live.mic())
    assert np.abs(live.mic()).max() <= 1.0 and live.mic().dtype == np.float32
    again = make("turn_corpus", 4, 120, live_path=1.0)
    assert np.array_equal(again.mic(), live.mic())  # deterministic
    nothing = make("turn_corpus", 4, 120, live_path=0.0)
    assert np.array_equal(nothing.mic(), clean.mic())


def test_own_echo_is_the_model_voice_where_it_speaks_and_silent_where_barged_in() -> None:
    ep = make("turn", 2, 200)
    assert ep.silence, "this episode has a barge-in"
    echo = own_voice(ep)
    mt = MICROTURN_SAMPLES
    first = ep.say[0].mt
    assert np.abs(echo[: first * mt]).max() == 0.0  # nothing before it speaks
    assert np.abs(echo[first * mt : (first + 3) * mt]).max() > 0.05
    for a, b in ep.silence:
        assert np.abs(echo[a * mt : b * mt]).max() == 0.0


@pytest.mark.parametrize("bitrate", [16_000, 32_000])
def test_the_training_codec_keeps_timing_and_level(bitrate: int) -> None:
    t = np.arange(16_000) / 16_000
    x = (0.3 * np.sin(2 * np.pi * 300 * t) * (t > 0.5)).astype(np.float32)  # a tone from 0.5 s
    y = opus_roundtrip_16k(x, bitrate)
    assert y.shape == x.shape
    onset = int(np.argmax(np.abs(y) > 0.1))
    assert abs(onset - 8000) < 80  # within 5 ms
    assert 0.7 < np.sqrt(np.mean(y[9000:] ** 2)) / np.sqrt(np.mean(x[9000:] ** 2)) < 1.3


def test_held_out_words_never_reach_training_and_values_are_open() -> None:
    """The read-out families (families/readout.py): a word said back in evaluation was never
    drawn by a training family, and results carry values of many digits."""
    from lab.tasks.families.readout import open_request, open_words, word_split
    from lab.tasks.vocab import SAY_WORDS, VOCABULARY

    train, held = set(open_words("train")), set(open_words("heldout"))
    assert len(train) > 3000 and len(held) > 700 and not train & held
    assert all(word_split(w) == "heldout" for w in held)
    assert not (train | held) & {*VOCABULARY, *SAY_WORDS}
    for seed in range(30):
        ep = make("timespeak_open", seed, 150)
        said = {u.text for u in ep.say}
        assert said <= train, said
        ep = make("timespeak_newword", seed, 150)
        assert {u.text for u in ep.say} <= held and ep.info["word"] in held
        ep = make("delegate_open", seed, 100)
        assert not set(ep.info["value"].split()) & held
    rng = np.random.default_rng(0)
    values = [open_request(rng)[2] for _ in range(300)]
    digits = {len(t) for v in values for t in v.split() if t.isdigit()}
    assert {1, 2, 3, 4, 5} <= digits
    # the value is in the result the background model sends (so it can be read out of it)
    rng = np.random.default_rng(1)
    for _ in range(100):
        _, result, value = open_request(rng, "heldout")
        assert value in result
