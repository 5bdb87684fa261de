"""How the model reads the period of "say W every N seconds" (issue 30).

    python -m lab.eval.periods [--checkpoint DIR] [--periods 7,11,eleven,14,...]
    python -m lab.eval.periods --long [--checkpoint DIR] [--seed 2] [--length 600]
    python -m lab.eval.periods --slip [--checkpoint DIR]

Teacher-forced: one quiet call per wording, the instruction typed at micro-turn 2, the model's own
outputs silence; prints the seconds from the instruction's last micro-turn to the first micro-turn
whose first byte is not silence under greedy decoding (what the serving engine would say). A
model that reads N right says W N seconds after; the v3 model said it 9 s after "every 20
seconds", and running free it then repeats at multiples of its reading.

--long: the evaluation's 10-minute calls (`long_timespeak`, 16 of the seed's episodes, cut at
`--length` micro-turns and before any later "stop" or change), teacher-forced with every W at
the micro-turn this model says it (its config `clock_ahead` before it is due); prints, by how far
into the call a W is due, the model's probability of starting to speak right then. Greedy
decoding starts only above 0.5; a probability that falls as the call goes on is a schedule the
model loses running free (the v3 model: 0.93 in the first 100 micro-turns, about 0.5 after 200).

--slip: "say hello every N seconds" with the first W on time and the second moved by a few
micro-turns, as a model's own slip running free; prints P(onset) where the third is due on the
instruction's grid and a period after the moved W. v3 gave 0.0-0.2 at both for a 5 s period.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import Tensor

from inference.checkpoint import load
from inference.model import InteractionModel, speaks
from inference.protocol import MICROTURN_SAMPLES
from inference.text import SIL
from lab.tasks.batch import collate
from lab.tasks.common import PER_S, instruct, new_episode
from lab.tasks.episode import Episode, Utterance

PERIODS = ["7", "10", "11", "eleven", "12", "14", "fourteen", "16", "18", "20", "twenty"]


def _typed_call(text: str, n: int, seed: int = 5) -> tuple[Episode, int]:
    """A quiet call with `text` typed at micro-turn 2 -> (episode, the instruction's end)."""
    rng = np.random.default_rng(seed)
    ep, audio = new_episode("periods", rng, n)
    ep.start_index = 0
    t0 = instruct(ep, rng, audio, 2, text, None)
    ep.audio = audio
    return ep, t0


def _p_onset(model: InteractionModel, ep: Episode) -> Tensor:
    """P(the first output byte is not silence) at each micro-turn, teacher-forced: [n]."""
    with torch.no_grad():
        logits = model(collate([ep], model.cfg).seq).text_logits[0, :, 0].float()
    return 1.0 - logits.softmax(-1)[:, SIL]


def first_onset_s(model: InteractionModel, text: str, n: int = 160, seed: int = 5) -> float | None:
    """Seconds from the typed instruction's end to the model's first greedy onset (None: silent)."""
    ep, t0 = _typed_call(text, n, seed)
    batch = collate([ep], model.cfg)
    with torch.no_grad():
        out = model(batch.seq)
    said = speaks(out.text_logits[0].float().argmax(-1)).tolist()  # greedy, as the engine
    first = next((m for m in range(t0 + 1, n) if said[m]), None)
    # a model with clock_ahead says a schedule's W ahead of the micro-turn it is due in
    return None if first is None else (first + model.cfg.clock_ahead - t0) / PER_S


def after_slip(
    model: InteractionModel, period: int, shift: int, n: int = 200
) -> tuple[float, float]:
    """(P(onset) at the third W's due micro-turn on the grid, a period after the second W), the
    second W said `shift` micro-turns off its grid, teacher-forced (--slip)."""
    ep, t0 = _typed_call(f"say hello every {period} seconds", n)
    p5 = period * PER_S
    second = t0 + 2 * p5 + shift
    ahead = model.cfg.clock_ahead  # its Ws said this many micro-turns before they are due
    ep.say = [Utterance(t0 + p5 - ahead, "hello", "say"), Utterance(second - ahead, "hello", "say")]
    p_speak = _p_onset(model, ep)
    return float(p_speak[t0 + 3 * p5 - ahead]), float(p_speak[second + p5 - ahead])


def onset_at_due(
    model: InteractionModel, seed: int = 2, length: int = 600, band: int = 100
) -> dict[int, list[float]]:
    """{band start micro-turn: P(start speaking) at each due W in it}, teacher-forced (--long)."""
    from lab.eval.suites import episodes_for

    out: dict[int, list[float]] = {}
    ahead = model.cfg.clock_ahead  # its Ws said this many micro-turns before they are due
    for ep in episodes_for("long_timespeak", 16, seed):
        change = ep.info.get("change")
        n = min(length, change["mt"] if change else length)
        cut = Episode(
            task=ep.task,
            n=n,
            start_index=ep.start_index,
            typed=[(m, t) for m, t in ep.typed if m < n],
            say=[Utterance(u.due - ahead, u.text, u.kind) for u in ep.say if u.due - ahead < n],
            audio=None if ep.audio is None else ep.audio[: n * MICROTURN_SAMPLES],
            frames=None if ep.frames is None else ep.frames[:n],
            has_frame=None if ep.has_frame is None else ep.has_frame[:n],
        )
        p_speak = _p_onset(model, cut)
        for u in cut.say:
            out.setdefault(u.mt // band * band, []).append(float(p_speak[u.mt]))
    return dict(sorted(out.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint directory (default: shipped)")
    ap.add_argument("--periods", default=",".join(PERIODS), help="comma-separated N as typed")
    ap.add_argument("--word", default="hello")
    ap.add_argument("--long", action="store_true", help="P(onset) at due Ws of 10-minute calls")
    ap.add_argument("--seed", type=int, default=2, help="--long: the evaluation seed")
    ap.add_argument("--length", type=int, default=600, help="--long: micro-turns per call")
    ap.add_argument("--slip", action="store_true", help="P(onset) after a W said off time")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = load(args.checkpoint).eval()
    if args.slip:
        print("| period, s | slip, micro-turns | on the grid | a period after the slip |")
        print("|---|---|---|---|")
        for period in (5, 7, 9):
            for shift in (0, 2, -2, 3, -3):
                grid, said = after_slip(model, period, shift)
                print(f"| {period} | {shift:+d} | {grid:.2f} | {said:.2f} |")
        return 0
    if args.long:
        print("| W due at, s | Ws | mean P(onset) | share > 0.5 |\n|---|---|---|---|")
        for start, ps in onset_at_due(model, args.seed, args.length).items():
            a = np.array(ps)
            lo, hi = start // PER_S, (start + 100) // PER_S
            print(f"| {lo}-{hi} | {len(a)} | {a.mean():.2f} | {np.mean(a > 0.5):.2f} |")
        return 0
    print("| typed | first W after, s |\n|---|---|")
    for n in args.periods.split(","):
        got = first_onset_s(model, f"say {args.word} every {n} seconds")
        print(f"| every {n} seconds | {'silent' if got is None else f'{got:.1f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
