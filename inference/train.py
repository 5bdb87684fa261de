"""Train the reference interaction model on the procedural tasks, in resumable stages.

    python -m inference.train --stage text --minutes 60            # or: make train
    python -m inference.train --stage text --minutes 60 --resume   # continue where it stopped

A run directory (default runs/small/) holds `state.pt` (model, optimiser, step, stage, recipe),
written every `--save-every` steps and at the end, so a stopped run resumes exactly: batches are a
pure function of (seed, step), so a resumed run sees the same data it would have seen. `--export`
writes the model as a servable checkpoint (config.json + model.safetensors, bf16 by default).

Recipe (shared/notes/model-notes.md): AdamW lr 3e-3, betas (0.9, 0.95), weight decay 0.01, 50-step
warm-up, cosine decay to 0.1x over the stage's steps, grad clip 1.0, bf16 autocast on CPUs whose
bf16 matmuls are fast (`--bf16 auto` times one; an AVX2-only CPU emulates bf16 and trains several
times slower with it than in fp32), one torch thread; text loss on every micro-turn with event
micro-turns weighted 4x; the flow head on every speaking micro-turn and a quarter of the silent
ones, two noise draws each.

Stages (each resumes the last; see docs/model.md):
    text   typed-text and video skills (TimeSpeak, RepCount, delegation, small talk, idle),
           text, control and the model's voice (flow head) together; dMel embedding frozen
    chain  the same skills chained in one call as the demo page uses them ("say hello every 3
           seconds" ... "stop", "count my reps" ... "how many?"), with more TimeSpeak
    listen the listening skills (CueSpeak, turn-taking, barge-in) + replay of the text skills
    react  cues while the user talks and barge-ins weighted up
    speak  spoken instructions and backchannels
    prosody  a pitch input (config pitch_in) for turn ends vs. pauses, a heard-word auxiliary loss
    recount  a short rehearsal with RepCount weighted up
    timing  "in N seconds" against "every N seconds" (delays 2-20 s), cues, turn ends
    cues    the cue told from its near misses (cuespeak_near), each vocabulary word its own
            heard-word class, the heard-word loss weighed up
    start   the cues mix at a lower lr, a call's first typed message now also in its very first
            micro-turn (a page that types as soon as the call is up)
    near    more near misses, the silence just after each weighted like a cue's answer
    settle  plain cues and turn ends weighed back up at half the lr (near's misses, interruptions)
    late    reminders of 12-20 s alone added to the settle mix (in progress; not yet shipped)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from inference.checkpoint import init_model, load, save, widen
from inference.config import ModelConfig, preset
from inference.flow import flow_matching_loss
from inference.model import InteractionModel
from inference.tasks.batch import Batch, training_batch
from inference.tasks.vocab import WORD_CLASSES
from inference.text import N_BYTES, PAD

STAGES: dict[str, dict[str, Any]] = {
    "text": {
        "mix": {"timespeak": 0.32, "repcount": 0.32, "delegate": 0.14, "chat": 0.08, "idle": 0.14},
        "n_range": (60, 200),
        "frozen": ("audio_in.",),  # no listening skill yet: the dMel embedding stays as initialised
    },
    "chain": {
        # the demo page's use: tasks one after another (generators.chain), and more timing
        "mix": {
            "chain": 0.35,
            "timespeak": 0.3,
            "repcount": 0.12,
            "delegate": 0.08,
            "chat": 0.05,
            "idle": 0.1,
        },
        "n_range": (100, 240),
        "frozen": ("audio_in.",),
        "lr": 1.5e-3,  # continues a trained model
    },
    "listen": {
        # the dMel input learns: cues, turn ends, barge-ins; the typed tasks keep being rehearsed
        # (chain_quiet: a speaking user is answered now, so the chain's mic never loops speech)
        "mix": {
            "cuespeak": 0.2,
            "turn": 0.25,
            "chain_quiet": 0.17,
            "timespeak": 0.13,
            "repcount": 0.07,
            "delegate": 0.07,
            "chat": 0.05,
            "idle": 0.06,
        },
        "n_range": (80, 220),
        "lr": 1.5e-3,  # continues a trained model
    },
    "react": {
        # cues while the user talks and barge-ins on the long reply get the most practice; timing
        # (timespeak + chain_quiet) keeps 0.3 of the mix, less let "say X every N seconds" drift
        "mix": {
            "cuespeak": 0.3,
            "turn": 0.22,
            "timespeak": 0.16,
            "chain_quiet": 0.14,
            "repcount": 0.06,
            "delegate": 0.05,
            "chat": 0.03,
            "idle": 0.04,
        },
        "n_range": (80, 220),
        "lr": 1e-3,
    },
    "speak": {
        # instructions said aloud: the typed ones' words and numbers heard in the dMel input; and
        # backchannels in long tellings; typed timing (timespeak + chain_quiet) keeps 0.3
        "mix": {
            "timespeak_spoken": 0.24,
            "chat_spoken": 0.08,
            "timespeak": 0.16,
            "chain_quiet": 0.14,
            "cuespeak": 0.14,
            "turn": 0.1,
            "monologue": 0.08,
            "repcount": 0.02,
            "delegate": 0.02,
            "idle": 0.02,
        },
        "n_range": (80, 220),
        "lr": 1e-3,
    },
    "prosody": {
        # the pitch channel (config pitch_in, new, zero at the start) and what it is for: turn ends
        # against continuation pauses (turn, monologue's backchannels); the rest rehearsed
        "config": {"pitch_in": True},
        "mix": {
            "turn": 0.26,
            "monologue": 0.14,
            "cuespeak": 0.14,
            "timespeak": 0.12,
            "chain_quiet": 0.1,
            "timespeak_spoken": 0.1,
            "chat_spoken": 0.05,
            "repcount": 0.03,
            "delegate": 0.03,
            "idle": 0.03,
        },
        "n_range": (80, 220),
        "lr": 1e-3,
        "word_weight": 0.3,  # the heard-word auxiliary loss (WordHead)
    },
    "recount": {
        # a short rehearsal after prosody, whose mix had repcount at 0.03 and RepCount fell
        "mix": {
            "repcount": 0.2,
            "chain_quiet": 0.15,
            "turn": 0.15,
            "cuespeak": 0.12,
            "timespeak": 0.1,
            "monologue": 0.08,
            "timespeak_spoken": 0.06,
            "delegate": 0.05,
            "idle": 0.05,
            "chat_spoken": 0.04,
        },
        "n_range": (80, 220),
        "lr": 5e-4,
    },
    "timing": {
        # numbers read and kept: "in N seconds" against "every N seconds" (timespeak_timed, half
        # each, delays 2-20 s, also in the chain's reminders), with cues and the heard-word loss;
        # turn-taking, counting and the spoken instructions rehearsed
        "mix": {
            "timespeak_timed": 0.24,
            "cuespeak": 0.18,
            "turn": 0.14,
            "chain_quiet": 0.12,
            "repcount": 0.07,
            "monologue": 0.06,
            "timespeak": 0.06,
            "timespeak_spoken": 0.04,
            "delegate": 0.04,
            "chat_spoken": 0.03,
            "idle": 0.02,
        },
        "n_range": (80, 220),
        "lr": 1e-3,
        "word_weight": 0.3,
    },
    "cues": {
        # the cue told from its near misses (cuespeak_near: half the phrases hold one), with the
        # heard-word loss weighed up and each vocabulary word in a class of its own (the hashed
        # classes put cue words with filler words); turn ends, timing and the rest rehearsed
        "mix": {
            "cuespeak_near": 0.2,
            "timespeak_timed": 0.18,
            "turn": 0.14,
            "cuespeak": 0.1,
            "chain_quiet": 0.1,
            "monologue": 0.08,
            "repcount": 0.06,
            "timespeak": 0.05,
            "timespeak_spoken": 0.03,
            "delegate": 0.03,
            "chat_spoken": 0.02,
            "idle": 0.01,
        },
        "n_range": (80, 220),
        "lr": 1e-3,
        "word_weight": 0.5,
    },
}
# the call's first typed message also in its very first micro-turn (early_text), where the cues
# model misread "every 3 seconds" as every 2 in four demo calls of ten; the cues mix, a lower lr
STAGES["start"] = {**STAGES["cues"], "lr": 5e-4}
# near misses again, now with the silence after each weighed like an answer (episode.hold): the
# start model's false answers were mostly just after a near miss, which weighed 1 against 4
STAGES["near"] = {
    **STAGES["start"],
    "mix": {
        "cuespeak_near": 0.3,
        "timespeak_timed": 0.15,
        "turn": 0.12,
        "cuespeak": 0.1,
        "chain_quiet": 0.1,
        "monologue": 0.07,
        "repcount": 0.06,
        "timespeak": 0.04,
        "timespeak_spoken": 0.02,
        "delegate": 0.02,
        "chat_spoken": 0.01,
        "idle": 0.01,
    },
}
# the near model answered fewer false cues but missed more (22 of 146) and cut into more turns
# (false interruptions 5.1 -> 5.8 %): plain cues (the answers) and turn ends weighed back up at
# half the lr, to settle the trade rather than move it
STAGES["settle"] = {
    **STAGES["near"],
    "mix": {
        "cuespeak_near": 0.2,
        "timespeak_timed": 0.17,
        "turn": 0.15,
        "cuespeak": 0.14,
        "chain_quiet": 0.1,
        "monologue": 0.06,
        "repcount": 0.06,
        "timespeak": 0.04,
        "timespeak_spoken": 0.03,
        "delegate": 0.02,
        "chat_spoken": 0.02,
        "idle": 0.01,
    },
    "lr": 2.5e-4,
}
# "remind me in N seconds" is TimeSpeak's weak kind (33-50 %): the settle model said 18-19 s
# reminders ~2.5 s early and some 14-16 s ones 1-2 s late; the late reminders alone at 0.1
STAGES["late"] = {
    **STAGES["settle"],
    "mix": {
        "cuespeak_near": 0.18,
        "turn": 0.15,
        "cuespeak": 0.14,
        "timespeak_timed": 0.12,
        "timespeak_late": 0.1,
        "chain_quiet": 0.09,
        "repcount": 0.06,
        "monologue": 0.05,
        "timespeak": 0.03,
        "timespeak_spoken": 0.03,
        "delegate": 0.02,
        "chat_spoken": 0.02,
        "idle": 0.01,
    },
}
DEFAULT_RUN = Path("runs/small")


@dataclass
class Recipe:
    lr: float = 3e-3
    warmup: int = 50
    min_lr_frac: float = 0.1
    weight_decay: float = 0.01
    clip: float = 1.0
    batch_size: int = 16
    control_pos_weight: float = 10.0
    flow_weight: float = 1.0
    flow_silent_frac: float = 0.25
    flow_draws: int = 2
    word_weight: float = 0.0  # the heard-word auxiliary loss; 0: no WordHead
    # a fresh heard-word head learns this many steps on detached features before its loss
    # reaches the trunk (a random head's gradient is noise: ~75 steps of it at every fresh start)
    word_warmup: int = 100


class WordHead(nn.Module):
    """Training only (never exported): which word the user just finished saying, from the
    world token's hidden state; 0 = none. Dense supervision for the dMel input's word
    recognition, which CueSpeak, spoken instructions and turn ends rest on (episode.heard)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.out = nn.Linear(d_model, WORD_CLASSES)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(hidden)


