"""The voice tape: which bytes the audio of this micro-turn voices (config `voice_window`; issue 26).

The text head writes an utterance at up to 4 bytes a micro-turn; the voice speaks about 2.8. So
the bytes of a micro-turn are not what its 200 ms of audio say: by the end of "the answer is 14.91
miles" the text is a second ahead of the voice, and the flow head, conditioned on the bytes just
chosen, had to recall the rest of a phrase it had learnt. It could not voice a value or a word it
was given (the copy pointer's), because nothing told it which letters were due.

The tape is every byte the model said (and EOU), in order, in a ring of `TAPE` per call. A cursor
marks the first byte whose voicing has not started. Each micro-turn the voice head reads the
world token's state and a window of bytes around the cursor (BACK before it, the rest after, as
far as they are said) and how many micro-turns the cursor has stood still (a byte's sound lasts
0-5 of them: "2994" is "two thousand nine hundred ninety four") and chooses how many bytes start
sounding in this micro-turn (0-8), or CUT:
drop what is left unsaid (a barge-in, a text-only reply). The flow head is conditioned on the
window and that choice, so it sees the letters it is voicing, as a TTS model with a duration
predictor does (FastSpeech), streaming and without looking further ahead than the text head.

    tape  ─► window (bytes cursor-2 .. cursor+V-3, PAD past what is said) ─► embed ─┐
    h ─────────────────────────────────────────────────────────────────────── + ──┴► voice head ─► advance
    h + flow_text(bytes chosen) + window + embed(advance) ─► flow head ─► 16 x 80 log-mel

In training the advances are the teacher's: from festival's word timings for the model voice
(lab/tasks/voice.model_alignment). Offline and streaming apply the same rule (`tape_step`), so the
offline forward with the advances the engine chose computes what the engine computed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inference.text import PAD, SIL, TextSlotsEmbedding

ADVANCES = 9  # 0..8 bytes start sounding in one micro-turn
CUT = ADVANCES  # the class that drops every byte said and not voiced yet
VOICE_CLASSES = ADVANCES + 1
BACK = 2  # bytes of the window before the cursor (already voiced: coarticulation)
TAPE = 64  # bytes kept per call (the text leads the voice by at most ~25 in the training data)
DWELLS = 8  # micro-turns since the cursor last moved, told to the heads up to this many - 1


def on_tape(ids: Tensor) -> Tensor:
    """Which output ids are written to the tape: bytes and EOU (not SIL, not PAD)."""
    return (ids != PAD) & (ids != SIL)


def tape_write(tape: Tensor, count: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Append a micro-turn's output ids [B, K] to the tapes [B, TAPE] holding `count` [B] bytes.
    -> (tape, count), new tensors."""
    tape = tape.clone()
    rows = torch.arange(tape.shape[0], device=tape.device)
    for k in range(ids.shape[1]):
        keep = on_tape(ids[:, k])
        at = count % tape.shape[1]
        tape[rows, at] = torch.where(keep, ids[:, k], tape[rows, at])
        count = count + keep.long()
    return tape, count


def tape_window(tape: Tensor, count: Tensor, voiced: Tensor, width: int) -> Tensor:
    """Bytes at tape positions voiced - BACK .. voiced - BACK + width - 1 -> [B, width], PAD where
    nothing is (before the call, not said yet, or overwritten)."""
    pos = voiced[:, None] - BACK + torch.arange(width, device=tape.device)
    held = (pos >= 0) & (pos < count[:, None]) & (pos >= count[:, None] - tape.shape[1])
    got = tape.gather(1, pos.clamp_min(0) % tape.shape[1])
    return torch.where(held, got, torch.full_like(got, PAD))


def tape_advance(count: Tensor, voiced: Tensor, advance: Tensor) -> Tensor:
    """The cursor after a micro-turn's choice: CUT drops what is left, otherwise it moves on by
    `advance`, never past what is said."""
    moved = torch.minimum(voiced + advance.clamp_max(ADVANCES - 1), count)
    return torch.where(advance == CUT, count, moved)


def dwell_after(dwell: Tensor, advance: Tensor) -> Tensor:
    """Micro-turns since the cursor last moved, after a micro-turn's choice."""
    return torch.where(advance == 0, dwell + 1, torch.zeros_like(dwell))


def tape_step(
    tape: Tensor, count: Tensor, voiced: Tensor, ids: Tensor, width: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Write a micro-turn's ids and read the window the voice head sees -> (tape, count, window)."""
    tape, count = tape_write(tape, count, ids)
    return tape, count, tape_window(tape, count, voiced, width)


def windows_offline(text_out: Tensor, advance: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """The streaming rule over whole calls: text_out [B, N, K], advance [B, N] (what was chosen at
    each micro-turn) -> (the window each micro-turn saw [B, N, width], its dwell [B, N])."""
    batch, n_mt, _ = text_out.shape
    dev = text_out.device
    tape = torch.full((batch, TAPE), PAD, dtype=torch.long, device=dev)
    count = torch.zeros(batch, dtype=torch.long, device=dev)
    voiced = torch.zeros(batch, dtype=torch.long, device=dev)
    dwell = torch.zeros(batch, dtype=torch.long, device=dev)
    windows, dwells = [], []
    for m in range(n_mt):
        tape, count, window = tape_step(tape, count, voiced, text_out[:, m], width)
        windows.append(window)
        dwells.append(dwell)
        voiced = tape_advance(count, voiced, advance[:, m])
        dwell = dwell_after(dwell, advance[:, m])
    return torch.stack(windows, 1), torch.stack(dwells, 1)


class VoiceTape(nn.Module):
    """The window's and the dwell's embeddings, the advance head and the advance's embedding."""

    def __init__(self, width: int, embed_dim: int, d_model: int) -> None:
        super().__init__()
        self.width = width
        self.window = TextSlotsEmbedding(width, embed_dim, d_model)
        self.dwell = nn.Embedding(DWELLS, d_model)
        self.head = nn.Linear(d_model, VOICE_CLASSES)
        self.advance = nn.Embedding(VOICE_CLASSES, d_model)

    def neutral_init(self) -> None:
        """The flow head's conditioning as it was without the tape (the window and advance add 0)."""
        nn.init.zeros_(self.window.proj.weight)
        nn.init.zeros_(self.window.proj.bias)
        nn.init.zeros_(self.advance.weight)
        nn.init.zeros_(self.dwell.weight)

    def logits(self, h: Tensor, window: Tensor, dwell: Tensor) -> tuple[Tensor, Tensor]:
        """h [.., d], window [.., width], dwell [..] -> (advance logits [.., VOICE_CLASSES], the
        tape's embedding)."""
        w = self.window(window) + self.dwell(dwell.clamp_max(DWELLS - 1))
        return self.head(h + w), w

    def cond(self, w: Tensor, advance: Tensor) -> Tensor:
        """What the tape adds to the flow head's conditioning."""
        return w + self.advance(advance)
