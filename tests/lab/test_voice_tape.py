"""The voice tape's teacher: festival's timings of the model voice and the advances drawn from them
(lab/tasks/voice.model_alignment, lab/tasks/episode.voice_advances)."""

from __future__ import annotations

import numpy as np

from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ
from inference.text import EOU, PAD, SIL
from inference.voice import ADVANCES, CUT
from lab.tasks.episode import Episode, Utterance, targets, voice_advances
from lab.tasks.voice import model_alignment, model_audio


def test_alignment_follows_the_words_festival_speaks() -> None:
    text = "it is 14.91 miles"
    times = model_alignment(text)
    seconds = len(model_audio(text)) / SAMPLE_RATE_HZ
    assert times.shape == (len(text),)
    assert np.all(np.diff(times) >= 0) and times[0] >= 0 and times[-1] <= seconds
    # "14.91" is "fourteen point nine one": the longest stretch of the phrase
    number = times[text.index("1") + 5] - times[text.index("1")]
    assert number > 0.4 * seconds, (number, seconds)
    assert times[text.index("m")] > times[text.index("9")] > times[text.index("4")]


def test_advances_voice_each_byte_when_its_sound_starts() -> None:
    text_out = np.full((6, 4), PAD)
    text_out[:, 0] = SIL
    text_out[1] = [97, 98, 99, 32]
    text_out[2] = [EOU, PAD, PAD, PAD]
    sounds = np.full((6, 4), np.nan)
    sounds[1] = [1.1, 1.5, 2.2, 3.0]  # a, b in micro-turn 1; c in 2; the space and EOU in 3
    sounds[2, 0] = 3.0
    adv = voice_advances(text_out, sounds, np.zeros(6, bool))
    assert adv.tolist() == [0, 2, 1, 2, 0, 0]


def test_a_barge_in_cuts_what_is_left_and_a_text_only_reply_is_never_voiced() -> None:
    text_out = np.full((5, 4), PAD)
    text_out[:, 0] = SIL
    text_out[0] = [97, 98, 99, 100]
    text_out[3] = [101, EOU, PAD, PAD]
    sounds = np.full((5, 4), np.nan)
    sounds[0] = [0.0, 1.0, 2.0, 3.0]
    cut = np.array([False, False, True, True, False])
    adv = voice_advances(text_out, sounds, cut)
    assert adv.tolist() == [1, 1, CUT, CUT, 0]  # micro-turn 3's bytes have no sound (NaN)
    # more bytes due at once than the head may choose: the rest follow in the next micro-turn
    many = np.full((4, 4), PAD)
    many[:3] = [97, 98, 99, 100]
    at = np.full((4, 4), 2.5)  # 12 bytes said by micro-turn 2, all due in it
    adv = voice_advances(many, at, np.zeros(4, bool))
    assert ADVANCES - 1 == 8 and adv.tolist() == [0, 0, 8, 4]


def test_an_episode_voices_every_byte_it_says() -> None:
    ep = Episode(task="chat/test", n=30)
    ep.say = [Utterance(2, "the answer is 14.91 miles"), Utterance(20, "hi", mel=False)]
    t = targets(ep, 8, 4)
    said = len(b"the answer is 14.91 miles ") + 1
    first = t.voice_advance[:20]
    assert first.sum() == said and (first >= 0).all() and (first < ADVANCES).all()
    # the last byte (EOU) is voiced when the audio ends
    end = 2 + len(model_audio("the answer is 14.91 miles")) / MICROTURN_SAMPLES
    assert np.flatnonzero(np.cumsum(first) == said)[0] == int(end)
    assert t.voice_advance[20] == CUT  # a reply with no audio: its bytes are dropped