class Batches(Dataset[Batch]):
    def __init__(
        self,
        cfg: ModelConfig,
        stage: str,
        seed: int,
        recipe: Recipe,
        start: int,
        total: int,
        n_range: tuple[int, ...] | None = None,
    ):
        self.cfg, self.stage, self.seed, self.recipe = cfg, stage, seed, recipe
        self.start, self.total = start, total
        self.n_range = n_range or STAGES[stage]["n_range"]

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __getitem__(self, i: int) -> Batch:
        spec = STAGES[self.stage]
        step = self.start + i
        return training_batch(
            self.cfg,
            seed=self.seed * 1_000_003 + step,
            batch_size=self.recipe.batch_size,
            mix=spec["mix"],
            n_range=(self.n_range[0], self.n_range[-1]),
        )


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    try:
        os.nice(5)  # the data worker yields to the training process
    except OSError:
        pass


def bf16_is_fast(size: int = 384, reps: int = 20) -> bool:
    """Whether a bf16-autocast matmul beats an fp32 one on this CPU (native bf16: AVX-512 BF16 or
    AMX; elsewhere bf16 is emulated and slow)."""

    def timed(enabled: bool) -> float:
        a, b = torch.randn(size, size), torch.randn(size, size)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            (a @ b).sum()  # warm-up
            t = time.perf_counter()
            for _ in range(reps):
                (a @ b).sum()
        return time.perf_counter() - t

    return timed(True) < timed(False)


def lr_at(step: int, total: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    frac = min(1.0, (step - recipe.warmup) / max(1, total - recipe.warmup))
    return recipe.lr * (
        recipe.min_lr_frac + (1 - recipe.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac))
    )


def text_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """logits [B,N,K,V], target [B,N,K]; slots after the first non-byte id do not count."""
    is_byte = target < N_BYTES
    alive = torch.cat([torch.ones_like(is_byte[..., :1]), is_byte[..., :-1]], -1).cumprod(-1).bool()
    alive &= target != PAD
    ce = F.cross_entropy(logits.float().flatten(0, 2), target.flatten(), reduction="none").view_as(
        target
    )
    w = weight[..., None] * alive
    return (ce * w).sum() / w.sum().clamp_min(1.0)


def losses(
    model: InteractionModel,
    batch: Batch,
    recipe: Recipe,
    gen: torch.Generator,
    word_head: WordHead | None = None,
    detach_word: bool = False,
) -> dict[str, torch.Tensor]:
    out = model(batch.seq)
    lt = text_loss(out.text_logits, batch.seq.text_out, batch.text_weight)
    cw = torch.where(batch.control > 0, recipe.control_pos_weight, 1.0)
    lc = (
        F.cross_entropy(
            out.control_logits.float().flatten(0, 1), batch.control.flatten(), reduction="none"
        )
        * cw.flatten()
    ).sum() / cw.sum()
    # flow head: speaking micro-turns + a share of the silent ones
    pick = batch.speaking | (
        torch.rand(batch.speaking.shape, generator=gen) < recipe.flow_silent_frac
    )
    cond = out.flow_cond[pick]  # [M, d]
    x1 = model.normalize_mel(batch.seq.logmel_out[pick]).flatten(1)  # [M, 1280]
    cond = cond.repeat(recipe.flow_draws, 1)
    x1 = x1.repeat(recipe.flow_draws, 1)
    noise = torch.randn(x1.shape, generator=gen)
    t = torch.rand(x1.shape[0], generator=gen)
    lf = flow_matching_loss(model.flow, cond, x1, noise, t) if x1.shape[0] else lt * 0
    total = lt + lc + recipe.flow_weight * lf
    parts = {"text": lt, "control": lc, "flow": lf}
    if word_head is not None:
        hidden = out.hidden.detach() if detach_word else out.hidden
        logits = word_head(hidden).float().flatten(0, 1)
        known = batch.word.flatten() >= 0
        lw = F.cross_entropy(logits[known], batch.word.flatten()[known]) if known.any() else lt * 0
        total = total + recipe.word_weight * lw
        parts["word"] = lw
    return {"loss": total, **parts}


@torch.no_grad()
def set_mel_stats(model: InteractionModel, cfg: ModelConfig, seed: int) -> None:
    """Per-bin mean/std of the output log-mel over a sample of training targets."""
    mels = []
    for i in range(4):
        b = training_batch(
            cfg,
            seed=seed * 7919 + 10**6 + i,
            batch_size=16,
            mix=STAGES["text"]["mix"],
            n_range=(150, 150),
        )
        mels.append(b.seq.logmel_out.flatten(0, 2))
    mel = torch.cat(mels)
    model.mel_mean.copy_(mel.mean(0))
    model.mel_std.copy_(mel.std(0).clamp_min(0.3))


def save_state(
    path: Path,
    model: InteractionModel,
    opt: torch.optim.Optimizer,
    meta: dict[str, Any],
    word_head: WordHead | None = None,
) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "config": model.cfg.to_dict(),
            "opt": opt.state_dict(),
            "meta": meta,
            **({"word_head": word_head.state_dict()} if word_head is not None else {}),
        },
        tmp,
    )
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="microturn train", description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=sorted(STAGES), default="text")
    ap.add_argument("--run", type=Path, default=DEFAULT_RUN, help="run directory (state.pt, log)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--init", type=Path, default=None, help="start from this checkpoint directory")
    ap.add_argument("--resume", action="store_true", help="continue the run in --run")
    ap.add_argument("--steps", type=int, default=None, help="steps of this stage (cosine length)")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this wall time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=None, help="peak lr (default: the stage's, 3e-3)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="data worker processes (0: inline)")
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument(
        "--bf16",
        choices=["auto", "on", "off"],
        default="auto",
        help="bf16 autocast (auto: on where this CPU's bf16 matmuls beat fp32)",
    )
    ap.add_argument(
        "--no-bf16", dest="bf16", action="store_const", const="off", help="the same as --bf16 off"
    )
    ap.add_argument(
        "--export", type=Path, default=None, help="write a servable checkpoint here at the end"
    )
    ap.add_argument("--export-dtype", default="bfloat16")
    ap.add_argument(
        "--export-only", action="store_true", help="export the run's state.pt to --export and stop"
    )
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--episode-mt", default=None, help="LO,HI micro-turns per episode (default: the stage's)"
    )
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.export_only:
        if args.export is None:
            ap.error("--export-only needs --export DIR")
        ck = torch.load(args.run / "state.pt", map_location="cpu", weights_only=False)
        model = InteractionModel(ModelConfig.from_dict(ck["config"]))
        model.load_state_dict(ck["model"])
        save(model.eval(), args.export, dtype=args.export_dtype, preset_name=args.preset)
        done = ck["meta"]
        (args.export / "training.json").write_text(
            json.dumps(
                {"stage": done["stage"], "step": done["step"], "history": done.get("history", [])},
                indent=2,
            )
            + "\n"
        )
        print(f"exported {args.export} (stage {done['stage']}, step {done['step']})")
        return 0
    args.run.mkdir(parents=True, exist_ok=True)
    state_path = args.run / "state.pt"
    meta: dict[str, Any]
    warm_start = False  # from an exported checkpoint (--init), which carries no heard-word head
    if args.resume and state_path.exists():
        ck = torch.load(state_path, map_location="cpu", weights_only=False)
        cfg = ModelConfig.from_dict(ck["config"])
        model = InteractionModel(cfg)
        model.load_state_dict(ck["model"])
        meta = ck["meta"]
        if meta["stage"] != args.stage and meta["step"] < meta["total"]:
            # `make train` runs the stages in order: the next waits for this one to finish
            print(
                f"stage {meta['stage']} is at step {meta['step']}/{meta['total']}: run it to the "
                f"end first (the same command with --stage {meta['stage']} resumes it); "
                f"not starting stage {args.stage}",
                flush=True,
            )
            return 0
        done_stages = {h["stage"] for h in meta.get("history", [])}
        if meta["stage"] != args.stage and args.stage in done_stages:
            # `make train` again after its stages ran: nothing to redo (a new --run starts over)
            print(
                f"stage {args.stage} is done in {args.run} (now at stage {meta['stage']}, step "
                f"{meta['step']}/{meta['total']}); skipping it",
                flush=True,
            )
            return 0
        if meta["stage"] != args.stage:  # a new stage from the last one's weights
            grown = replace(cfg, **STAGES[args.stage].get("config", {}))
            if grown != cfg:  # the stage adds an input: the same function, one more input
                print(f"stage {args.stage}: config {STAGES[args.stage]['config']}", flush=True)
                cfg, model = grown, widen(model, grown)
            meta = {
                "stage": args.stage,
                "step": 0,
                "total": args.steps or meta["total"],
                "seed": args.seed,
                "history": meta.get("history", []),
            }
            # a fresh optimiser; the heard-word head carries over (a fresh one's first ~75 steps
            # of noise went into the trunk at every stage)
            opt_state, word_state = None, ck.get("word_head")
        else:  # resuming this stage: its optimiser and, if it has one, its heard-word head
            opt_state, word_state = ck["opt"], ck.get("word_head")
        print(
            f"resuming {state_path}: stage {meta['stage']} step {meta['step']}/{meta['total']}",
            flush=True,
        )
    else:
        if args.init is not None:
            warm_start = True
            # warm start: the preset's architecture, every tensor the checkpoint has (a newer
            # architecture's additions, e.g. the relative clocks, keep their fresh init)
            cfg = preset(args.preset)
            model = init_model(cfg, seed=args.seed)
            missing, unexpected = model.load_state_dict(load(args.init).state_dict(), strict=False)
            assert not unexpected, unexpected
            if missing:
                print(f"warm start: fresh {missing}", flush=True)
        else:
            cfg = preset(args.preset)
            model = init_model(cfg, seed=args.seed)
            set_mel_stats(model, cfg, args.seed)
        meta = {
            "stage": args.stage,
            "step": 0,
            "total": args.steps or 3000,
            "seed": args.seed,
            "history": [],
        }
        opt_state, word_state = None, None
    spec = STAGES[meta["stage"]]
    recipe = Recipe(
        lr=args.lr or spec.get("lr", 3e-3),
        batch_size=args.batch_size,
        word_weight=spec.get("word_weight", 0.0),
    )
    word_head = None
    if recipe.word_weight > 0:
        word_head = WordHead(cfg.d_model)
        if word_state is not None and word_state["out.weight"].shape == word_head.out.weight.shape:
            word_head.load_state_dict(word_state)
        elif warm_start:
            # a warm start from an export, which carries no head: the head learns on detached
            # features first (the lineage's stages carried theirs over, see above)
            meta["word_detached_until"] = recipe.word_warmup
            print(f"heard-word head: fresh, detached for {recipe.word_warmup} steps", flush=True)
    model.train()
    frozen = spec.get("frozen", ())
    for n, p in model.named_parameters():
        p.requires_grad_(not n.startswith(frozen))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if word_head is not None:
        params += [(f"word_head.{n}", p) for n, p in word_head.named_parameters()]
    decay = [p for n, p in params if p.ndim >= 2 and "embed" not in n and "bag" not in n]
    other = [p for n, p in params if not (p.ndim >= 2 and "embed" not in n and "bag" not in n)]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": recipe.weight_decay},
            {"params": other, "weight_decay": 0.0},
        ],
        lr=recipe.lr,
        betas=(0.9, 0.95),
    )
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    total = meta["total"]
    start = meta["step"]
    n_range = tuple(int(x) for x in args.episode_mt.split(",")) if args.episode_mt else None
    data = Batches(cfg, meta["stage"], meta["seed"], recipe, start, total, n_range)
    loader = DataLoader(
        data,
        batch_size=None,
        shuffle=False,
        num_workers=args.workers,
        prefetch_factor=4 if args.workers else None,
        persistent_workers=False,
        worker_init_fn=_worker_init,
    )
    gen = torch.Generator().manual_seed(meta["seed"] * 31 + start)
    t_start = time.time()
    deadline = t_start + args.minutes * 60 if args.minutes else None
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(
            total=total,
            initial=start,
            desc=f"train {meta['stage']}",
            dynamic_ncols=True,
            file=sys.stderr,
        )
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and bf16_is_fast())
    print(f"bf16 autocast: {'on' if bf16 else 'off'} (--bf16 {args.bf16})", flush=True)
    log_path = args.run / "log.jsonl"
    acc: dict[str, float] = {}
    n_acc = 0
    mts = 0
    step = start
    for batch in loader:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, recipe)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            detach = step < meta.get("word_detached_until", 0)
            parts = losses(model, batch, recipe, gen, word_head, detach)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        gnorm = torch.nn.utils.clip_grad_norm_([p for _, p in params], recipe.clip)
        opt.step()
        step += 1
        mts += batch.seq.index.numel()
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        n_acc += 1
        if progress is not None:
            progress.update(1)
            progress.set_postfix({k: f"{v / n_acc:.3f}" for k, v in acc.items()})
        done = step >= total or (deadline is not None and time.time() > deadline)
        if step % 25 == 0 or done:
            rec = {
                "step": step,
                "lr": lr_at(step, total, recipe),
                "gnorm": float(gnorm),
                "mt_per_s": mts / (time.time() - t_start),
                "time": time.time(),
            }
            rec.update({k: v / n_acc for k, v in acc.items()})
            with log_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            if progress is None:
                print(json.dumps(rec), flush=True)
            acc, n_acc = {}, 0
        if step % args.save_every == 0 or done:
            meta["step"] = step
            save_state(state_path, model, opt, meta, word_head)
        if done:
            break
    if progress is not None:
        progress.close()
    meta["step"] = step
    meta["history"] = [
        *meta.get("history", []),
        {
            "stage": meta["stage"],
            "until_step": step,
            "minutes": (time.time() - t_start) / 60,
            "micro_turns": mts,
        },
    ]
    save_state(state_path, model, opt, meta, word_head)
    print(
        f"stage {meta['stage']}: step {step}/{total}, {mts} micro-turns in {(time.time() - t_start) / 60:.1f} min",
        flush=True,
    )
    if args.export is not None:
        model.eval()
        save(model, args.export, dtype=args.export_dtype, preset_name=args.preset)
        (args.export / "training.json").write_text(
            json.dumps({"history": meta["history"], "recipe": vars(recipe)}, indent=2) + "\n"
        )
        print(f"exported {args.export}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
