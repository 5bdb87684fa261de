"""The classic harness's turn logic, as a baseline on the same turn-taking episodes.

A real voice-activity detector (Silero VAD, from the `silero-vad` package, which ships its model)
runs on the microphone in 32 ms chunks, and silence-threshold rules decide the turns, as
VAD-based stacks do:

    end of the user's turn  speech seen, then VAD probability < 0.35 for `min_silence_ms`
                            -> the assistant takes the floor at the next micro-turn boundary
                            (speech recognition, the language model and TTS are assumed to take
                            no time at all: a generous baseline)
    barge-in                while the assistant speaks, VAD probability >= 0.5 for
                            `interrupt_ms` -> it stops at the next micro-turn boundary

Its speaking track goes through the same latency / false-interruption / barge-in scoring as the
model's (lab/eval/metrics/turns.py `turn_events`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lab.tasks.common import utter_mts
from lab.tasks.episode import Episode
from lab.tasks.families.turn import LONG_REPLY, TAKE

CHUNK = 512  # samples at 16 kHz (32 ms), what Silero VAD takes
SPEECH_ON = 0.5
SPEECH_OFF = 0.35


def vad_probs(audio: np.ndarray, model: Any) -> np.ndarray:
    model.reset_states()
    n = len(audio) // CHUNK
    x = torch.from_numpy(np.ascontiguousarray(audio[: n * CHUNK])).view(n, CHUNK)
    with torch.no_grad():
        return np.array([float(model(x[i], 16_000)) for i in range(n)])


def harness_track(
    ep: Episode, probs: np.ndarray, min_silence_ms: float, interrupt_ms: float
) -> np.ndarray:
    """The harness's speaking track [n micro-turns] for one episode."""
    chunk_s = CHUNK / 16_000
    speaking = np.zeros(ep.n, bool)
    turns = ep.info.get("turns", [])
    in_speech = False
    silence_s = 0.0
    voiced_s = 0.0
    talk_until = -1  # micro-turn (exclusive) the assistant's current reply lasts to
    taken: set[int] = set()
    for i, p in enumerate(probs):
        t = (i + 1) * chunk_s  # decision time: the end of this chunk
        k = int(t // 0.2)
        if k >= ep.n:
            break
        talking = k < talk_until
        if p >= SPEECH_ON:
            in_speech = True
            silence_s = 0.0
            voiced_s += chunk_s
            if talking and voiced_s >= interrupt_ms / 1000:
                # output of slice k is silent: heard stopping at (k + 1) * 0.2
                speaking[k:talk_until] = False
                talk_until = k
        elif p < SPEECH_OFF:
            voiced_s = 0.0
            if in_speech:
                silence_s += chunk_s
                if silence_s >= min_silence_ms / 1000:
                    in_speech = False
                    # end of turn: reply with what this turn called for
                    idx = max(
                        (j for j, tr in enumerate(turns) if tr["start"] / 16_000 <= t), default=None
                    )
                    long = idx is not None and turns[idx]["long"] and idx not in taken
                    if idx is not None:
                        taken.add(idx)
                    if not talking:
                        talk_until = k + utter_mts(LONG_REPLY if long else TAKE)
                        speaking[k:talk_until] = True
    return speaking


def vad_baseline(
    episodes: list[Episode],
    settings: tuple[tuple[float, float], ...] = ((500, 200), (300, 200), (800, 200)),
) -> dict[str, Any]:
    from silero_vad import load_silero_vad

    from lab.eval.metrics.turns import summarize_turns, turn_events

    torch.set_num_threads(1)
    model = load_silero_vad()
    probs = [vad_probs(ep.mic(), model) for ep in episodes]
    out: dict[str, Any] = {}
    for min_silence, interrupt in settings:
        events = [
            turn_events(ep, harness_track(ep, p, min_silence, interrupt))
            for ep, p in zip(episodes, probs, strict=True)
        ]
        out[f"silence_{int(min_silence)}ms"] = summarize_turns(events)
    out["rules"] = (
        "Silero VAD (32 ms chunks, on 0.5 / off 0.35); end of turn after N ms of silence; barge-in after 200 ms of speech; zero ASR/LLM/TTS time"
    )
    return out
