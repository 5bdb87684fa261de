"""An episode: one synthetic call with its inputs per micro-turn and the model's targets.

Generators (lab/tasks/*.py) describe an episode at the event level: what the user typed and
when, the user's audio, the camera frames, and what the model should say (text, starting at which
micro-turn), when it should delegate. `targets()` turns that into the per-micro-turn arrays the
model trains on, with the same text-queue rules as the engine (8 text-in ids per micro-turn, a
typed message = its bytes + EOU), and the evaluation uses the same `Episode` to drive the engine.

Model utterance layout: an utterance "hello" becomes the text-out ids `h e l l | o ␠ EOU PAD` over
two micro-turns starting at its micro-turn t (other micro-turns say SIL), and its audio (the
model's fixed voice) starts with micro-turn t's output. The audio of an utterance may outlast its
text; the next utterance may not start before both are done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.config import FRAME_SIZE, LOG10_MEL_MIN, MEL_FRAMES_PER_MICROTURN, N_MELS
from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ, MicroTurnInput
from inference.text import EOU, PAD, SIL, TextQueue
from inference.voice import ADVANCES as VOICE_ADVANCES
from inference.voice import CUT as VOICE_CUT
from lab.tasks.vocab import word_class
from lab.tasks.voice import model_alignment, model_audio, model_mel

MICROTURN_S = MICROTURN_SAMPLES / SAMPLE_RATE_HZ


@dataclass
class Utterance:
    mt: int  # micro-turn whose output carries its first byte and first audio
    text: str  # what the model says, e.g. "hello" (a trailing space is added on the wire)
    kind: str = "say"  # say | count | answer | hold | result | reply | cue | take | backchannel
    mel: bool = True  # has model-voice audio
    # micro-turns said ahead of the micro-turn it is due in: a schedule's words (scheduled()),
    # said before their time so that they are heard in it. Offline runs are scored at `mt`
    # (when the model says it), live ones at `mt + lead` (when the page hears it)
    lead: int = 0

    @property
    def due(self) -> int:
        """The micro-turn it is due in (heard from its end)."""
        return self.mt + self.lead

    @property
    def wire(self) -> str:
        return self.text + " "


@dataclass
class Episode:
    task: str  # family/subtype, e.g. "timespeak/every"
    n: int  # micro-turns
    start_index: int = 0  # session-clock index of micro-turn 0 (the call may have started earlier)
    audio: np.ndarray | None = None  # float32 [n*3200] user's microphone (None: silence)
    frames: np.ndarray | None = None  # uint8 [n, 40, 40, 3]
    has_frame: np.ndarray | None = None  # bool [n]
    typed: list[tuple[int, str]] = field(default_factory=list)  # (micro-turn, text) typed/results
    say: list[Utterance] = field(default_factory=list)
    delegate: list[int] = field(default_factory=list)  # micro-turns where control = delegate
    # barge-in: from this micro-turn on the model must be silent until `stop_until` (exclusive)
    silence: list[tuple[int, int]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # what the metrics need (task specific)
    # results that arrive only after the model delegated: (delay in micro-turns, text)
    results: list[tuple[int, str]] = field(default_factory=list)
    # what the user was heard to say, for the word-recognition auxiliary loss (training only):
    # (the first micro-turn after a word ended, the word); `heard_all`: every word the user says
    # is listed (so the micro-turns between them are "no word ended" targets)
    heard: list[tuple[int, str]] = field(default_factory=list)
    heard_all: bool = False
    # micro-turns where staying silent is the lesson (just after a cue word's near miss): their
    # silence target is weighted like an event's, as the answer to the cue itself is
    hold: list[int] = field(default_factory=list)
    # a long call in little (training only): before visible micro-turn m the call's clock jumps
    # by k micro-turns nobody sees (minutes of it); `ignore` [a, b): micro-turns with no loss
    # (after a jump, until what the skipped stretch would have shown is back in view)
    skips: list[tuple[int, int]] = field(default_factory=list)
    ignore: list[tuple[int, int]] = field(default_factory=list)

    def clock(self) -> np.ndarray:
        """The session clock's micro-turn index of each visible micro-turn (jumps included)."""
        index = self.start_index + np.arange(self.n, dtype=np.int64)
        for m, k in self.skips:
            index[m:] += k
        return index

    # ---- inputs --------------------------------------------------------------------------------
    def mic(self) -> np.ndarray:
        if self.audio is None:
            return np.zeros(self.n * MICROTURN_SAMPLES, np.float32)
        return self.audio

    def inputs(self) -> list[MicroTurnInput]:
        """The episode as the engine receives it (typed text at its micro-turn)."""
        assert not self.skips, "an episode with skipped stretches is for training only"
        audio = self.mic()
        typed: dict[int, str] = {}
        for mt, text in self.typed:
            typed[mt] = typed.get(mt, "") + text
        out = []
        for m in range(self.n):
            frame = None
            if self.frames is not None and self.has_frame is not None and self.has_frame[m]:
                frame = self.frames[m]
            out.append(
                MicroTurnInput(
                    index=self.start_index + m,
                    audio=np.ascontiguousarray(
                        audio[m * MICROTURN_SAMPLES : (m + 1) * MICROTURN_SAMPLES]
                    ),
                    frame=frame,
                    text=typed.get(m, ""),
                )
            )
        return out

    def text_in(self, slots: int) -> tuple[np.ndarray, dict[int, int]]:
        """Text-in ids [n, slots] as the engine's queue feeds them, and for each typed message's
        micro-turn the micro-turn in which its EOU entered the model."""
        queue = TextQueue(4096)
        ids = np.full((self.n, slots), PAD, np.int64)
        by_mt: dict[int, list[str]] = {}
        for mt, text in self.typed:
            by_mt.setdefault(mt, []).append(text)
        pending: list[tuple[int, int]] = []  # (typed mt, remaining ids before its EOU is taken)
        eou_at: dict[int, int] = {}
        for m in range(self.n):
            for text in by_mt.get(m, []):
                queue.push(text)
                pending.append((m, len(queue.ids)))
            got = queue.take(slots)
            ids[m] = got
            taken = sum(1 for i in got if i != PAD)
            still = []
            for typed_mt, left in pending:
                left -= taken
                if left <= 0:
                    eou_at.setdefault(typed_mt, m)
                else:
                    still.append((typed_mt, left))
            pending = still
        return ids, eou_at


