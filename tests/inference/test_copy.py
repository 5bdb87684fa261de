"""The copy pointer (inference/text.py): what the model may say back of the text it was given."""

from __future__ import annotations

import pytest
import torch

from inference.checkpoint import init_model, widen
from inference.config import preset
from inference.text import (
    EOU,
    MATCH_INIT,
    PAD,
    SIL,
    VOCAB_SIZE,
    CopyPointer,
    Memory,
    TextHead,
    advance_said,
    memory_offline,
    said_contexts,
)


@pytest.mark.parametrize("depth", [2, 4])
def test_said_contexts_follow_the_streaming_rule(depth: int) -> None:
    """Offline contexts are what `advance_said` gives slot by slot: bytes shift in, SIL, EOU
    and PAD end the utterance, micro-turn boundaries do not."""
    gen = torch.Generator().manual_seed(0)
    choices = torch.tensor([97, 98, 99, 100, PAD, SIL, EOU])
    text_out = choices[torch.randint(0, len(choices), (3, 9, 4), generator=gen)]
    text_out[0, 0] = torch.tensor([97, 98, 99, 100])  # an utterance across a boundary
    text_out[0, 1] = torch.tensor([101, EOU, PAD, PAD])
    offline = said_contexts(text_out, depth)
    for b in range(3):
        said = torch.full((depth,), PAD)
        for m in range(9):
            for k in range(4):
                assert torch.equal(offline[b, m, k], said), (b, m, k)
                said = advance_said(said, text_out[b, m, k])
    assert offline[0, 1, 0].tolist() == [100, 99, 98, 97][:depth]
    assert offline[0, 1, 1].tolist() == [101, 100, 99, 98][:depth]
    assert offline[0, 1, 2].tolist() == [PAD] * depth


def test_memory_keeps_the_last_ids_in_order_and_ages_them() -> None:
    text_in = torch.full((1, 3, 4), PAD)
    text_in[0, 0, :2] = torch.tensor([1, 2])
    text_in[0, 2, :3] = torch.tensor([3, 4, 5])
    ids, age, visible = memory_offline(text_in, memory=4)
    assert ids.tolist() == [[1, 2, 3, 4, 5]]
    assert age[0, 0, :2].tolist() == [1, 0] and not visible[0, 0, 2:].any()
    assert age[0, 2].tolist() == [4, 3, 2, 1, 0]
    assert visible[0, 2].tolist() == [False, True, True, True, True]  # the oldest fell out


def induction_head(d: int = 16, c: int = 32, context: int = 2) -> TextHead:
    """A text head whose pointer copies by its match bonus alone (every learned key and query
    zero): the id that follows the `context` bytes said last; the gate shut (all pointer, no
    null)."""
    torch.manual_seed(0)
    head = TextHead(4, d, d, copy_dim=c, copy_context=context)
    pointer = head.copy
    assert pointer is not None
    with torch.no_grad():
        for table in (pointer.key_id, pointer.key_prev1, pointer.key_prev2):
            table.weight.zero_()
        for table in (pointer.query_said1, pointer.query_said2):
            table.weight.zero_()
        pointer.query.weight.zero_()
        pointer.query.bias.zero_()
        pointer.match.fill_(10.0)
        pointer.gate.bias.fill_(-30.0)
        pointer.null_logit.fill_(-30.0)
    return head


def in_memory(pointer: CopyPointer, message: list[int]) -> tuple[torch.Tensor, Memory]:
    """`message` as the pointer's memory, all of it visible (newest last): its ages and memory."""
    age = torch.arange(len(message) - 1, -1, -1)[None]
    bias = pointer.bias(age, torch.ones_like(age, dtype=torch.bool))
    ids = torch.tensor([[PAD] * pointer.context + message])
    return age, pointer.memory(ids, bias, skip=pointer.context)


