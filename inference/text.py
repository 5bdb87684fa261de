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

Copy pointer (config `copy_memory`; issue 26): saying what it was given. The last M text-in ids a
call received (typed messages and background results, ring per call) are a memory the text head
may point into, a pointer-generator (See et al. 2017) with an induction-style key: memory id j is
keyed by itself and the two ids before it, the query by the depth decoder's features and the two
bytes the model said last in this utterance, so "I just said 1, 4" finds the id after "1 4" in
"[agent] 14.91 miles" and copies it. The induction is also explicit: id j gains match_i when the
i-th id before it is the i-th byte said last, for the last C bytes said (config `copy_context`;
two up to v9, whose "8.53 meters" after "28 feet" came out "8.53 met": "e t" was followed by
the end of "feet" first):

    a = softmax([null, q.k_j / sqrt(c) + sum_i match_i [said_i = id_(j-i)] - slope * age_j])
    p(y) = (g + (1 - g) a_null) p_gen(y) + (1 - g) sum_{j: id_j = y} a_j,   g = sigmoid(w.z + b)

With no memory (or M = 0) p = p_gen exactly. The head returns log p, so cross-entropy, argmax
and softmax read it as they read logits.
"""

from __future__ import annotations

import codecs
from collections import deque

import torch
import torch.nn.functional as F
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


# ---- the copy pointer ----------------------------------------------------------------------------
# the copy pointer's memory: keys [B, J, c], ids [B, J], the C ids before each [B, J, C], bias
Memory = tuple[Tensor, Tensor, Tensor, Tensor]
COPY_GATE_INIT = 5.0  # sigmoid(5) = 0.993: a new pointer starts out nearly all generator
MATCH_INIT = 3.0  # the score a memory id gains for each of the bytes said last it follows


def advance_said(said: Tensor, ids: Tensor) -> Tensor:
    """The bytes said last in the current utterance (said [..., C]: the last first; PAD: none)
    after the next output id: a byte shifts in; anything else (SIL, EOU, PAD) ends the
    utterance. The one rule for training and serving."""
    shifted = torch.cat([ids[..., None], said[..., :-1]], -1)
    return torch.where((ids < N_BYTES)[..., None], shifted, torch.full_like(said, PAD))


def said_contexts(text_out: Tensor, depth: int = 2) -> Tensor:
    """Offline `advance_said`: text_out [B, N, K] -> [B, N, K, depth], the context before each
    slot (a call starts with none)."""
    batch, n_mt, k_out = text_out.shape
    s = text_out.flatten(1)  # [B, L]
    idx = torch.arange(s.shape[1], device=s.device).expand_as(s)
    none = torch.full_like(s, -1)

    def last_before(mask: Tensor) -> Tensor:  # index of the last True strictly before p, or -1
        upto = torch.cummax(torch.where(mask, idx, none), 1).values
        return torch.cat([none[:, :1], upto[:, :-1]], 1)

    is_byte = s < N_BYTES
    stop = last_before(~is_byte)  # the utterance (if any) began after this
    before = last_before(is_byte)  # for each position, the byte before it
    pad = torch.full_like(s, PAD)
    out, b = [], before
    for _ in range(depth):  # the last byte, the one before that, ...
        out.append(torch.where(b > stop, s.gather(1, b.clamp_min(0)), pad))
        b = torch.where(b >= 0, before.gather(1, b.clamp_min(0)), none)
    return torch.stack(out, -1).view(batch, n_mt, k_out, depth)


def pads_last(ids: Tensor) -> Tensor:
    """ids [B, L] with every PAD moved behind the other ids, whose order is kept."""
    return ids.gather(1, torch.sort((ids == PAD).to(torch.int8), dim=1, stable=True).indices)


def memory_offline(text_in: Tensor, memory: int) -> tuple[Tensor, Tensor, Tensor]:
    """The copy memory as each micro-turn sees it, offline. text_in [B, N, K_in] -> (ids [B, J]:
    every non-PAD text-in id of the call in order, PAD-filled; age [B, N, J]: how many ids
    arrived after it by micro-turn m (its input included); visible [B, N, J]: among the last
    `memory` by then)."""
    batch, n_mt, k_in = text_in.shape
    flat = text_in.flatten(1)
    valid = flat != PAD
    count = valid.sum(1)  # [B]
    n_ids = int(count.max()) if flat.numel() else 0
    j = torch.arange(n_ids, device=flat.device)
    ids = pads_last(flat)[:, :n_ids]  # PAD-filled past each row's count
    upto = valid.view(batch, n_mt, k_in).sum(-1).cumsum(1)  # [B, N] ids received by m
    age = upto[:, :, None] - 1 - j  # [B, N, J]
    return ids, age, (age >= 0) & (age < memory)


def previous_ids(ids: Tensor, depth: int = 2) -> list[Tensor]:
    """ids [B, J] -> the id before each, the one before that, ... (PAD before the first)."""
    out, prev = [], ids
    for _ in range(depth):
        prev = torch.cat([torch.full_like(ids[:, :1], PAD), prev[:, :-1]], 1)
        out.append(prev)
    return out


class CopyPointer(nn.Module):
    """Points the text head into the call's recent text-in ids (module docstring)."""

    def __init__(self, d_model: int, dim: int, context: int = 2) -> None:
        super().__init__()
        assert context >= 2, "the query reads the two bytes said last"
        self.context = context
        self.key_id = nn.Embedding(VOCAB_SIZE, dim)
        self.key_prev1 = nn.Embedding(VOCAB_SIZE, dim)
        self.key_prev2 = nn.Embedding(VOCAB_SIZE, dim)
        self.query = nn.Linear(d_model, dim)
        self.query_said1 = nn.Embedding(VOCAB_SIZE, dim)
        self.query_said2 = nn.Embedding(VOCAB_SIZE, dim)
        self.gate = nn.Linear(d_model, 1)
        self.null_logit = nn.Parameter(torch.zeros(()))
        self.age_slope = nn.Parameter(torch.tensor(-4.0))  # softplus: 0.018 per id of age
        # induction made explicit: a bonus when the id before memory id j is the byte said last,
        # another when the one before that is the byte said before it, ... (`context` of them)
        self.match = nn.Parameter(torch.full((context,), MATCH_INIT))
        self.neutral_init()

    @torch.no_grad()
    def neutral_init(self) -> None:
        """The gate nearly shut (a new pointer leaves the generator's bytes as they were)."""
        self.gate.weight.zero_()
        self.gate.bias.fill_(COPY_GATE_INIT)
        self.null_logit.zero_()
        self.age_slope.fill_(-4.0)
        self.match.fill_(MATCH_INIT)

    def memory(self, ids: Tensor, bias: Tensor, skip: int = 0) -> Memory:
        """ids [B, S + J] in arrival order, the first `skip` context only (the ids before the
        oldest visible one), bias [.., J] (`bias`) -> the memory `mix` reads."""
        prev = previous_ids(ids, self.context)
        keys = self.key_id(ids) + self.key_prev1(prev[0]) + self.key_prev2(prev[1])
        context = torch.stack(prev, -1)
        return keys[:, skip:], ids[:, skip:], context[:, skip:], bias

    def bias(self, age: Tensor, visible: Tensor) -> Tensor:
        slope = F.softplus(self.age_slope)
        return torch.where(visible, -slope * age.float(), float("-inf"))

    def mix(
        self,
        z: Tensor,
        said: Tensor,
        logits: Tensor,
        keys: Tensor,
        ids: Tensor,
        context: Tensor,
        bias: Tensor,
    ) -> Tensor:
        """z [B, *Q, d] the depth decoder's features, said [B, *Q, C], logits [B, *Q, V]; the
        memory: keys [B, J, c], ids [B, J], context [B, J, C], bias [B, *Q, J] (or
        broadcastable) -> log p [B, *Q, V]."""
        q = self.query(z) + self.query_said1(said[..., 0]) + self.query_said2(said[..., 1])
        batch, shape = q.shape[0], q.shape[:-1]
        scores = (q.reshape(batch, -1, q.shape[-1]).float() @ keys.float().transpose(1, 2)).view(
            *shape, keys.shape[1]
        ) * keys.shape[-1] ** -0.5 + bias
        lead = (batch, *([1] * (len(shape) - 1)))  # memory tensors broadcast over the queries
        for i in range(self.context):
            said_i = said[..., i, None]  # [B, *Q, 1]
            hit = (said_i == context[..., i].view(*lead, -1)) & (said_i < N_BYTES)
            scores = scores + self.match[i].float() * hit
        null = self.null_logit.float().expand(*shape, 1)
        att = torch.softmax(torch.cat([null, scores], -1), -1)
        g = torch.sigmoid(self.gate(z).float())  # [B, *Q, 1]
        p = torch.softmax(logits.float(), -1) * (g + (1 - g) * att[..., :1])
        where = ids.view(*lead, -1).expand(*shape, -1)
        p = p.scatter_add(-1, where, (1 - g) * att[..., 1:])
        return torch.log(p.clamp_min(1e-30))


