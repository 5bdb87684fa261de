"""Held-out episodes through the serving engine: the calls a suite is scored on."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from inference.engine import Engine, EngineConfig
from inference.model import InteractionModel
from inference.protocol import MicroTurnInput, MicroTurnOutput
from inference.reference import ReferenceModel
from lab.tasks.common import AHEAD_MT
from lab.tasks.episode import Episode, Utterance

EVAL_SEED_BASE = 1_000  # eval seeds: (seed + 1) * 1000 + i, far below training's 10_000_000+


VOCODER_DELAY = 400  # samples: the streaming vocoder plays 25 ms behind


@dataclass
class Said:
    mt: int  # micro-turn whose output carried the first byte
    text: str


@dataclass
class Run:
    ep: Episode
    outputs: list[MicroTurnOutput] = field(default_factory=list)
    delegations: list[int] = field(default_factory=list)
    result_typed: list[tuple[int, str]] = field(default_factory=list)  # (mt, text) delivered

    def expected(self, kinds: tuple[str, ...] | None = None) -> list[tuple[int, str]]:
        """(micro-turn, text) of the episode's utterances (of these kinds) as this run is scored:
        offline when the model says them (`Utterance.mt`)."""
        return [
            (u.mt + self.lead(u), u.text) for u in self.ep.say if kinds is None or u.kind in kinds
        ]

    def lead(self, u: Utterance) -> int:
        """Micro-turns from when `u` is scored offline to when this run is scored at: none."""
        return 0

    def schedule_end(self) -> int:
        """The first micro-turn, as this run scores them, where a schedule's word would be due
        after the call has ended: offline a word is said AHEAD_MT before it is due, so one begun
        in the call's last AHEAD_MT micro-turns is due past its end (and cut by it)."""
        return self.ep.n - AHEAD_MT

    def utterances(self) -> list[Said]:
        out: list[Said] = []
        cur: Said | None = None
        for o in self.outputs:
            m = o.index - self.ep.start_index
            if o.text:
                if cur is None:
                    cur = Said(m, "")
                cur.text += o.text
            if cur is not None and (o.end_of_utterance or not o.text):
                cur.text = cur.text.strip()
                if cur.text:
                    out.append(cur)
                cur = None
        if cur is not None and cur.text.strip():
            cur.text = cur.text.strip()
            out.append(cur)
        return out

    def speaking(self) -> np.ndarray:
        return np.array([o.speaking for o in self.outputs], bool)

    def audio(self) -> np.ndarray:
        return np.concatenate([o.audio for o in self.outputs])


def run_episodes(
    model: InteractionModel, episodes: list[Episode], sessions: int = 8, progress: bool = False
) -> list[Run]:
    """Every episode through one Engine, `sessions` calls at a time, stepped in lock-step."""
    engine = Engine(
        ReferenceModel(model),
        EngineConfig(
            max_sessions=sessions, num_threads=torch.get_num_threads(), gc_freeze=False, seed=0
        ),
    )
    runs = [Run(ep) for ep in episodes]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=sum(ep.n for ep in episodes),
            desc="eval",
            unit="mt",
            file=sys.stderr,
            dynamic_ncols=True,
        )
    for g in range(0, len(runs), sessions):
        group = runs[g : g + sessions]
        slots = {engine.open(f"eval-{g + i}"): r for i, r in enumerate(group)}
        inputs = {s: r.ep.inputs() for s, r in slots.items()}
        pending: dict[int, list[tuple[int, str]]] = {s: [] for s in slots}
        for t in range(max(r.ep.n for r in group)):
            due: dict[int, MicroTurnInput] = {}
            for s, r in slots.items():
                if t >= r.ep.n:
                    continue
                inp = inputs[s][t]
                extra = "".join(text for at, text in pending[s] if at == t)
                if extra:
                    r.result_typed.append((t, extra))
                    inp = MicroTurnInput(inp.index, inp.audio, inp.frame, inp.text + extra)
                due[s] = inp
            outs = engine.step_sync(due)
            for s, o in outs.items():
                r = slots[s]
                r.outputs.append(o)
                if o.delegate is not None:
                    r.delegations.append(t)
                    k = len(r.delegations) - 1
                    if k < len(r.ep.results):
                        delay, text = r.ep.results[k]
                        pending[s].append((t + delay, text))
            if bar is not None:
                bar.update(len(due))
        for s in slots:
            engine.close(s)
    if bar is not None:
        bar.close()
    return runs
