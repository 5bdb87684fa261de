"""The voice tape (inference/voice.py): which bytes the flow head is told it is voicing."""

from __future__ import annotations

import torch

from inference.checkpoint import init_model, widen
from inference.config import preset
from inference.kvcache import Rows
from inference.model import MEL_DIM
from inference.text import EOU, PAD, SIL
from inference.voice import (
    BACK,
    CUT,
    TAPE,
    dwell_after,
    tape_advance,
    tape_step,
    tape_window,
    tape_write,
    windows_offline,
)
from tests.inference.conftest import make_inputs
from tests.inference.test_model import step_input


def ids(*rows: list[int]) -> torch.Tensor:
    return torch.tensor([r + [PAD] * (4 - len(r)) for r in rows])


def test_the_tape_keeps_bytes_and_eou_and_the_window_shows_what_is_said() -> None:
    tape = torch.full((1, TAPE), PAD)
    count = torch.zeros(1, dtype=torch.long)
    tape, count = tape_write(tape, count, ids([104, 105, 32, EOU]))
    tape, count = tape_write(tape, count, ids([SIL]))  # silence writes nothing
    assert count.tolist() == [4] and tape[0, :4].tolist() == [104, 105, 32, EOU]
    voiced = torch.tensor([1])
    window = tape_window(tape, count, voiced, 6)
    # BACK bytes before the cursor (one of them before the call: PAD), then what is said
    assert BACK == 2
    assert window.tolist() == [[PAD, 104, 105, 32, EOU, PAD]]
    # an advance never passes what is said; CUT drops what is left
    assert tape_advance(count, voiced, torch.tensor([7])).tolist() == [4]
    assert tape_advance(count, voiced, torch.tensor([2])).tolist() == [3]
    assert tape_advance(count, torch.tensor([0]), torch.tensor([CUT])).tolist() == [4]


def test_an_overwritten_byte_is_not_shown() -> None:
    tape = torch.full((1, TAPE), PAD)
    count = torch.zeros(1, dtype=torch.long)
    for _ in range(TAPE // 4 + 1):  # 4 more bytes than the ring holds
        tape, count = tape_write(tape, count, ids([97, 98, 99, 100]))
    window = tape_window(tape, count, torch.tensor([BACK + 2]), 4)
    # positions 2..5 of the call: 2 and 3 were overwritten by the last write
    assert window.tolist() == [[PAD, PAD, 97, 98]]


def test_offline_windows_follow_the_streaming_rule() -> None:
    gen = torch.Generator().manual_seed(0)
    choices = torch.tensor([97, 98, 99, PAD, SIL, EOU])
    text_out = choices[torch.randint(0, len(choices), (2, 30, 4), generator=gen)]
    advance = torch.randint(0, CUT + 1, (2, 30), generator=gen)
    advance[0, 9] = 1
    advance[0, 10:14] = 0  # the cursor moves, then stands still for 4 micro-turns
    offline, dwells = windows_offline(text_out, advance, 5)
    tape = torch.full((2, TAPE), PAD)
    count = torch.zeros(2, dtype=torch.long)
    voiced = torch.zeros(2, dtype=torch.long)
    dwell = torch.zeros(2, dtype=torch.long)
    for m in range(30):
        tape, count, window = tape_step(tape, count, voiced, text_out[:, m], 5)
        assert torch.equal(offline[:, m], window), m
        assert torch.equal(dwells[:, m], dwell), m
        voiced = tape_advance(count, voiced, advance[:, m])
        dwell = dwell_after(dwell, advance[:, m])
        assert (voiced <= count).all()
    assert dwells[0, 10:15].tolist() == [0, 1, 2, 3, 4]


def test_widening_to_the_tape_keeps_the_voice() -> None:
    """A trained model given the tape plays the same mel: the window and the advance add nothing
    until trained, whatever the voice head chooses."""
    base = init_model(preset("tiny"), seed=3)
    with torch.no_grad():
        for p in base.flow.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    wide = widen(base, preset("tiny", voice_window=6)).eval()
    assert wide.voice is not None
    with torch.no_grad():  # a voice head that chooses all sorts of advances
        wide.voice.head.weight.normal_(0, 0.5)
    inps = make_inputs(6, seed=4)
    noise = torch.randn(6, MEL_DIM, generator=torch.Generator().manual_seed(1))
    states = [m.new_state(1, "cpu", torch.float32) for m in (base, wide)]
    with torch.inference_mode():
        for t in range(6):
            outs = [
                m.step(s, Rows.of([0], "cpu"), step_input(m, [inps[t]], noise[t][None]))
                for m, s in zip((base, wide), states, strict=True)
            ]
            assert torch.allclose(outs[0].logmel, outs[1].logmel, atol=1e-5)
            assert outs[1].voice_advance is not None