class TextHead(nn.Module):
    """The depth decoder: h [..., d] -> K bytes (greedy) or teacher-forced logits (log-probs
    when the copy pointer is on)."""

    def __init__(
        self, slots: int, d_model: int, hidden: int, copy_dim: int = 0, copy_context: int = 2
    ) -> None:
        super().__init__()
        self.slots = slots
        self.slot = nn.Parameter(torch.zeros(slots, d_model))
        self.prev = nn.Embedding(VOCAB_SIZE, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model))
        self.out_norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, VOCAB_SIZE)
        self.copy = CopyPointer(d_model, copy_dim, copy_context) if copy_dim else None

    def _logits(self, x: Tensor, said: Tensor | None, memory: Memory | None) -> Tensor:
        x = x + self.mlp(self.norm(x))
        z = self.out_norm(x)
        logits = self.out(z)
        if self.copy is None or memory is None or said is None:
            return logits
        return self.copy.mix(z, said, logits, *memory)

    def forward(
        self, h: Tensor, ids: Tensor, said: Tensor | None = None, memory: Memory | None = None
    ) -> Tensor:
        """Teacher forcing. h [..., d], ids [..., K] -> logits [..., K, V]. said [..., K, C]
        (`said_contexts`), memory (`CopyPointer.memory`, bias [.., K or 1, J]): the pointer's."""
        prev = torch.cat([torch.full_like(ids[..., :1], PAD), ids[..., :-1]], dim=-1)
        return self._logits(h.unsqueeze(-2) + self.slot + self.prev(prev), said, memory)

    def first_logits(
        self, h: Tensor, said: Tensor | None = None, memory: Memory | None = None
    ) -> Tensor:
        """Slot 0's logits [B, V]: whether (and how) the model starts saying something."""
        pad = torch.full(h.shape[:1], PAD, dtype=torch.long, device=h.device)
        return self._logits(h + self.slot[0] + self.prev(pad), said, memory)

    def generate(
        self,
        h: Tensor,
        force_bytes: Tensor | None = None,
        said: Tensor | None = None,
        keys: Tensor | None = None,
        ids: Tensor | None = None,
        context: Tensor | None = None,
        bias: Tensor | None = None,
    ) -> Tensor:
        """Greedy. h [B, d] -> ids [B, K] (each row independent of the others). force_bytes [B]
        bool: those rows start speaking now (slot 0 = the most likely byte). said [B, C] and the
        memory's keys [B, J, c], ids [B, J], context [B, J, C], bias [B, J]: the copy pointer's
        (tensors apart, so a captured graph takes them)."""
        batch = h.shape[0]
        prev = torch.full((batch,), PAD, dtype=torch.long, device=h.device)
        done = torch.zeros(batch, dtype=torch.bool, device=h.device)
        memory = None
        if keys is not None and ids is not None and context is not None and bias is not None:
            memory = (keys, ids, context, bias)
        out = []
        for k in range(self.slots):
            logits = self._logits(h + self.slot[k] + self.prev(prev), said, memory)
            chosen = logits.argmax(-1)  # [B]
            if k == 0 and force_bytes is not None:
                chosen = torch.where(force_bytes, logits[:, :N_BYTES].argmax(-1), chosen)
            chosen = torch.where(done, torch.full_like(chosen, PAD), chosen)
            done = done | (chosen >= N_BYTES)
            out.append(chosen)
            prev = chosen
            if said is not None:
                said = advance_said(said, chosen)
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
