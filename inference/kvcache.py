"""The KV cache: preallocated once per slot, a bounded window, never reallocated per step.

Per layer and slot the cache holds C = n_sinks + 2 W entries:

    entry:  0 .. n_sinks-1      learned attention sinks (key 0, learned value, learned logit)
            n_sinks + 2 (m % W) + j   token j of micro-turn m (ring buffer of the last W micro-turns)

    k, v   [L, slots, H, C, D]   keys are stored already rotated (RoPE at their absolute position)
    kpos   [slots, C]            absolute token position of each entry; -1 empty, -2 sink

Writing micro-turn m evicts micro-turn m - W, which no query of m may see anyway, so a call of any
length costs the same memory and the same attention work: step time is flat by construction.
Rows of one batched step are slots of different ages; each row writes at its own ring position.
When the rows are contiguous slots the step reads the cache as a view (no copy), otherwise it
gathers them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from inference.config import TOKENS_PER_MICROTURN

SINK_POS = -2
EMPTY_POS = -1


@dataclass(frozen=True)
class Rows:
    """The slots stepped together: as an index tensor, and as a slice when contiguous."""

    index: Tensor  # [B] int64 on the device
    span: slice | None

    @classmethod
    def of(cls, slots: list[int], device: torch.device | str) -> Rows:
        assert slots and len(set(slots)) == len(slots), "rows must be distinct slots"
        contiguous = slots == list(range(slots[0], slots[0] + len(slots)))
        span = slice(slots[0], slots[0] + len(slots)) if contiguous else None
        return cls(torch.tensor(slots, dtype=torch.long, device=device), span)

    def __len__(self) -> int:
        return int(self.index.shape[0])


class KVCache:
    def __init__(
        self,
        n_layers: int,
        slots: int,
        n_heads: int,
        head_dim: int,
        n_sinks: int,
        window_microturns: int,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> None:
        self.n_sinks = n_sinks
        self.window = window_microturns
        self.size = n_sinks + TOKENS_PER_MICROTURN * window_microturns  # C
        shape = (n_layers, slots, n_heads, self.size, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.kpos = torch.full((slots, self.size), EMPTY_POS, dtype=torch.long, device=device)

    def reset(self, rows: Tensor, sink_v: list[Tensor]) -> None:
        """Empty the ring of these slots and (re)write the sinks. sink_v: per layer [H, n_sinks, D]."""
        self.k[:, rows] = 0
        self.v[:, rows] = 0
        for layer, value in enumerate(sink_v):
            self.v[layer, rows, :, : self.n_sinks] = value.to(self.v.dtype)
        self.kpos[rows] = EMPTY_POS
        self.kpos[rows, : self.n_sinks] = SINK_POS

    def entries(self, n_microturns: Tensor) -> Tensor:
        """Ring entries of each row's next micro-turn. n_microturns [B] -> [B, T]."""
        slot = self.n_sinks + TOKENS_PER_MICROTURN * (n_microturns % self.window)
        offsets = torch.arange(TOKENS_PER_MICROTURN, device=slot.device)
        return slot[:, None] + offsets

    def write_positions(self, rows: Rows, entries: Tensor, pos: Tensor) -> None:
        self.kpos[rows.index[:, None], entries] = pos

    def write(self, layer: int, rows: Rows, entries: Tensor, k: Tensor, v: Tensor) -> None:
        """k, v [B, H, T, D] into each row's ring entries [B, T]."""
        index = rows.index[:, None].expand_as(entries)
        self.k[layer][index, :, entries] = k.transpose(1, 2).to(self.k.dtype)  # [B, T, H, D]
        self.v[layer][index, :, entries] = v.transpose(1, 2).to(self.v.dtype)

    def read(self, layer: int, rows: Rows) -> tuple[Tensor, Tensor]:
        """-> k, v [B, H, C, D] (a view when the rows are contiguous)."""
        if rows.span is not None:
            return self.k[layer, rows.span], self.v[layer, rows.span]
        return self.k[layer].index_select(0, rows.index), self.v[layer].index_select(0, rows.index)

    def mask(self, rows: Rows, qpos: Tensor) -> Tensor:
        """Additive mask [B, 1, T, C]: 0 where query may see the entry, -inf elsewhere."""
        kpos = self.kpos[rows.span] if rows.span is not None else self.kpos[rows.index]
        kpos = kpos[:, None, :]  # [B, 1, C]
        visible = (kpos == SINK_POS) | ((kpos >= 0) & (kpos <= qpos[:, :, None]))  # [B, T, C]
        zero = torch.zeros((), dtype=torch.float32, device=qpos.device)
        return torch.where(visible, zero, float("-inf")).unsqueeze(1)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self.kpos))
