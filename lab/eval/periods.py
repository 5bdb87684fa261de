"""How the model reads the period of "say W every N seconds" (issue 30).

    python -m lab.eval.periods [--checkpoint DIR] [--periods 7,11,eleven,14,...]

Teacher-forced: one quiet call per wording, the instruction typed at micro-turn 2, the model's own
outputs silence; prints the seconds from the instruction's last micro-turn to the first micro-turn
whose first byte is not silence under greedy decoding (what the serving engine would say). A
model that reads N right says W N seconds after; the v3 model said it 9 s after "every 20
seconds", and running free it then repeats at multiples of its reading.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from inference.checkpoint import load
from inference.model import InteractionModel, speaks
from lab.tasks.batch import collate
from lab.tasks.common import PER_S, instruct, new_episode

PERIODS = ["7", "10", "11", "eleven", "12", "14", "fourteen", "16", "18", "20", "twenty"]


def first_onset_s(model: InteractionModel, text: str, n: int = 160, seed: int = 5) -> float | None:
    """Seconds from the typed instruction's end to the model's first greedy onset (None: silent)."""
    rng = np.random.default_rng(seed)
    ep, audio = new_episode("periods", rng, n)
    ep.start_index = 0
    t0 = instruct(ep, rng, audio, 2, text, None)
    ep.audio = audio
    batch = collate([ep], model.cfg)
    with torch.no_grad():
        out = model(batch.seq)
    said = speaks(out.text_logits[0].float().argmax(-1)).tolist()  # greedy, as the engine
    first = next((m for m in range(t0 + 1, n) if said[m]), None)
    return None if first is None else (first - t0) / PER_S


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint directory (default: shipped)")
    ap.add_argument("--periods", default=",".join(PERIODS), help="comma-separated N as typed")
    ap.add_argument("--word", default="hello")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = load(args.checkpoint).eval()
    print("| typed | first W after, s |\n|---|---|")
    for n in args.periods.split(","):
        got = first_onset_s(model, f"say {args.word} every {n} seconds")
        print(f"| every {n} seconds | {'silent' if got is None else f'{got:.1f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
