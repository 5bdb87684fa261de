"""Small talk (never delegated) and idle calls (no instruction: stay silent)."""

from __future__ import annotations

import numpy as np

from lab.tasks.common import (
    add_distractor_speech,
    add_video,
    early_text,
    instruct,
    new_episode,
)
from lab.tasks.episode import Episode, Utterance
from lab.tasks.speakers import bank_voice

# ---- small talk (never delegated) ------------------------------------------------------------------
CHAT = {
    "thank you": "you're welcome",
    "thanks": "you're welcome",
    "thanks a lot": "you're welcome",
    "how are you": "i'm fine",
    "how are you doing?": "i'm fine",
    "are you there?": "yes",
    "can you hear me?": "yes",
    "good morning": "good morning",
    "bye": "goodbye",
    "goodbye": "goodbye",
}
GREETINGS = [
    "hello",
    "hi",
    "hey",
    "hello there",
    "hi there",
    "hello model",
    "hey there",
    "hello again",
    "hi model",
    "hello everyone",
    "hey you",
    "hello!",
]


def chat_message(rng: np.random.Generator) -> tuple[str, str]:
    if rng.random() < 0.45:
        msg = str(rng.choice(GREETINGS))
        if rng.random() < 0.3:
            msg = msg.capitalize()
        return msg, "hi there"
    msg = str(rng.choice(list(CHAT)))
    return msg, CHAT[msg]


def chat(rng: np.random.Generator, n: int, spoken: bool = False) -> Episode:
    ep, audio = new_episode("chat", rng, n)
    msg, reply = chat_message(rng)
    t_typed = early_text(rng, n)
    voice = bank_voice(rng) if spoken else None
    t0 = instruct(ep, rng, audio, t_typed, msg, voice)
    ep.say.append(Utterance(t0, reply, "reply"))
    ep.info.update(t0=t0, message=msg)
    add_video(rng, ep)
    add_distractor_speech(rng, ep, audio, p=0.3)
    ep.audio = audio
    return ep


def idle(rng: np.random.Generator, n: int) -> Episode:
    ep, audio = new_episode("idle", rng, n)
    add_video(rng, ep, p_motion=0.8)
    add_distractor_speech(rng, ep, audio, p=0.6)
    ep.audio = audio
    return ep


def noisy_room(rng: np.random.Generator, n: int) -> Episode:
    """Nobody talks to the model: a fan, music, far-off babble or a TV fills the room at
    -45..-15 dBFS (lab/tasks/room.py); it stays silent throughout."""
    from lab.tasks.room import at_dbfs, noise, reverberate

    ep, audio = new_episode("noisy_room", rng, n)
    x = noise(rng, len(audio))
    if rng.random() < 0.5:
        x = reverberate(rng, x)
    ep.audio = audio + at_dbfs(x, float(rng.uniform(-45, -15)))
    add_video(rng, ep, p_motion=0.5)
    return ep
