"""The typed messages' numbers as values (inference/numbers.py, config number_clock)."""

from __future__ import annotations

import pytest
import torch

from inference.numbers import (
    SAID_FEATURES,
    NumberState,
    SaidState,
    read,
    read_said,
    read_said_sequence,
    read_sequence,
    said_features,
)
from inference.text import EOU, PAD, SIL


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


def said(*chunks: list[int | str], slots: int = 4) -> torch.Tensor:
    """The model's own output, one micro-turn a chunk (strings as their bytes, ints as ids), PAD
    after -> ids [1, N, slots]."""
    rows = []
    for chunk in chunks:
        ids: list[int] = []
        for part in chunk:
            ids += list(part.encode()) if isinstance(part, str) else [part]
        rows.append((ids + [PAD] * slots)[:slots])
    return torch.tensor([rows])


@pytest.mark.parametrize(
    ("chunks", "last"),
    [
        ([[SIL], [SIL]], [-1, -1]),  # nothing said yet
        ([["29", EOU], [SIL]], [29, 29]),  # a count, ended by EOU in its micro-turn
        ([["1"], ["29"], [SIL]], [-1, -1, 129]),  # across micro-turns, ended by silence
        ([["7", EOU], ["hi", EOU]], [7, 7]),  # a word after it keeps the number said last
        ([["a7b", EOU]], [-1]),  # digits inside a word are no number
        ([["12 1"], ["3", EOU]], [12, 13]),  # two numbers in one utterance: the last
        ([["4567"], [EOU]], [-1, 999]),  # past SAID_MAX: held at it
        ([["80", EOU], [SIL], ["81", EOU]], [80, 80, 81]),  # the count goes on
    ],
)
def test_the_last_number_the_model_said_is_kept_until_it_says_another(
    chunks: list[list[int | str]], last: list[int]
) -> None:
    ids = said(*chunks)
    assert read_said_sequence(ids)[0].tolist() == last
    state = SaidState.new(3, "cpu")  # the stream, in row 1 of three: the same
    streamed = []
    for m in range(ids.shape[1]):
        part = state.take(torch.tensor([1]))
        streamed.append(int(read_said(part, ids[:, m])[0]))
        state.put(torch.tensor([1]), part)
    assert streamed == last
    assert state.last[[0, 2]].tolist() == [-1, -1], "other rows untouched"


def test_said_features_give_the_digits_and_nothing_before_a_number() -> None:
    f = said_features(torch.tensor([-1, 0, 7, 29, 140]))
    assert f.shape == (5, SAID_FEATURES)
    assert f[0].abs().sum() == 0, "no number said: no feature"
    digits = f[:, :30].view(5, 3, 10).argmax(-1)
    assert digits[1:].tolist() == [[0, 0, 0], [0, 0, 7], [0, 2, 9], [1, 4, 0]]
    assert f[1:, 30].tolist() == [1.0, 1.0, 1.0, 1.0]
