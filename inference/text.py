"""Text in and out: a byte vocabulary with three specials, slot embeddings and a tiny depth decoder.

Vocabulary: ids 0-255 are UTF-8 bytes; PAD (empty slot), SIL (the model says nothing this
micro-turn), EOU (end of an utterance / of one typed message).

Text in: each micro-turn takes the next word (up to `text_in_slots` bytes, its trailing space or
the message's EOU included) from the session's text queue:
    ids [B, K] ─► Embedding(V, e) [B, K, e] ─► flatten (slot order kept) [B, K e] ─► Linear ─► [B, d]
The model's own previous text goes into the self token the same way (its own table).

Text out: up to `text_out_slots` bytes per micro-turn from the world token's hidden state h,
one byte after another through a one-block depth decoder (Moshi's depth transformer, in small):
    logits_k = W_out(MLP(LN(h + slot_k + byte_emb[id_{k-1}])))   id_{-1} = PAD
Greedy; after the first non-byte id (SIL, EOU, PAD) the remaining slots are PAD.
"""

from __future__ import annotations

import codecs
from collections import deque

import torch
from torch import Tensor, nn

N_BYTES = 256
PAD = 256
SIL = 257
EOU = 258
VOCAB_SIZE = 259
WORD_ENDS = frozenset({ord(" "), ord("\n"), EOU})


def encode_message(text: str) -> list[int]:
    """One typed message (or background result) as text-in ids: its bytes, then EOU."""
    return [*text.encode("utf-8"), EOU] if text else []


class TextSlotsEmbedding(nn.Module):
    """ids [..., K] -> [..., d], position-aware: slot k's vector lands in its own input columns."""

    def __init__(self, slots: int, embed_dim: int, d_model: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, embed_dim)
        self.proj = nn.Linear(slots * embed_dim, d_model)

    def forward(self, ids: Tensor) -> Tensor:
        return self.proj(self.embed(ids).flatten(-2))


class TextHead(nn.Module):
    """The depth decoder: h [..., d] -> K bytes (greedy) or teacher-forced logits."""

    def __init__(self, slots: int, d_model: int, hidden: int) -> None:
        super().__init__()
        self.slots = slots
        self.slot = nn.Parameter(torch.zeros(slots, d_model))
        self.prev = nn.Embedding(VOCAB_SIZE, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model))
        self.out_norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, VOCAB_SIZE)

    def _logits(self, x: Tensor) -> Tensor:
        x = x + self.mlp(self.norm(x))
        return self.out(self.out_norm(x))

    def forward(self, h: Tensor, ids: Tensor) -> Tensor:
        """Teacher forcing. h [..., d], ids [..., K] -> logits [..., K, V]."""
        prev = torch.cat([torch.full_like(ids[..., :1], PAD), ids[..., :-1]], dim=-1)
        return self._logits(h.unsqueeze(-2) + self.slot + self.prev(prev))

    def first_logits(self, h: Tensor) -> Tensor:
        """Slot 0's logits [B, V]: whether (and how) the model starts saying something."""
        pad = torch.full(h.shape[:1], PAD, dtype=torch.long, device=h.device)
        return self._logits(h + self.slot[0] + self.prev(pad))

    def generate(self, h: Tensor, force_bytes: Tensor | None = None) -> Tensor:
        """Greedy. h [B, d] -> ids [B, K] (each row independent of the others). force_bytes [B]
        bool: those rows start speaking now (slot 0 = the most likely byte)."""
        batch = h.shape[0]
        prev = torch.full((batch,), PAD, dtype=torch.long, device=h.device)
        done = torch.zeros(batch, dtype=torch.bool, device=h.device)
        out = []
        for k in range(self.slots):
            logits = self._logits(h + self.slot[k] + self.prev(prev))
            ids = logits.argmax(-1)  # [B]
            if k == 0 and force_bytes is not None:
                ids = torch.where(force_bytes, logits[:, :N_BYTES].argmax(-1), ids)
            ids = torch.where(done, torch.full_like(ids, PAD), ids)
            done = done | (ids >= N_BYTES)
            out.append(ids)
            prev = ids
        return torch.stack(out, dim=-1)


class TextQueue:
    """A session's bounded queue of text-in ids; overflow drops the oldest ids and counts them."""

    def __init__(self, max_ids: int) -> None:
        self.ids: deque[int] = deque()
        self.max_ids = max_ids
        self.dropped = 0

    def push(self, text: str) -> None:
        self.ids.extend(encode_message(text))
        while len(self.ids) > self.max_ids:
            self.ids.popleft()
            self.dropped += 1

    def take(self, k: int) -> list[int]:
        """The next word: ids up to and including the next space, newline or EOU, at most k,
        PAD-filled. Word-aligned chunks put every word at the same input slots (a word of up to
        k-1 bytes starts at slot 0), so reading a word back out is the same copy wherever it was
        in the message; that made typed instructions far easier to learn than packed bytes."""
        got: list[int] = []
        while self.ids and len(got) < k:
            i = self.ids.popleft()
            got.append(i)
            if i in WORD_ENDS:
                break
        return got + [PAD] * (k - len(got))


class TextDecoder:
    """Model output ids -> text, across micro-turn boundaries (a UTF-8 character may straddle)."""

    def __init__(self) -> None:
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids: list[int]) -> tuple[str, bool]:
        """-> (text, end_of_utterance)."""
        data = bytes(i for i in ids if i < N_BYTES)
        eou = EOU in ids
        text = self.utf8.decode(data, final=eou)
        return text, eou
