"""Numbers in the typed text, read as values (config `number_clock`).

"Say W every 14 seconds" reaches the model as bytes; a small model reads "14" or "fourteen" only
roughly (the v3 model said a 14 s period's first W after 11 s), and a period read roughly is a
schedule that drifts. Here the last whole number of 1-60 in each typed message (digits, a
number word, or a tens word and a ones word together: "twenty five", "forty-two"; as a tokenizer
with number values would give it) is kept per call, and
model.NumberClock turns it and the clock since that message into features: whether the clock
reads a whole number of those seconds, and its phase. The model still decides what the number
means ("every 14 seconds", "in 14 seconds", "locker 14").

Bytes are read in tensor ops over the batch, one text-in slot at a time, so that a call's state is
a few integers (`NumberState`) and the offline forward reads a sequence exactly as the stream did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor

from inference.text import EOU, N_BYTES, PAD, SIL

MAX_NUMBER = 60
_ONES = "one two three four five six seven eight nine".split()
_TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60}
WORDS: dict[str, int] = {
    **{w: i + 1 for i, w in enumerate(_ONES)},
    **{w: i + 10 for i, w in enumerate(_TEENS)},
    **_TENS,
}
_HASH_MUL, _HASH_MOD = 131, 2**31 - 1
_ENDS = (
    *map(ord, " ,.!?;:-\n"),  # a hyphen too: "twenty-five" is "twenty" then "five"
    EOU,
)


def _hash(word: str) -> int:
    h = 0
    for b in word.encode():
        h = (h * _HASH_MUL + b) % _HASH_MOD
    return h


_TABLE_HASH = torch.tensor([_hash(w) for w in WORDS])
_TABLE_VALUE = torch.tensor(list(WORDS.values()))
_WORD_ENDS = torch.tensor(_ENDS)


class _PerCall:
    """Per-call state as tensors over slots, whose fields are `tensors()` in order: the rows of
    a batch taken out and put back."""

    def tensors(self) -> list[Tensor]:
        raise NotImplementedError

    def take(self, idx: Tensor) -> Self:
        return type(self)(*(t[idx] for t in self.tensors()))

    def put(self, idx: Tensor, part: Self) -> None:
        for t, p in zip(self.tensors(), part.tensors(), strict=True):
            t[idx] = p


@dataclass
class NumberState(_PerCall):
    """Per call: the word being read (its hash, its digits' value, whether it is all digits,
    its length), the tens word just read (20-60, a "five" after it makes 25), the last number of
    the message being typed, the last finished message's."""

    hash: Tensor  # [S] int64
    digits: Tensor  # [S] int64
    only_digits: Tensor  # [S] bool
    length: Tensor  # [S] int64
    tens: Tensor  # [S] int64 the word before was "twenty".."sixty": its value (0: it was not)
    in_message: Tensor  # [S] int64 (0: none yet)
    number: Tensor  # [S] int64 the last finished message's number (0: none)

    @staticmethod
    def new(slots: int, device: torch.device | str) -> NumberState:
        z = torch.zeros(slots, dtype=torch.long, device=device)
        ones = torch.ones_like(z, dtype=torch.bool)
        return NumberState(z, z.clone(), ones, z.clone(), z.clone(), z.clone(), z.clone())

    def tensors(self) -> list[Tensor]:
        return [
            self.hash,
            self.digits,
            self.only_digits,
            self.length,
            self.tens,
            self.in_message,
            self.number,
        ]

    def reset(self, rows: Tensor) -> None:
        for t in self.tensors():
            t[rows] = True if t.dtype == torch.bool else 0


def read(state: NumberState, text_in: Tensor) -> Tensor:
    """Read one micro-turn's text-in ids [B, K] into `state` (rows of the batch, updated in
    place) -> [B] the number of the last message finished by now (0: none)."""
    if not bool((text_in != PAD).any()):  # most micro-turns bring no text
        return state.number.clone()
    table_hash = _TABLE_HASH.to(text_in.device)
    table_value = _TABLE_VALUE.to(text_in.device)
    word_ends = _WORD_ENDS.to(text_in.device)
    for k in range(text_in.shape[1]):
        b = text_in[:, k]
        live = b != PAD
        ends = live & torch.isin(b, word_ends)
        lower = torch.where((b >= ord("A")) & (b <= ord("Z")), b + 32, b)
        grow = live & ~ends
        is_digit = (b >= ord("0")) & (b <= ord("9"))
        # a word ends: its value, if it is a number
        by_word = ((state.hash[:, None] == table_hash[None]) * table_value).sum(-1)
        word = torch.where(state.only_digits, state.digits, by_word)
        word = torch.where((state.length > 0) & (word >= 1) & (word <= MAX_NUMBER), word, 0)
        # "twenty" then "five": 25 (a ones word right after a tens word, digits not)
        ones = ~state.only_digits & (word >= 1) & (word <= 9)
        value = torch.where(ones & (state.tens > 0), state.tens + word, word)
        value = torch.where(value <= MAX_NUMBER, value, 0)  # "sixty five": past 60, still sixty
        state.in_message.copy_(torch.where(ends & (value > 0), value, state.in_message))
        is_tens = ~state.only_digits & (word >= 20) & (word % 10 == 0)
        # an empty word (", " ends twice) leaves the tens word where it was
        state.tens.copy_(
            torch.where(ends & (state.length > 0), torch.where(is_tens, word, 0), state.tens)
        )
        eou = b == EOU
        state.number.copy_(torch.where(eou, state.in_message, state.number))
        state.in_message.copy_(torch.where(eou, 0, state.in_message))
        state.tens.copy_(torch.where(eou, 0, state.tens))
        # the word goes on or starts again
        state.hash.copy_(
            torch.where(grow, (state.hash * _HASH_MUL + lower) % _HASH_MOD, state.hash)
        )
        state.digits.copy_(
            torch.where(
                grow & is_digit, (state.digits * 10 + b - ord("0")).clamp_max(10**6), state.digits
            )
        )
        state.only_digits.copy_(state.only_digits & ~(grow & ~is_digit))
        state.length.copy_(torch.where(grow, state.length + 1, state.length))
        for t, fresh in ((state.hash, 0), (state.digits, 0), (state.length, 0)):
            t.copy_(torch.where(ends, fresh, t))
        state.only_digits.copy_(state.only_digits | ends)
    return state.number.clone()


