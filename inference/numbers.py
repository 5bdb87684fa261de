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

import torch
from torch import Tensor

from inference.text import EOU, PAD

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


@dataclass
class NumberState:
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

    def take(self, idx: Tensor) -> NumberState:
        return NumberState(*(t[idx] for t in self.tensors()))

    def put(self, idx: Tensor, part: NumberState) -> None:
        for t, p in zip(self.tensors(), part.tensors(), strict=True):
            t[idx] = p


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
