"""A scripted model for live calls whose replies are known word by word.

Typed text that contains "talk" starts a reply of REPLY_WORDS words, one a micro-turn ("w00 ",
"w01 ", ...: the word's number is its micro-turn within the reply), each with 200 ms of a tone.
Sound in the microphone louder than BARGE_IN_RMS stops its voice at once (a barge-in), but its
text stream goes on to the end of the reply, silently, as a text head that does not know about the
barge-in would: the transcript must not take those words as heard. So a test knows exactly which
words were said with which audio, and which were heard.

"hello every N seconds" makes it say "hello " (one micro-turn of tone) every N seconds from the
micro-turn that text arrived in, for as long as the call lasts: state a resumed call must keep.

Served in-process by the real engine: `talker_engine()`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from inference.engine import Engine, EngineConfig
from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ, MicroTurnInput, ModelSpec, Reply

REPLY_WORDS = 25  # 5 s
BARGE_IN_RMS = 0.05
VOICE_HZ = 300.0
VOICE_AMPLITUDE = 0.3
EVERY = re.compile(r"hello every ([0-9]+) seconds?")


def word(n: int) -> str:
    return f"w{n:02d} "


def reply_text(words: int = REPLY_WORDS) -> str:
    return "".join(word(n) for n in range(words))


class TalkerSession:
    def __init__(self) -> None:
        self.asked = 0  # "talk" requests not yet started
        self.said: int | None = None  # words of the current reply said so far; None: silent
        self.voiced = False  # its voice is on (a barge-in turns it off; the text goes on)
        self.replies = 0
        self.barge_ins = 0
        self.period: int | None = None  # micro-turns between hellos
        self.since = 0  # the micro-turn the period counts from
        self._every: int | None = None  # seconds asked, not yet started

    def accept(self, inp: MicroTurnInput) -> None:
        if "talk" in inp.text.lower():
            self.asked += 1
        every = EVERY.search(inp.text.lower())
        if every is not None:
            self._every = int(every.group(1))

    def take_turn(self) -> None:
        return None

    def reset(self) -> None:
        self.said, self.voiced = None, False  # what was asked before the first step stands

    def stats(self) -> Mapping[str, int]:
        return {"replies": self.replies, "barge_ins": self.barge_ins}

    def step(self, inp: MicroTurnInput) -> Reply:
        if self._every is not None and inp.text:
            self.period, self.since, self._every = self._every * 5, inp.index, None
        if self.period and self.said is None and inp.index > self.since:
            if (inp.index - self.since) % self.period == 0:
                return Reply("hello ", self._tone(inp.index), True, end_of_utterance=True)
        loud = float(np.sqrt(np.mean(inp.audio**2))) > BARGE_IN_RMS
        if self.voiced and loud:
            self.voiced = False
            self.barge_ins += 1
        if self.said is None and self.asked and not loud:
            self.asked -= 1
            self.said, self.voiced = 0, True
            self.replies += 1
        if self.said is None:
            return Reply("", np.zeros(MICROTURN_SAMPLES, dtype=np.float32), False)
        n = self.said
        self.said = n + 1 if n + 1 < REPLY_WORDS else None
        audio = self._tone(n) if self.voiced else np.zeros(MICROTURN_SAMPLES, dtype=np.float32)
        return Reply(word(n), audio, self.voiced, end_of_utterance=self.said is None)

    @staticmethod
    def _tone(n: int) -> np.ndarray:
        t = (np.arange(MICROTURN_SAMPLES) + n * MICROTURN_SAMPLES) / SAMPLE_RATE_HZ
        return (VOICE_AMPLITUDE * np.sin(2 * np.pi * VOICE_HZ * t)).astype(np.float32)


class Talker:
    spec = ModelSpec(name="talker", frame_size=16)

    def to_device(self, device: torch.device) -> None:
        return None

    def new_state(self, capacity: int, device: torch.device) -> None:
        return None

    def reset(self, state: None, rows: Sequence[int]) -> None:
        return None

    def new_session(self, call_id: str, seed: int) -> TalkerSession:
        return TalkerSession()

    def step(
        self,
        state: None,
        rows: Sequence[int],
        inputs: Sequence[MicroTurnInput],
        sessions: Sequence[object],
    ) -> list[Reply]:
        return [
            session.step(inp)  # type: ignore[attr-defined]
            for inp, session in zip(inputs, sessions, strict=True)
        ]


def talker_engine(max_sessions: int = 2) -> Engine:
    """A started engine serving the talker (stop it after the test)."""
    engine = Engine(
        Talker(), EngineConfig(max_sessions=max_sessions, num_threads=1, gc_freeze=False)
    )
    engine.start()
    return engine
