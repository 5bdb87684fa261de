"""The typed messages' numbers as values (inference/numbers.py, config number_clock)."""

from __future__ import annotations

import pytest
import torch

from inference.numbers import NumberState, read, read_sequence
from inference.text import EOU, PAD


def typed(*messages: str, slots: int = 8) -> torch.Tensor:
    """Messages typed one after another, `slots` bytes a micro-turn, each ended by EOU and a
    quiet micro-turn -> text-in ids [1, N, slots]."""
    rows = []
    for message in messages:
        ids = [*message.encode(), EOU]
        rows += [(ids[i : i + slots] + [PAD] * slots)[:slots] for i in range(0, len(ids), slots)]
        rows.append([PAD] * slots)
    return torch.tensor([rows])


@pytest.mark.parametrize(
    ("messages", "number"),
    [
        (["say hello every 14 seconds"], 14),
        (["every fourteen seconds say Relax"], 14),  # a word split across micro-turns, capitals
        (["Seventeen"], 17),
        (["remind me every 61 seconds"], 0),  # past 60: no number
        (["no number here"], 0),
        (["say it 3 times every 20 seconds"], 20),  # the last number
        (["now every 3 seconds", "hello there"], 0),  # the last message's, not an older one
        (["say hello every twenty five seconds"], 25),  # a tens word and a ones word: one number
        (["Every Forty-Two seconds"], 42),  # hyphenated, capitals
        (["every twenty seconds, five times"], 5),  # words between: two numbers, the last read
        (["every 20 5 seconds"], 5),  # digits are whole numbers already
        (["every sixty five seconds"], 60),  # 65 is past 60: "sixty" stays the number
    ],
)
def test_the_last_number_of_the_last_message_is_read_when_the_message_ends(
    messages: list[str], number: int
) -> None:
    text = typed(*messages)
    numbers = read_sequence(text)[0]
    ends = (text[0] == EOU).any(-1).nonzero()[:, 0]
    assert not numbers[: ends[0]].any()  # nothing before a message has ended
    assert (numbers[ends[-1] :] == number).all()


def test_a_stream_read_micro_turn_by_micro_turn_in_any_rows_reads_what_the_sequence_reads() -> None:
    a, b = (
        typed("every 7 seconds say hi", "now every twelve"),
        typed("x 5", "remind me in 9 s", "ok"),
    )
    n = min(a.shape[1], b.shape[1])
    whole = read_sequence(torch.cat([a[:, :n], b[:, :n]]))
    state = NumberState.new(4, "cpu")
    idx = torch.tensor([3, 0])
    got = []
    for m in range(n):
        part = state.take(idx)
        got.append(read(part, torch.cat([a[:, m], b[:, m]])))
        state.put(idx, part)
    assert torch.equal(torch.stack(got, 1), whole)
    state.reset(idx)
    assert not state.number.any() and state.only_digits.all()
