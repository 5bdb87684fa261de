"""CueSpeak: "when I say C, say R", then the user talks; R right after each C, not after near misses."""

from __future__ import annotations

import numpy as np

from lab.tasks.common import (
    MT,
    add_video,
    early_text,
    fits,
    new_episode,
    place,
    speech_gain,
    typed_eou,
)
from lab.tasks.episode import Episode, Utterance
from lab.tasks.speakers import bank_voice
from lab.tasks.vocab import (
    CUES,
    FILLER,
    RESPONSES,
)
from lab.tasks.voice import Voice, speech

# ---- cuespeak (listening) --------------------------------------------------------------------------


def spoken_words(
    rng: np.random.Generator,
    voice: Voice,
    words: list[str],
    audio: np.ndarray,
    at: int,
    heard: list[tuple[int, str]],
) -> list[tuple[str, int, int]]:
    """Words said one after another from sample `at` (short gaps), each appended to `heard`;
    -> (word, start, end)."""
    out = []
    pos = at
    gain = None
    for w in words:
        clip = speech(w, voice)
        if gain is None:
            gain = speech_gain(rng, clip)
        end = place(audio, clip, pos, gain)
        out.append((w, pos, end))
        heard.append((end // MT + 1, w))
        pos = end + int(rng.integers(300, 2000))  # 20-125 ms
    return out


CUE_KINDS = {"cue": 0.5, "near": 0.3, "none": 0.2}  # what each phrase of the user's talk holds


def cuespeak(rng: np.random.Generator, n: int, kinds: dict[str, float] = CUE_KINDS) -> Episode:
    ep, audio = new_episode("cuespeak", rng, n)
    cue = str(rng.choice(list(CUES)))
    resp = str(rng.choice(RESPONSES))
    t_typed = early_text(rng, n)
    template = rng.choice(
        ["when I say {c}, say {r}", "say {r} when I say {c}", "every time I say {c} say {r}"]
    )
    ep.typed.append((t_typed, template.format(c=cue, r=resp)))
    t0 = typed_eou(ep, t_typed)
    voice = bank_voice(rng)
    pos = (t0 + int(rng.integers(3, 10))) * MT
    expected = []
    while pos < (n - 8) * MT:
        k = int(rng.integers(2, 7))
        words = [str(w) for w in rng.choice(FILLER, size=k)]
        kind = rng.choice(list(kinds), p=list(kinds.values()))
        if kind == "cue":
            words.insert(int(rng.integers(0, k + 1)), cue)
        elif kind == "near":
            words.insert(int(rng.integers(0, k + 1)), str(rng.choice(CUES[cue])))
        said = spoken_words(rng, voice, words, audio, pos, ep.heard)
        for w, _, end in said:
            m = end // MT + 1
            if w == cue:
                if m < n and fits(ep.say, m):
                    ep.say.append(Utterance(m, resp, "cue"))
                    expected.append(m)
            elif w in CUES[cue]:  # a near miss: the silence after it as weighty as an answer
                ep.hold += [m, m + 1]
        pos = said[-1][2] + int(rng.integers(int(0.3 * 16000), int(1.5 * 16000)))
    ep.heard_all = True  # every word the user says was listed (the typed instruction is text)
    ep.info.update(t0=t0, cue=cue, response=resp, expected=expected)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep
