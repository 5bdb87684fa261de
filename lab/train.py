"""Train the reference interaction model on the procedural tasks, in resumable stages.

    python -m lab.train --stage text --minutes 60            # or: make train
    python -m lab.train --stage text --minutes 60 --resume   # continue where it stopped

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

Stages: lab/stages.py (one entry each, in `make train` order; see docs/model.md).
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
from torch import nn
from torch.utils.data import DataLoader, Dataset

from inference.checkpoint import init_model, load, save, take_weights, widen
from inference.config import ModelConfig, preset
from inference.model import InteractionModel
from lab.objectives import WordHead, losses
from lab.stages import STAGES
from lab.tasks.batch import Batch, training_batch
from lab.train_recipe import Recipe

DEFAULT_RUN = Path("runs/small")


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
            live_path=spec.get("live_path", 0.0),
            voice_warp=spec.get("voice_warp", 0.0),
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


@dataclass
class Start:
    """Where a stage starts: the model, its bookkeeping, and any state carried over."""

    cfg: ModelConfig
    model: InteractionModel
    meta: dict[str, Any]
    opt_state: dict[str, Any] | None = None
    word_state: dict[str, Any] | None = None
    warm_start: bool = False  # from an exported checkpoint (--init), which carries no word head


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="microturn train", description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=sorted(STAGES), default="text")
    ap.add_argument("--run", type=Path, default=DEFAULT_RUN, help="run directory (state.pt, log)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--init", type=Path, default=None, help="start from this checkpoint directory")
    ap.add_argument("--resume", action="store_true", help="continue the run in --run")
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps of this stage (cosine length); 0: a stage that only changes the config "
        "(the last weights widened to it, `widen`) and exports",
    )
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
    return ap


def export_only(args: argparse.Namespace) -> int:
    """--export-only: the run's state.pt as a servable checkpoint."""
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


def resume_or_start(args: argparse.Namespace, state_path: Path) -> Start | None:
    """The stage's start: resumed from state.pt, the next stage after the last one, a warm start
    from --init, or a fresh model. None: nothing to do (another stage is unfinished, or this one
    is done)."""
    warm_start = False
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
            return None
        done_stages = {h["stage"] for h in meta.get("history", [])}
        if meta["stage"] != args.stage and args.stage in done_stages:
            # `make train` again after its stages ran: nothing to redo (a new --run starts over)
            print(
                f"stage {args.stage} is done in {args.run} (now at stage {meta['stage']}, step "
                f"{meta['step']}/{meta['total']}); skipping it",
                flush=True,
            )
            return None
        if meta["stage"] != args.stage:  # a new stage from the last one's weights
            grown = replace(cfg, **STAGES[args.stage].get("config", {}))
            if grown != cfg:  # the stage adds an input: the same function, one more input
                print(f"stage {args.stage}: config {STAGES[args.stage]['config']}", flush=True)
                cfg, model = grown, widen(model, grown)
            meta = {
                "stage": args.stage,
                "step": 0,
                "total": meta["total"] if args.steps is None else args.steps,
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
            # warm start: the preset's architecture (with what the stage adds, e.g. pins), every
            # tensor the checkpoint has (a newer architecture's additions, e.g. the relative
            # clocks, keep their fresh init)
            cfg = replace(preset(args.preset), **STAGES[args.stage].get("config", {}))
            model = init_model(cfg, seed=args.seed)
            given = load(args.init).state_dict()
            unexpected = sorted(set(given) - set(model.state_dict()))
            assert not unexpected, unexpected
            missing = take_weights(model, given)  # a grown tensor too: e.g. a longer key
            if missing:
                print(f"warm start: fresh {missing}", flush=True)
        else:
            cfg = preset(args.preset)
            model = init_model(cfg, seed=args.seed)
            set_mel_stats(model, cfg, args.seed)
        meta = {
            "stage": args.stage,
            "step": 0,
            "total": 3000 if args.steps is None else args.steps,
            "seed": args.seed,
            "history": [],
        }
        opt_state, word_state = None, None
    return Start(cfg, model, meta, opt_state, word_state, warm_start)


def make_optimizer(
    model: InteractionModel,
    word_head: nn.Module | None,
    recipe: Recipe,
    frozen: tuple[str, ...],
    fast: tuple[str, ...] = (),
    fast_scale: float = 1.0,
) -> tuple[torch.optim.Optimizer, list[tuple[str, nn.Parameter]]]:
    """AdamW over the trainable parameters (weight decay on matrices, not embeddings). `fast`:
    name prefixes of parts a stage adds, trained at `fast_scale` times the stage's lr (a new
    head learning from scratch beside a trained trunk)."""
    for n, p in model.named_parameters():
        p.requires_grad_(not n.startswith(frozen))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if word_head is not None:
        params += [(f"word_head.{n}", p) for n, p in word_head.named_parameters()]

    def decays(n: str, p: nn.Parameter) -> bool:
        return p.ndim >= 2 and "embed" not in n and "bag" not in n

    new = [(n, p) for n, p in params if fast and n.startswith(fast)]
    old = [(n, p) for n, p in params if not (fast and n.startswith(fast))]
    groups: list[dict[str, Any]] = [
        {"params": [p for n, p in old if decays(n, p)], "weight_decay": recipe.weight_decay},
        {"params": [p for n, p in old if not decays(n, p)], "weight_decay": 0.0},
    ]
    if new:
        groups.append({"params": [p for _, p in new], "weight_decay": 0.0, "lr_scale": fast_scale})
    opt = torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.95))
    return opt, params


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.export_only:
        if args.export is None:
            ap.error("--export-only needs --export DIR")
        return export_only(args)
    args.run.mkdir(parents=True, exist_ok=True)
    state_path = args.run / "state.pt"
    begun = resume_or_start(args, state_path)
    if begun is None:
        return 0
    cfg, model, meta = begun.cfg, begun.model, begun.meta
    word_state, warm_start = begun.word_state, begun.warm_start
    spec = STAGES[meta["stage"]]
    if meta["step"] == 0 and spec.get("new_voice"):
        # the stage teaches another voice: the flow head's target statistics are the new voice's
        set_mel_stats(model, cfg, meta["seed"])
    recipe = Recipe(
        lr=args.lr or spec.get("lr", 3e-3),
        batch_size=args.batch_size,
        word_weight=spec.get("word_weight", 0.0),
        floor_weight=spec.get("floor_weight", 0.0),
    )
    word_head = None
    if recipe.word_weight > 0:
        word_head = WordHead(cfg.d_model)
        if word_state is not None and word_state["out.weight"].shape == word_head.out.weight.shape:
            word_head.load_state_dict(word_state, strict=False)  # an older state has no floor
        elif warm_start:
            # a warm start from an export, which carries no head: the head learns on detached
            # features first (the lineage's stages carried theirs over, see above)
            meta["word_detached_until"] = recipe.word_warmup
            print(f"heard-word head: fresh, detached for {recipe.word_warmup} steps", flush=True)
    model.train()
    opt, params = make_optimizer(
        model,
        word_head,
        recipe,
        spec.get("frozen", ()),
        spec.get("fast", ()),
        spec.get("fast_scale", 1.0),
    )
    if begun.opt_state is not None:
        opt.load_state_dict(begun.opt_state)
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
            g["lr"] = lr_at(step, total, recipe) * g.get("lr_scale", 1.0)
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
