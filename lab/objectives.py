"""The training objectives: the text, control and flow losses of one batch, and the heard-word head
(an auxiliary loss, training only, never exported)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inference.flow import flow_matching_loss
from inference.model import InteractionModel
from inference.text import N_BYTES, PAD
from lab.tasks.batch import Batch
from lab.tasks.episode import FLOOR_CLASSES
from lab.tasks.vocab import WORD_CLASSES
from lab.train_recipe import Recipe


class WordHead(nn.Module):
    """Training only (never exported): which word the user just finished saying, from the
    world token's hidden state; 0 = none. Dense supervision for the dMel input's word
    recognition, which CueSpeak, spoken instructions and turn ends rest on (episode.heard).

    Beside it (`floor`, from the `polish` stage on): where the user is in their turn
    (episode.FLOOR_CLASSES: no turn, speaking, a mid-turn pause, the turn just over), every
    micro-turn of the turn-taking families: the take-the-floor answer is one sparse target a
    turn; this says at every micro-turn what the audio shows."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.out = nn.Linear(d_model, WORD_CLASSES)
        self.floor = nn.Linear(d_model, FLOOR_CLASSES)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(hidden)


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
    cw = torch.where(batch.control > 0, recipe.control_pos_weight, 1.0) * batch.valid
    lc = (
        F.cross_entropy(
            out.control_logits.float().flatten(0, 1), batch.control.flatten(), reduction="none"
        )
        * cw.flatten()
    ).sum() / cw.sum().clamp_min(1.0)
    # flow head: speaking micro-turns + a share of the silent ones
    pick = (
        batch.speaking | (torch.rand(batch.speaking.shape, generator=gen) < recipe.flow_silent_frac)
    ) & batch.valid
    cond = out.flow_cond[pick]  # [M, d]
    x1 = model.normalize_mel(batch.seq.logmel_out[pick]).flatten(1)  # [M, 1280]
    cond = cond.repeat(recipe.flow_draws, 1)
    x1 = x1.repeat(recipe.flow_draws, 1)
    noise = torch.randn(x1.shape, generator=gen)
    t = torch.rand(x1.shape[0], generator=gen)
    lf = flow_matching_loss(model.flow, cond, x1, noise, t) if x1.shape[0] else lt * 0
    total = lt + lc + recipe.flow_weight * lf
    parts = {"text": lt, "control": lc, "flow": lf}
    if out.voice_logits is not None and batch.seq.voice_advance is not None:
        valid = batch.valid.flatten()
        lv = F.cross_entropy(
            out.voice_logits.float().flatten(0, 1)[valid], batch.seq.voice_advance.flatten()[valid]
        )
        total = total + recipe.voice_weight * lv
        parts["voice"] = lv
    if word_head is not None:
        hidden = out.hidden.detach() if detach_word else out.hidden
        logits = word_head(hidden).float().flatten(0, 1)
        known = batch.word.flatten() >= 0
        lw = F.cross_entropy(logits[known], batch.word.flatten()[known]) if known.any() else lt * 0
        total = total + recipe.word_weight * lw
        parts["word"] = lw
        if recipe.floor_weight > 0:
            floor_logits = word_head.floor(hidden).float().flatten(0, 1)
            known = batch.floor.flatten() >= 0
            lfl = (
                F.cross_entropy(floor_logits[known], batch.floor.flatten()[known])
                if known.any()
                else lt * 0
            )
            total = total + recipe.floor_weight * lfl
            parts["floor"] = lfl
    return {"loss": total, **parts}
