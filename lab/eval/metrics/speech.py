"""Speech quality: STOI of the model's phrases against their teacher rendering."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from inference.protocol import MICROTURN_SAMPLES
from lab.eval.metrics.timing import norm
from lab.eval.runner import VOCODER_DELAY, Run, Said
from lab.tasks.episode import Utterance


# ---- the model's phrases ---------------------------------------------------------------------------
def find_phrases(
    run: Run, expected: list[Utterance] | None = None, tol: int = 1
) -> list[tuple[Utterance, Said]]:
    """The model's phrases said with the right text at the right time: each expected utterance
    that has a voice (`ep.say` unless given), paired with the first said utterance of the same
    text within `tol` micro-turns. Both judges of its voice (STOI here, the words heard in
    heard.py) cut its audio from there."""
    said = run.utterances()
    out = []
    for u in run.ep.say if expected is None else expected:
        if not u.mel:
            continue
        hit = next(
            (
                s
                for s in said
                if norm(s.text) == norm(u.text) and abs(s.mt - u.mt - run.lead(u)) <= tol
            ),
            None,
        )
        if hit is not None:
            out.append((u, hit))
    return out


def phrase_start(said: Said) -> int:
    """The sample of an offline run's audio where a said utterance's voice starts."""
    return said.mt * MICROTURN_SAMPLES + VOCODER_DELAY


# ---- speech quality --------------------------------------------------------------------------------
def stoi_of_phrases(runs: list[Run], limit_s: float = 60.0) -> dict[str, Any]:
    """STOI of the model's audio for phrases it said with the right text at the right time,
    against the phrase's reference rendering in the model's voice (concatenated)."""
    from pystoi import stoi

    from lab.tasks.voice import model_audio

    refs, outs = [], []
    total = 0
    for r in runs:
        audio = None
        for u, hit in find_phrases(r):
            if total > limit_s * 16_000:
                break
            if audio is None:
                audio = r.audio()
            ref = model_audio(u.text)
            a = phrase_start(hit)
            seg = audio[a : a + len(ref)]
            if len(seg) < len(ref):
                continue
            refs.append(ref)
            outs.append(seg)
            total += len(ref)
    if not refs:
        return {"stoi": None, "phrases": 0}
    gap = np.zeros(1600, np.float32)
    ref = np.concatenate([np.concatenate([x, gap]) for x in refs])
    out = np.concatenate([np.concatenate([x, gap]) for x in outs])
    return {
        "stoi": round(float(stoi(ref, out, 16_000, extended=False)), 3),
        "phrases": len(refs),
        "seconds": round(len(ref) / 16_000, 1),
    }


def vocoder_ceiling(texts: list[str]) -> float:
    """STOI of reference mel -> streaming Griffin-Lim (what a perfect flow head would reach)."""
    from pystoi import stoi

    from inference.vocoder import CTX_FRAMES, TAIL_SAMPLES, StreamingGriffinLim
    from lab.tasks.voice import model_audio, model_mel

    voc = StreamingGriffinLim()
    refs, outs = [], []
    for text in texts:
        mel = torch.from_numpy(model_mel(text)).view(-1, 16, 80)
        tail = torch.zeros(1, TAIL_SAMPLES)
        ctx = torch.full((1, CTX_FRAMES, 80), -7.0)
        chunks = []
        for k in range(mel.shape[0] + 1):
            m = mel[k : k + 1] if k < mel.shape[0] else torch.full((1, 16, 80), -7.0)
            a, tail, ctx = voc.stream(m, tail, ctx, 8)
            chunks.append(a[0].numpy())
        ref = model_audio(text)
        out = np.concatenate(chunks)[VOCODER_DELAY : VOCODER_DELAY + len(ref)]
        refs.append(np.concatenate([ref, np.zeros(1600, np.float32)]))
        outs.append(np.concatenate([out, np.zeros(1600, np.float32)]))
    return round(float(stoi(np.concatenate(refs), np.concatenate(outs), 16_000)), 3)
