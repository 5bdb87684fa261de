"""The KV cache: preallocated once per slot, a bounded window, never reallocated per step.

Per layer and slot the cache holds C = n_sinks + 2 W entries:

    entry:  0 .. n_sinks-1      learned attention sinks (key 0, learned value, learned logit)
            n_sinks + 2 (m % W) + j   token j of micro-turn m (ring buffer of the last W micro-turns)

    k, v   [L, slots, H, C, D]   keys are stored already rotated (RoPE at their absolute position)
    kpos   [slots, C]            absolute token position of each entry; -1 empty, -2 sink

Writing micro-turn m evicts micro-turn m - W, which no query of m may see anyway, so a call of any
length costs the same memory and the same attention work: step time is flat by construction.

Pins (config `pins` = P > 0): what the user asked must outlive the window. The world token of
every micro-turn that brought typed text (a message, a background result) is also kept in a
ring of P pins per layer and slot, unrotated, with its micro-turn:

    pin_k, pin_v  [L, slots, H, P, D]   keys without rotary (the query side rotates, see model.py)
    pin_mt        [slots, P]            micro-turn of each pin; -1 empty
    pin_count     [slots]               pins written (the next goes to entry count % P)

A query sees a pin once its micro-turn has left the window (before that it sees the ring's
copy), always at the relative position of a token just out of the window: a pin reads the same
after a minute or an hour. Memory stays a constant P entries per layer.
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
        pins: int = 0,
    ) -> None:
        self.n_sinks = n_sinks
        self.window = window_microturns
        self.size = n_sinks + TOKENS_PER_MICROTURN * window_microturns  # C
        shape = (n_layers, slots, n_heads, self.size, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.kpos = torch.full((slots, self.size), EMPTY_POS, dtype=torch.long, device=device)
        self.pins = pins
        pin_shape = (n_layers, slots, n_heads, pins, head_dim)
        self.pin_k = torch.zeros(pin_shape, device=device, dtype=dtype)
        self.pin_v = torch.zeros(pin_shape, device=device, dtype=dtype)
        self.pin_mt = torch.full((slots, pins), EMPTY_POS, dtype=torch.long, device=device)
        self.pin_count = torch.zeros(slots, dtype=torch.long, device=device)

    def reset(self, rows: Tensor, sink_v: list[Tensor]) -> None:
        """Empty the ring of these slots and (re)write the sinks. sink_v: per layer [H, n_sinks, D]."""
        self.k[:, rows] = 0
        self.v[:, rows] = 0
        for layer, value in enumerate(sink_v):
            self.v[layer, rows, :, : self.n_sinks] = value.to(self.v.dtype)
        self.kpos[rows] = EMPTY_POS
        self.kpos[rows, : self.n_sinks] = SINK_POS
        self.pin_k[:, rows] = 0
        self.pin_v[:, rows] = 0
        self.pin_mt[rows] = EMPTY_POS
        self.pin_count[rows] = 0

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

    # ---- pins ----
    def pin_entries(self, rows: Rows, pinned: Tensor, mt: Tensor) -> tuple[Tensor, Tensor]:
        """Rows whose micro-turn `mt` [B] is pinned (`pinned` [B] bool) take their next pin entry;
        -> (batch positions [b], entries [b]) for `write_pin`. Once per step."""
        at = pinned.nonzero().flatten()
        slots = rows.index[at]
        entry = self.pin_count[slots] % max(1, self.pins)
        self.pin_mt[slots, entry] = mt[at]
        self.pin_count[slots] += 1
        return at, entry

    def write_pin(
        self, layer: int, rows: Rows, at: Tensor, entry: Tensor, k: Tensor, v: Tensor
    ) -> None:
        """k, v [B, H, D] (unrotated world-token keys, values) of the pinned rows `at`."""
        slots = rows.index[at]
        self.pin_k[layer, slots, :, entry] = k[at].to(self.pin_k.dtype)
        self.pin_v[layer, slots, :, entry] = v[at].to(self.pin_v.dtype)

    def read_pins(self, layer: int, rows: Rows) -> tuple[Tensor, Tensor]:
        """-> pin k, v [B, H, P, D]."""
        if rows.span is not None:
            return self.pin_k[layer, rows.span], self.pin_v[layer, rows.span]
        return (
            self.pin_k[layer].index_select(0, rows.index),
            self.pin_v[layer].index_select(0, rows.index),
        )

    def pin_mask(self, rows: Rows, mt: Tensor) -> Tensor:
        """Additive mask [B, 1, 1, P]: a pin is seen once its micro-turn left the window."""
        pin_mt = self.pin_mt[rows.span] if rows.span is not None else self.pin_mt[rows.index]
        visible = (pin_mt >= 0) & (mt[:, None] - pin_mt >= self.window)
        zero = torch.zeros((), dtype=torch.float32, device=mt.device)
        return torch.where(visible, zero, float("-inf"))[:, None, None, :]

    def nbytes(self) -> int:
        tensors = (self.k, self.v, self.kpos, self.pin_k, self.pin_v, self.pin_mt, self.pin_count)
        return sum(t.numel() * t.element_size() for t in tensors)