def read_sequence(text_in: Tensor) -> Tensor:
    """text_in [B, N, K] -> [B, N]: at each micro-turn, the number of the last message finished
    by then, read as the stream reads it."""
    state = NumberState.new(text_in.shape[0], text_in.device)
    return torch.stack([read(state, text_in[:, m]) for m in range(text_in.shape[1])], 1)


# ---- the model's own numbers (config said_number) -------------------------------------------------
# "How many?" after three minutes of reps is answered with the count the model said last, seconds
# before; v7 keeps counting right and says the answer's tens digit wrong (79 as "89"), reading its
# own bytes back out of its window. Here the last whole number it said (digits, as it says counts)
# is kept per call, and model.SaidNumber gives its digits to every micro-turn: a register of its
# own words that survives the window, a few integers per call.
SAID_MAX = 999
_SAID_ENDS = torch.tensor((*map(ord, " ,.!?;:\n"), EOU, SIL))
_EMPTY, _DIGITS, _WORD = 0, 1, 2
SAID_FEATURES = 31  # one-hot hundreds, tens, ones digits; whether a number was said


@dataclass
class SaidState(_PerCall):
    """Per call: the word the model is saying (its digits' value, and whether it is empty, all
    digits or a word) and the last whole number it said (-1: none yet)."""

    value: Tensor  # [S] int64
    kind: Tensor  # [S] int64 _EMPTY, _DIGITS or _WORD
    last: Tensor  # [S] int64

    @staticmethod
    def new(slots: int, device: torch.device | str) -> SaidState:
        z = torch.zeros(slots, dtype=torch.long, device=device)
        return SaidState(z, z.clone(), z - 1)

    def tensors(self) -> list[Tensor]:
        return [self.value, self.kind, self.last]

    def reset(self, rows: Tensor) -> None:
        self.value[rows] = 0
        self.kind[rows] = _EMPTY
        self.last[rows] = -1


def read_said(state: SaidState, text_out: Tensor) -> Tensor:
    """Read one micro-turn's own output ids [B, K] into `state` (updated in place) -> [B] the last
    whole number said by the end of it (-1: none). A word ends at a space or punctuation, at EOU
    and at silence; PAD is nothing."""
    ends_table = _SAID_ENDS.to(text_out.device)
    for k in range(text_out.shape[1]):
        b = text_out[:, k]
        ends = torch.isin(b, ends_table)
        grow = (b < N_BYTES) & ~ends
        digit = grow & (b >= ord("0")) & (b <= ord("9"))
        finished = ends & (state.kind == _DIGITS)
        state.last.copy_(torch.where(finished, state.value.clamp_max(SAID_MAX), state.last))
        keeps_digits = digit & (state.kind != _WORD)
        state.value.copy_(
            torch.where(
                keeps_digits, (state.value * 10 + b - ord("0")).clamp_max(10**6), state.value
            )
        )
        kind = torch.where(keeps_digits, _DIGITS, torch.where(grow, _WORD, state.kind))
        state.kind.copy_(torch.where(ends, _EMPTY, kind))
        state.value.copy_(torch.where(ends, 0, state.value))
    return state.last.clone()


def read_said_sequence(prev_text: Tensor) -> Tensor:
    """prev_text [B, N, K] (each micro-turn's input: what the model said the micro-turn before)
    -> [B, N]: the last whole number said by then, read as the stream reads it."""
    state = SaidState.new(prev_text.shape[0], prev_text.device)
    return torch.stack([read_said(state, prev_text[:, m]) for m in range(prev_text.shape[1])], 1)


def said_features(last: Tensor) -> Tensor:
    """[...] the last number said (-1: none) -> [..., SAID_FEATURES]."""
    has = last >= 0
    v = last.clamp_min(0)
    digits = torch.stack([v // 100 % 10, v // 10 % 10, v % 10], -1)  # [..., 3]
    onehot = torch.nn.functional.one_hot(digits, 10).flatten(-2).float()  # [..., 30]
    return (
        torch.cat([onehot, torch.ones_like(v[..., None], dtype=torch.float)], -1)
        * has[..., None].float()
    )