def frames_or_blank(ep: Episode) -> tuple[np.ndarray, np.ndarray]:
    if ep.frames is None or ep.has_frame is None:
        return (
            np.zeros((ep.n, FRAME_SIZE, FRAME_SIZE, 3), np.uint8),
            np.zeros(ep.n, bool),
        )
    return ep.frames, ep.has_frame


@dataclass
class Targets:
    text_in: np.ndarray  # [n, K_in] int64
    text_out: np.ndarray  # [n, K_out] int64
    logmel: np.ndarray  # [n, 16, 80] float32 log10 mel of the model's voice (silence: -7)
    control: np.ndarray  # [n] int64
    text_weight: np.ndarray  # [n] float32
    speaking: np.ndarray  # [n] bool: the model's audio is on in this micro-turn
    word: np.ndarray  # [n] int64 heard-word class (0: none ended, -1: unknown; see word_class)
    valid: np.ndarray  # [n] bool: the micro-turn counts in the loss (not in `ignore`)
    floor: np.ndarray  # [n] int64 where the user is in their turn (`floor_labels`; -1 unknown)
    voice_advance: np.ndarray  # [n] int64 the voice tape's teacher advances (`voice_advances`)


def targets(ep: Episode, k_in: int, k_out: int, event_weight: float = 4.0) -> Targets:
    text_in, _ = ep.text_in(k_in)
    text_out = np.full((ep.n, k_out), PAD, np.int64)
    text_out[:, 0] = SIL
    weight = np.ones(ep.n, np.float32)
    logmel = np.full((ep.n * MEL_FRAMES_PER_MICROTURN, N_MELS), LOG10_MEL_MIN, np.float32)
    speaking = np.zeros(ep.n, bool)
    # when each byte said starts sounding, in micro-turns of the episode (NaN: never voiced)
    sounds = np.full((ep.n, k_out), np.nan)
    for utt in ep.say:
        if utt.mt >= ep.n:
            continue
        ids = [*utt.wire.encode("utf-8"), EOU]
        at = np.full(len(ids), np.nan)
        if utt.mel:
            end = len(model_audio(utt.text)) / MICROTURN_SAMPLES
            at[:] = utt.mt + end
            spoken = model_alignment(utt.text) / MICROTURN_S
            at[: len(spoken)] = utt.mt + spoken
        for j in range(0, len(ids), k_out):
            m = utt.mt + j // k_out
            if m >= ep.n:
                break
            chunk = ids[j : j + k_out]
            text_out[m] = chunk + [PAD] * (k_out - len(chunk))
            sounds[m, : len(chunk)] = at[j : j + k_out]
            weight[m] = event_weight
        # the micro-turn before an utterance decides its timing: weigh it too
        if utt.mt >= 1:
            weight[utt.mt - 1] = max(weight[utt.mt - 1], event_weight / 2)
        if utt.mel:
            mel = model_mel(utt.text)
            f0 = utt.mt * MEL_FRAMES_PER_MICROTURN
            f1 = min(len(logmel), f0 + len(mel))
            logmel[f0:f1] = np.maximum(logmel[f0:f1], mel[: f1 - f0])
            speaking[utt.mt : utt.mt + len(mel) // MEL_FRAMES_PER_MICROTURN] = True
    for a, b in ep.silence:  # barge-in: cut the model's speech
        logmel[a * MEL_FRAMES_PER_MICROTURN : b * MEL_FRAMES_PER_MICROTURN] = LOG10_MEL_MIN
        speaking[a:b] = False
        for m in range(a, min(b, ep.n)):
            if text_out[m, 0] != SIL:
                text_out[m] = PAD
                text_out[m, 0] = SIL
            weight[m] = max(weight[m], event_weight)
    for m in ep.hold:
        if 0 <= m < ep.n:
            weight[m] = max(weight[m], event_weight)
    word = np.full(ep.n, 0 if ep.heard_all else -1, np.int64)
    for m, w in ep.heard:
        if 0 <= m < ep.n:
            word[m] = word_class(w)
    control = np.zeros(ep.n, np.int64)
    for m in ep.delegate:
        if 0 <= m < ep.n:
            control[m] = 1
    valid = np.ones(ep.n, bool)
    for a, b in ep.ignore:
        valid[a:b] = False
    cut = np.zeros(ep.n, bool)
    for a, b in ep.silence:
        cut[a:b] = True
    weight[~valid] = 0.0
    word[~valid] = -1
    return Targets(
        text_in=text_in,
        text_out=text_out,
        logmel=logmel.reshape(ep.n, MEL_FRAMES_PER_MICROTURN, N_MELS),
        control=control,
        text_weight=weight,
        speaking=speaking,
        word=word,
        valid=valid,
        floor=np.where(valid, floor_labels(ep), -1),
        voice_advance=voice_advances(text_out, sounds, cut),
    )


def voice_advances(text_out: np.ndarray, sounds: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """The voice tape's teacher (inference/voice.py): text_out [n, K], when each of its bytes
    starts sounding [n, K] (NaN: never), micro-turns whose audio is cut (barge-in) [n] -> [n] the
    advance at each micro-turn: the bytes whose sound starts before its end, as far as they are
    said and at most ADVANCES - 1 at once; CUT where what is left will not be voiced."""
    times: list[float] = []  # the tape's bytes' times
    voiced = 0
    out = np.zeros(len(text_out), np.int64)
    for m in range(len(text_out)):
        # on the tape: bytes and EOU (voice.on_tape)
        times.extend(
            float(t) for i, t in zip(text_out[m], sounds[m], strict=True) if i not in (PAD, SIL)
        )
        if voiced < len(times) and (cut[m] or np.isnan(times[voiced])):
            out[m] = VOICE_CUT
            voiced = len(times)
            continue
        due = voiced
        while due < len(times) and times[due] < m + 1 and due - voiced < VOICE_ADVANCES - 1:
            due += 1
        out[m] = due - voiced
        voiced = due
    return out


# where the user is in their turn, per micro-turn (the turn-taking families' auxiliary target)
FLOOR_NONE, FLOOR_SPEAKING, FLOOR_PAUSE, FLOOR_OVER = 0, 1, 2, 3
FLOOR_CLASSES = 4
FLOOR_OVER_MTS = 5  # "the turn is over" for this long after the first micro-turn that may answer


def floor_labels(ep: Episode) -> np.ndarray:
    """[n] labels from the episode's turns and pauses (info "turns", "pauses"): speaking while a
    micro-turn holds any of a turn, a pause while it lies wholly in one of the turn's pauses,
    over from the micro-turn that may take the floor (`take_mt`) for 1 s, none elsewhere; -1
    everywhere for an episode without turns."""
    turns = ep.info.get("turns")
    if not turns:
        return np.full(ep.n, -1, np.int64)
    mt = MICROTURN_SAMPLES
    out = np.full(ep.n, FLOOR_NONE, np.int64)
    for tr in turns:
        a, b = tr["start"] // mt, min(ep.n, -(-tr["end"] // mt))
        out[a:b] = FLOOR_SPEAKING
        if tr.get("take_mt") is not None:
            m = tr["take_mt"]
            out[m : min(ep.n, m + FLOOR_OVER_MTS)] = FLOOR_OVER
    for start, end in ep.info.get("pauses", []):
        out[-(-start // mt) : min(ep.n, end // mt)] = FLOOR_PAUSE
    return out