def say_back(head: TextHead, message: list[int], start: bytes, n_mt: int) -> bytes:
    """What `head` says in n_mt micro-turns (4 bytes each, the bytes said carried from one
    micro-turn to the next as the engine carries them), having said `start`, with `message` in
    memory."""
    pointer = head.copy
    assert pointer is not None
    _, memory = in_memory(pointer, message)
    said = torch.full((1, pointer.context), PAD)
    for byte in start:
        said = advance_said(said, torch.tensor([byte]))
    out = list(start)
    for _ in range(n_mt):
        got = head.generate(torch.zeros(1, 16), None, said, *memory)
        for k in range(4):
            said = advance_said(said, got[:, k])
        out += got[0].tolist()
    return bytes(i for i in out if i < 256)


def test_a_pointer_says_back_a_result_it_never_saw_in_training_across_micro_turns() -> None:
    """What the pointer can do: a value of any digits, read out 4 bytes per micro-turn, the
    context carried from one micro-turn to the next as the engine carries it."""
    head = induction_head()
    pointer = head.copy
    assert pointer is not None
    message = [*b"[agent] 14.91 miles\n", EOU]
    # where to start is the learned query's part
    assert say_back(head, message, b"[", 5) == b"[agent] 14.91 miles\n"
    # with nothing in memory the pointer's share goes back to the generator: p = p_gen
    age, memory = in_memory(pointer, message)
    empty = pointer.bias(age, torch.zeros_like(age, dtype=torch.bool))
    z = torch.randn(1, 16)
    logits = torch.randn(1, VOCAB_SIZE)
    said = torch.full((1, 2), PAD)  # after the EOU
    mixed = pointer.mix(z, said, logits, *memory[:3], empty)
    assert torch.allclose(mixed.exp(), logits.softmax(-1), atol=1e-6)


def test_a_longer_key_tells_a_word_from_another_that_shares_two_bytes() -> None:
    """Two bytes said ("e t") are followed in memory by the end of "feet" (the newer) and by "e"
    ("meters"): keyed by two the pointer ends the word early; by four it says it whole."""
    message = [*b"[agent] 8.53 meters, which is 28 feet\n", EOU]
    assert say_back(induction_head(), message, b"8.53 m", 2).startswith(b"8.53 met\n")
    assert say_back(induction_head(context=4), message, b"8.53 m", 2).startswith(b"8.53 meters")


def test_widening_a_model_with_the_pointer_keeps_what_it_says() -> None:
    """A trained model given the pointer (the `copy` stage) starts out nearly all generator."""
    old = init_model(preset("tiny"), seed=3)
    new = widen(old, preset("tiny", copy_memory=16))
    assert new.text_head.copy is not None
    h = torch.randn(5, old.cfg.d_model)
    ids = torch.randint(0, 256, (5, 4))
    before = old.text_head(h, ids).log_softmax(-1)
    memory = torch.randint(0, 256, (5, 8))
    pointer = new.text_head.copy
    bias = pointer.bias(torch.arange(7, -1, -1).expand(5, 8), torch.ones(5, 8, dtype=torch.bool))
    said = torch.full((5, 4, 2), PAD)
    after = new.text_head(h, ids, said, pointer.memory(memory, bias[:, None]))
    assert (after.exp() - before.exp()).abs().max() < 0.01


def test_a_longer_key_keeps_the_trained_pointer_and_starts_the_new_bytes_as_the_first() -> None:
    """Widening to copy_context 4 (stage keyed): the trained bonuses are kept, the two new ones
    start at the pointer's own init, every other tensor is the old model's."""
    old = init_model(preset("tiny", copy_memory=16), seed=3)
    old_pointer = old.text_head.copy
    assert old_pointer is not None
    with torch.no_grad():
        old_pointer.match.copy_(torch.tensor([4.5, 2.5]))
    new = widen(old, preset("tiny", copy_memory=16, copy_context=4))
    assert new.text_head.copy is not None
    assert new.text_head.copy.match.tolist() == [4.5, 2.5, MATCH_INIT, MATCH_INIT]
    old_sd = old.state_dict()
    for name, t in new.state_dict().items():
        if name != "text_head.copy.match":
            assert torch.equal(t, old_sd[name]), name
