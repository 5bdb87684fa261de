"""The interaction model: encoder-free, early fusion, two tokens per 200 ms micro-turn.

Long on purpose: the whole network in one readable file, the gpt-fast / nanoGPT way (its blocks,
the offline forward for training and the streaming step the engine serves, side by side, so that
the two can be read against each other).

Token layout. Micro-turn m is two positions of one decoder-only stream (10 positions per second):

    self  token (2m)   = what the model itself said last micro-turn:
                         its text bytes (K_out slots) + its 16x80 mel + time(m) + type
    world token (2m+1) = what arrived in this micro-turn:
                         dMel (8 x 25 ms frames) + video (one 40x40 patch, hMLP) + text-in bytes
                         (K_in slots) + time(m) + type

Every modality is summed into a position after its own tiny embedding (no encoders); ordering
inside a modality (frames, bytes) is kept by giving each frame/slot its own input columns. The
hidden state of the world token reads out the next 200 ms:

    h ─► text head (depth decoder, K_out bytes, maybe SIL)
      ─► control head (none | delegate)
      ─► h + emb(bytes just said) [+ the voice tape: the bytes this audio voices, voice.py]
           ─► flow head ─► 16 x 80 log-mel ─► streaming Griffin-Lim ─► 3200 samples

Why this layout and not the 14-position reference: the notes measured tokens per micro-turn as the
main cost and one low-resolution frame as one token as the better video input; two informative
positions keep the user's stream and the model's own stream apart (as Moshi does) and cost one
trunk pass per micro-turn (inputs of a micro-turn are processed together, no sequential audio
tokens). Text leads audio inside a micro-turn (the flow head sees the bytes just chosen) and the
audio feeds back through the next self token.

Time: a sinusoidal embedding of elapsed call time (the session clock's micro-turn index, so
dropped inputs still advance it) plus rotary positions over the token index. Attention is bounded:
learned sinks + the last W micro-turns (inference/kvcache.py), identical offline (a mask) and
streaming (a ring buffer), so `forward` on a whole call equals `step` micro-turn by micro-turn.

One streaming step, B sessions of any ages:

    audio [B,3200] ─ dMel ─┐  frame [B,40,40,3] ─ hMLP ─┐  text_in [B,K_in] ─┐   time(index)
                           └────────── world token [B, d] ──────────────────────┘
    state.prev_text, state.prev_mel ─► self token [B, d]
    x [B, 2, d] ─► L x (RMSNorm, attention over cache [B,H,C,D] + new kv, RMSNorm, MLP) ─► h [B, d]
    ─► heads (above) ─► text ids [B,K_out], control [B,2], log-mel [B,16,80], audio [B,3200]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inference.config import (
    FRAME_SIZE,
    LOG10_MEL_MAX,
    LOG10_MEL_MIN,
    MEL_FRAMES_PER_MICROTURN,
    N_MELS,
    SELF_TOKEN,
    TOKENS_PER_MICROTURN,
    WORLD_TOKEN,
    ModelConfig,
)
from inference.dmel import DMEL_TAIL_SAMPLES, DMel, DMelEmbedding
from inference.flow import FlowHead
from inference.kvcache import KVCache, Rows
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
from inference.pitch import PITCH_STATE
from inference.protocol import MICROTURN_MS
from inference.text import (
    EOU,
    N_BYTES,
    PAD,
    SIL,
    Memory,
    TextHead,
    TextSlotsEmbedding,
    advance_said,
    memory_offline,
    pads_last,
    said_contexts,
)
from inference.video import MotionEmbedding, VideoEmbedding, last_seen
from inference.vocoder import CTX_FRAMES, TAIL_SAMPLES, StreamingGriffinLim
from inference.voice import (
    TAPE,
    VoiceTape,
    dwell_after,
    tape_advance,
    tape_step,
    windows_offline,
)

NEVER = -(10**6)  # "no such event yet" for the relative clocks
NEVER_S = 3600.0  # ... which they read as an hour ago
# with the phase clock, the relative clocks read at most a minute: older, only the phase of the
# clock since the last typed message tells the time (training calls are minutes shown in little,
# so a clock of 10 minutes would be a value training rarely showed)
CLOCK_CAP_S = 60
MEL_DIM = MEL_FRAMES_PER_MICROTURN * N_MELS  # 1280 values per micro-turn of output
N_CONTROL = 2  # 0 = nothing, 1 = delegate to the background model
CONTROL_DELEGATE = 1


# ---- positions ------------------------------------------------------------------------------------
def rope_tables(pos: Tensor, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """Absolute token positions [...] -> cos, sin [..., head_dim/2] (angles in float64: exact for
    calls of any length)."""
    inv_freq = base ** (
        -torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float64) / head_dim
    )
    angles = pos.to(torch.float64)[..., None] * inv_freq
    return torch.cos(angles).float(), torch.sin(angles).float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x [B, H, T, D]; cos, sin [B, 1, T, D/2]."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


def elapsed_mt(now: Tensor, last: Tensor, cap: int | None = None) -> Tensor:
    """Micro-turns since `last` (NEVER -> NEVER_S seconds), at most `cap` unless NEVER."""
    never = torch.full_like(now, int(NEVER_S * 1000 / MICROTURN_MS))
    since = now - last if cap is None else (now - last).clamp_max(cap)
    return torch.where(last <= NEVER // 2, never, since)


def speaks(text_ids: Tensor) -> Tensor:
    """text_ids [..., K] -> bool [...]: this micro-turn's output says something (a byte in slot 0)."""
    return text_ids[..., 0] < N_BYTES


def ends_utterance(text_ids: Tensor) -> Tensor:
    """text_ids [..., K] -> bool [...]: after this micro-turn the model is between utterances
    (it was silent, or its utterance ended with EOU). The one rule for training and serving."""
    return (text_ids == EOU).any(-1) | ~speaks(text_ids)


def utterance_starts(text_out: Tensor) -> Tensor:
    """text_out [B, N, K] -> bool [B, N]: the model starts an utterance at this micro-turn (it
    speaks after a micro-turn that ended an utterance, or at the first)."""
    ended = ends_utterance(text_out)
    prev_ended = torch.cat([torch.ones_like(ended[:, :1]), ended[:, :-1]], 1)
    return speaks(text_out) & prev_ended


def last_event(mask: Tensor) -> Tensor:
    """mask [B, N] -> [B, N] index of the last True at or before each position (NEVER: none)."""
    idx = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    marked = torch.where(mask, idx, torch.full_like(idx, NEVER))
    return torch.cummax(marked, dim=1).values


def at_step(steps: Tensor, idx: Tensor) -> Tensor:
    """Indices into the sequence (NEVER kept) -> the micro-turn numbers `steps` gives them."""
    return torch.where(idx <= NEVER // 2, idx, steps.gather(1, idx.clamp_min(0)))


class TimeEmbedding(nn.Module):
    """Elapsed call time (micro-turn index on the session clock) -> [..., d]. Periods 0.4 s .. ~3 h."""

    freqs: Tensor

    def __init__(self, features: int, d_model: int) -> None:
        super().__init__()
        half = features // 2
        periods_s = torch.logspace(math.log10(0.4), math.log10(10_000.0), half)
        self.register_buffer("freqs", 2 * math.pi / periods_s, persistent=False)
        self.proj = nn.Linear(features, d_model)

    def forward(self, index: Tensor) -> Tensor:
        seconds = index.to(torch.float64) * (MICROTURN_MS / 1000)
        angles = (seconds[..., None] * self.freqs.double()).float()
        return self.proj(torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1))


class NumberClock(nn.Module):
    """The clock since the last typed message, against the number that message gave (config
    `number_clock`, inference/numbers.py) -> [..., d]: whether it reads a whole number of those
    seconds, and its phase (two harmonics). Zero where the message had no number of 1-60."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.proj = nn.Linear(5, d_model)

    def forward(self, now: Tensor, last: Tensor, number: Tensor) -> Tensor:
        t = (now - last).long()
        period = (number * (1000 // MICROTURN_MS)).clamp_min(1)
        phase = (t % period).float() / period.float()
        due = ((phase == 0) & (t > 0)).float()
        angles = 2 * math.pi * phase[..., None] * torch.tensor([1.0, 2.0], device=phase.device)
        feats = torch.cat([due[..., None], torch.sin(angles), torch.cos(angles)], dim=-1)
        seen = ((last > NEVER // 2) & (number > 0))[..., None].float()
        return self.proj(feats * seen)


class PhaseClock(nn.Module):
    """Micro-turns since the last typed message -> [..., d]: its phase in every whole-second
    period of 1-60 s (config `phase_clock`). "Every N seconds" is due where the phase of period N
    is zero, minutes on as in the first seconds: read from the instruction's clock, a W said a
    micro-turn late does not move the next one. TimeEmbedding's log-spaced periods hold no such
    phase once the clock has run past a few periods (the trunk would have to take it modulo N),
    and with this clock they stop at CLOCK_CAP_S.
    Zero before any typed message (NEVER)."""

    periods: Tensor

    def __init__(self, d_model: int, max_period_s: int = 60) -> None:
        super().__init__()
        per_s = 1000 // MICROTURN_MS
        self.register_buffer(
            "periods", torch.arange(1, max_period_s + 1) * per_s, persistent=False
        )  # micro-turns
        self.proj = nn.Linear(2 * max_period_s, d_model)

    def forward(self, now: Tensor, last: Tensor) -> Tensor:
        """now, last: micro-turn numbers (last NEVER: no typed message yet)."""
        t = (now - last).long()[..., None]
        angles = 2 * math.pi * (t % self.periods).float() / self.periods.float()
        seen = (last > NEVER // 2)[..., None].float()
        return self.proj(torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1) * seen)


class SaidNumber(nn.Module):
    """The last whole number the model said (-1: none; inference/numbers.py read_said) -> [..., d]:
    its digits, one-hot (config `said_number`)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.proj = nn.Linear(SAID_FEATURES, d_model)

    def forward(self, last: Tensor) -> Tensor:
        return self.proj(said_features(last))


# ---- trunk ----------------------------------------------------------------------------------------
@dataclass
class PinView:
    """What one attention call sees of the pins (config `pins`; inference/kvcache.py)."""

    q_cos: Tensor  # [.., T, D/2] rotary tables of the pin-relative query positions
    q_sin: Tensor
    mask: Tensor  # additive [B, 1, T, P] (streaming) or [B, 1, T, N] (offline: every world token)
    # streaming only: the cache and this step's pinned rows and their entries
    cache: KVCache | None = None
    at: Tensor | None = None
    entry: Tensor | None = None


def pin_query_tables(
    cfg: ModelConfig, token: Tensor, device: torch.device
) -> tuple[Tensor, Tensor]:
    """A pin is read as the world token of the micro-turn that just left the window: query token
    j of micro-turn m sits 2W + j - 1 positions after it, whatever the pin's age. token [..T]
    (the token type j of each query) -> cos, sin [..T, D/2]."""
    rel = TOKENS_PER_MICROTURN * cfg.window_microturns + token.to(device) - WORLD_TOKEN
    return rope_tables(rel, cfg.head_dim, cfg.rope_base)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        # attention sinks: key 0, a learned value and a learned logit per head
        self.sink_v = nn.Parameter(torch.zeros(cfg.n_heads, cfg.n_sinks, cfg.head_dim))
        self.sink_logit = nn.Parameter(torch.zeros(cfg.n_heads, cfg.n_sinks))

    def _raw_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch, n_tok, _ = x.shape
        q, k, v = self.qkv(x).view(batch, n_tok, 3, self.n_heads, self.head_dim).unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, D]

    def _attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor,
        pins: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        """q [B,H,T,D], k/v [B,H,C,D] (sinks first), mask [B,1,T,C] -> [B, T, d]. pins: (the
        queries rotated for pins, pin keys, pin values, their mask), attended in the same
        softmax.

        Plain softmax attention: at these sizes it beats SDPA with an additive mask on CPU.
        """
        n_sinks = self.sink_logit.shape[1]
        sink_bias = F.pad(self.sink_logit, (0, k.shape[2] - n_sinks))[None, :, None, :]  # [1,H,1,C]
        scale = self.head_dim**-0.5
        scores = (q @ k.to(q.dtype).transpose(-1, -2)) * scale + mask + sink_bias  # [B, H, T, C]
        if pins is None:
            probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
            y = probs @ v.to(q.dtype)  # [B, H, T, D]
        else:
            q_pin, k_pin, v_pin, pin_mask = pins
            pin_scores = (q_pin @ k_pin.to(q.dtype).transpose(-1, -2)) * scale + pin_mask
            probs = torch.softmax(torch.cat([scores, pin_scores], -1).float(), dim=-1).to(q.dtype)
            c = k.shape[2]
            y = probs[..., :c] @ v.to(q.dtype) + probs[..., c:] @ v_pin.to(q.dtype)
        return self.out(y.transpose(1, 2).flatten(2))

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, pins: PinView | None = None
    ) -> Tensor:
        """Offline, a whole sequence. x [B, N, d], mask [1 or B, 1, N, n_sinks + N]. pins: every
        world token is a pin candidate, `pins.mask` says which each query sees."""
        q_raw, k_raw, v = self._raw_qkv(x)
        q, k = apply_rope(q_raw, cos, sin), apply_rope(k_raw, cos, sin)
        batch = x.shape[0]
        sink_k = torch.zeros(
            batch, self.n_heads, self.sink_v.shape[1], self.head_dim, dtype=k.dtype, device=k.device
        )
        pin_args = None
        if pins is not None:
            q_pin = apply_rope(q_raw, pins.q_cos, pins.q_sin)
            world = slice(WORLD_TOKEN, None, TOKENS_PER_MICROTURN)
            pin_args = (q_pin, k_raw[:, :, world], v[:, :, world], pins.mask)
        k = torch.cat([sink_k, k], dim=2)
        v = torch.cat([self.sink_v.to(v.dtype).expand(batch, -1, -1, -1), v], dim=2)
        return self._attend(q, k, v, mask, pin_args)

    def step(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: KVCache,
        layer: int,
        rows: Rows,
        entries: Tensor,
        mask: Tensor,
        pins: PinView | None = None,
    ) -> Tensor:
        """Streaming, one micro-turn per row. x [B, T, d], mask [B, 1, T, C]."""
        q_raw, k_raw, v = self._raw_qkv(x)
        q, k = apply_rope(q_raw, cos, sin), apply_rope(k_raw, cos, sin)
        cache.write(layer, rows, entries, k, v)
        k_all, v_all = cache.read(layer, rows)  # [B, H, C, D]
        pin_args = None
        if pins is not None:
            assert pins.at is not None and pins.entry is not None
            cache.write_pin(
                layer, rows, pins.at, pins.entry, k_raw[:, :, WORLD_TOKEN], v[:, :, WORLD_TOKEN]
            )
            k_pin, v_pin = cache.read_pins(layer, rows)
            pin_args = (apply_rope(q_raw, pins.q_cos, pins.q_sin), k_pin, v_pin, pins.mask)
        return self._attend(q, k_all, v_all, mask, pin_args)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False),
            nn.GELU(approximate="tanh"),
            nn.Linear(cfg.mlp_hidden, cfg.d_model, bias=False),
        )

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, pins: PinView | None = None
    ) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, pins)
        return x + self.mlp(self.mlp_norm(x))

    def step(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: KVCache,
        layer: int,
        rows: Rows,
        entries: Tensor,
        mask: Tensor,
        pins: PinView | None = None,
    ) -> Tensor:
        x = x + self.attn.step(self.attn_norm(x), cos, sin, cache, layer, rows, entries, mask, pins)
        return x + self.mlp(self.mlp_norm(x))


# ---- inputs and outputs ---------------------------------------------------------------------------
@dataclass
class StepInput:
    """One micro-turn for each of B sessions, as device tensors."""

    audio: Tensor  # [B, 3200] float32
    frames: Tensor  # [B, 40, 40, 3] uint8
    has_frame: Tensor  # [B] bool
    text_in: Tensor  # [B, K_in] int64
    index: Tensor  # [B] int64, micro-turn on the session clock
    noise: Tensor  # [B, 1280] flow start noise, drawn per session


@dataclass
class StepOutput:
    text_ids: Tensor  # [B, K_out]
    control_logits: Tensor  # [B, 2]
    logmel: Tensor  # [B, 16, 80] log10 mel played this micro-turn
    audio: Tensor  # [B, 3200]
    hidden: Tensor  # [B, d] world-token hidden state (after the final norm)
    voice_advance: Tensor | None = None  # [B] the voice tape's advance (voice_window)


@dataclass
class Sequence:
    """Whole calls for the offline forward (training, tests): N micro-turns each."""

    audio: Tensor  # [B, N*3200]
    frames: Tensor  # [B, N, 40, 40, 3] uint8
    has_frame: Tensor  # [B, N]
    text_in: Tensor  # [B, N, K_in]
    index: Tensor  # [B, N]
    text_out: Tensor  # [B, N, K_out] what the model said at each micro-turn (teacher forcing)
    logmel_out: Tensor  # [B, N, 16, 80] what it played
    bins: Tensor | None = None  # [B, N, 8, C] dMel bins of `audio` if already computed (training)
    # the voice tape's advance chosen at each micro-turn (voice_window; inference/voice.py) [B, N]
    voice_advance: Tensor | None = None


@dataclass
class SequenceOutput:
    hidden: Tensor  # [B, N, d]
    text_logits: Tensor  # [B, N, K_out, V]
    control_logits: Tensor  # [B, N, 2]
    flow_cond: Tensor  # [B, N, d] the flow head's conditioning for each micro-turn
    voice_logits: Tensor | None = None  # [B, N, VOICE_CLASSES] the voice tape's advance


@dataclass
class StreamState:
    """Everything a session carries between micro-turns, for `slots` sessions, preallocated."""

    cache: KVCache
    n_microturns: Tensor  # [S] int64 steps taken (rotary positions and ring entries)
    dmel_tail: Tensor  # [S, 400]
    pitch_state: Tensor  # [S, 2] the speaker's reference pitch (pitch_in)
    prev_text: Tensor  # [S, K_out]
    prev_mel: Tensor  # [S, 16, 80] normalised
    voc_tail: Tensor  # [S, 1200] last samples played + the provisional ones after them
    voc_ctx: Tensor  # [S, 3, 80] last frames' log-mel
    last_eou: Tensor  # [S] int64 step whose text-in held the last EOU (NEVER: none yet)
    last_start: Tensor  # [S] int64 step at which the model last started an utterance
    said_ended: Tensor  # [S] bool the model's last output ended its utterance (or was silent)
    survival: Tensor  # [S] float probability that no utterance has started yet (onset decoding)
    prev_frame: Tensor  # [S, 40, 40, 3] uint8 the last camera frame seen (motion_in)
    has_prev_frame: Tensor  # [S] bool
    # copy pointer (copy_memory M, copy_context C): the last M + C text-in ids, oldest first, PAD
    # where none yet (the first C are only the context of the oldest visible one); the last C
    # bytes said
    copy_ids: Tensor  # [S, M + C] int64
    said: Tensor  # [S, C] int64
    # the voice tape (voice_window): bytes said, in a ring; how many; the first not voiced yet
    tape: Tensor  # [S, TAPE] int64
    tape_count: Tensor  # [S] int64
    voiced: Tensor  # [S] int64
    dwell: Tensor  # [S] int64 micro-turns since the cursor last moved
    numbers: NumberState  # the typed messages' numbers (number_clock; inference/numbers.py)
    said_numbers: SaidState  # the last number the model said (said_number)

    def tensors(self) -> list[Tensor]:
        return [
            self.cache.k,
            self.cache.v,
            self.cache.kpos,
            self.cache.pin_k,
            self.cache.pin_v,
            self.cache.pin_mt,
            self.cache.pin_count,
            self.n_microturns,
            self.dmel_tail,
            self.pitch_state,
            self.prev_text,
            self.prev_mel,
            self.voc_tail,
            self.voc_ctx,
            self.last_eou,
            self.last_start,
            self.said_ended,
            self.survival,
            self.prev_frame,
            self.has_prev_frame,
            self.copy_ids,
            self.said,
            self.tape,
            self.tape_count,
            self.voiced,
            self.dwell,
            *self.numbers.tensors(),
            *self.said_numbers.tensors(),
        ]


# ---- the model ------------------------------------------------------------------------------------
class InteractionModel(nn.Module):
    mel_mean: Tensor
    mel_std: Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.dmel = DMel(pitch=cfg.pitch_in)
        self.audio_in = DMelEmbedding(cfg.dmel_embed_dim, d, self.dmel.channels)
        self.video_in = VideoEmbedding(cfg.video_stem_dim, d)
        if cfg.motion_in:
            self.motion_in = MotionEmbedding(cfg.video_stem_dim, d)
        self.text_in = TextSlotsEmbedding(cfg.text_in_slots, cfg.text_embed_dim, d)
        self.said_text = TextSlotsEmbedding(cfg.text_out_slots, cfg.text_embed_dim, d)
        self.said_mel = nn.Linear(MEL_DIM, d)
        self.time = TimeEmbedding(cfg.time_embed_dim, d)
        if cfg.rel_clock:
            self.clock_text = TimeEmbedding(cfg.time_embed_dim, d)
            self.clock_said = TimeEmbedding(cfg.time_embed_dim, d)
            if cfg.phase_clock:
                self.clock_phase = PhaseClock(d)
            if cfg.number_clock:
                self.clock_number = NumberClock(d)
        if cfg.said_number:
            self.said_number = SaidNumber(d)
        self.token_type = nn.Parameter(torch.zeros(TOKENS_PER_MICROTURN, d))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(d)
        self.text_head = TextHead(
            cfg.text_out_slots,
            d,
            d,
            copy_dim=cfg.text_embed_dim if cfg.copy_memory else 0,
            copy_context=cfg.copy_context,
        )
        self.control_head = nn.Linear(d, N_CONTROL)
        self.flow_text = TextSlotsEmbedding(cfg.text_out_slots, cfg.text_embed_dim, d)
        self.flow = FlowHead(MEL_DIM, d, cfg.flow_width, cfg.flow_depth)
        self.voice = (
            VoiceTape(cfg.voice_window, cfg.text_embed_dim, d) if cfg.voice_window else None
        )
        self.vocoder = StreamingGriffinLim()
        # per-bin normalisation of the output mel (set from data by training; see checkpoint.py)
        self.register_buffer("mel_mean", torch.full((N_MELS,), -2.0))
        self.register_buffer("mel_std", torch.ones(N_MELS))

    @property
    def layers(self) -> list[Block]:
        return [cast(Block, block) for block in self.blocks]

    # ---- embeddings ----
    def _self_token(self, prev_text: Tensor, prev_mel: Tensor, time: Tensor) -> Tensor:
        x = self.said_text(prev_text)
        if self.cfg.mel_feedback:
            x = x + self.said_mel(prev_mel.flatten(-2))
        return x + time + self.token_type[SELF_TOKEN]

    def _world_token(
        self, bins: Tensor, frames: Tensor, has_frame: Tensor, text_in: Tensor, time: Tensor
    ) -> Tensor:
        x = self.audio_in(bins) + self.video_in(frames, has_frame) + self.text_in(text_in)
        return x + time + self.token_type[WORLD_TOKEN]

    def _clocks(
        self, now: Tensor, last_text: Tensor, last_said: Tensor, number: Tensor | None = None
    ) -> Tensor:
        """Relative clocks (micro-turns since the last typed message / own utterance, given as
        micro-turn numbers, NEVER for none; `number`: the last message's, number_clock) -> [.., d]."""
        cap = CLOCK_CAP_S * 1000 // MICROTURN_MS if self.cfg.phase_clock else None
        clocks = self.clock_text(elapsed_mt(now, last_text, cap)) + self.clock_said(
            elapsed_mt(now, last_said, cap)
        )
        ahead = now + self.cfg.clock_ahead  # the schedules read when this output is heard
        if self.cfg.phase_clock:
            clocks = clocks + self.clock_phase(ahead, last_text)
        if number is not None:
            clocks = clocks + self.clock_number(ahead, last_text, number)
        return clocks

    def normalize_mel(self, logmel: Tensor) -> Tensor:
        return (logmel - self.mel_mean) / self.mel_std

    def denormalize_mel(self, x: Tensor) -> Tensor:
        return (x * self.mel_std + self.mel_mean).clamp(LOG10_MEL_MIN, LOG10_MEL_MAX)

    # ---- offline ----
    def attention_mask(self, mt: Tensor) -> Tensor:
        """[B, 1, 2N, n_sinks + 2N] from each micro-turn's number on the call's clock, mt [B, N]
        (consecutive but for the jumps of a long episode's skipped stretches): causal, the last
        W micro-turns, sinks always."""
        batch = mt.shape[0]
        tok_mt = mt.repeat_interleave(TOKENS_PER_MICROTURN, dim=1)  # [B, 2N]
        order = torch.arange(tok_mt.shape[1], device=mt.device)
        visible = (order[None, None, :] <= order[None, :, None]) & (
            tok_mt[:, :, None] - tok_mt[:, None, :] < self.cfg.window_microturns
        )
        sinks = torch.ones(
            batch, tok_mt.shape[1], self.cfg.n_sinks, dtype=torch.bool, device=mt.device
        )
        visible = torch.cat([sinks, visible], 2)
        zero = torch.zeros((), device=mt.device)
        return torch.where(visible, zero, float("-inf"))[:, None]

    def pin_mask(self, mt: Tensor, pinned: Tensor) -> Tensor:
        """Offline pins, as the streaming cache keeps them: query micro-turn q sees the world
        token of micro-turn p when p brought typed text (`pinned` [B, N]), is among the last P
        such micro-turns up to q, and has left q's window. -> additive [B, 1, 2N, N]."""
        count = pinned.long().cumsum(1)  # pins written up to and including each micro-turn
        recent = (
            count[:, :, None] - count[:, None, :] < self.cfg.pins
        )  # [B, Nq, Np]: p is in the ring
        left = mt[:, :, None] - mt[:, None, :] >= self.cfg.window_microturns
        visible = pinned[:, None, :] & recent & left  # (left implies p before q)
        visible = visible.repeat_interleave(TOKENS_PER_MICROTURN, dim=1)  # [B, 2N, N]
        zero = torch.zeros((), device=mt.device)
        return torch.where(visible, zero, float("-inf"))[:, None]

    def forward(self, seq: Sequence) -> SequenceOutput:
        batch, n_mt = seq.index.shape
        bins = self.dmel.offline(seq.audio) if seq.bins is None else seq.bins  # [B, N, 8, C]
        time = self.time(seq.index)  # [B, N, d]
        prev_text = torch.cat([torch.full_like(seq.text_out[:, :1], PAD), seq.text_out[:, :-1]], 1)
        said = self.normalize_mel(seq.logmel_out)
        prev_mel = torch.cat([torch.zeros_like(said[:, :1]), said[:, :-1]], 1)  # [B, N, 16, 80]
        x_self = self._self_token(prev_text, prev_mel, time)
        x_world = self._world_token(bins, seq.frames, seq.has_frame, seq.text_in, time)
        if self.cfg.motion_in:
            prev, has_prev = last_seen(seq.frames, seq.has_frame)
            x_world = x_world + self.motion_in(seq.frames, prev, seq.has_frame & has_prev)
        mt = seq.index - seq.index[:, :1]  # micro-turns since the first (jumps included)
        if self.cfg.rel_clock:
            steps = mt
            last_eou = last_event((seq.text_in == EOU).any(-1))
            upto = last_event(utterance_starts(seq.text_out))  # last start at or before m
            last_start = torch.cat([torch.full_like(upto[:, :1], NEVER), upto[:, :-1]], 1)
            number = read_sequence(seq.text_in) if self.cfg.number_clock else None
            x_world = x_world + self._clocks(
                steps, at_step(steps, last_eou), at_step(steps, last_start), number
            )
        if self.cfg.said_number:
            x_world = x_world + self.said_number(read_said_sequence(prev_text))
        x = torch.stack([x_self, x_world], dim=2).flatten(1, 2)  # [B, 2N, d]
        token = torch.arange(TOKENS_PER_MICROTURN, device=x.device)
        pos = (TOKENS_PER_MICROTURN * mt[:, :, None] + token).flatten(1)  # [B, 2N]
        cos, sin = rope_tables(pos, self.cfg.head_dim, self.cfg.rope_base)
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, 2N, D/2]
        mask = self.attention_mask(mt)
        pins = None
        if self.cfg.pins:
            q_cos, q_sin = pin_query_tables(self.cfg, token.repeat(n_mt), x.device)
            pinned = (seq.text_in != PAD).any(-1)
            pins = PinView(q_cos, q_sin, self.pin_mask(mt, pinned))
        for block in self.blocks:
            x = block(x, cos, sin, mask, pins)
        h = self.norm(x.view(batch, n_mt, TOKENS_PER_MICROTURN, -1)[:, :, WORLD_TOKEN])  # [B, N, d]
        context: Tensor | None = None
        memory: Memory | None = None
        if self.text_head.copy is not None:
            ids, age, visible = memory_offline(seq.text_in, self.cfg.copy_memory)
            bias = self.text_head.copy.bias(age, visible)[:, :, None]  # [B, N, 1, J]
            context = said_contexts(seq.text_out, self.cfg.copy_context)
            memory = self.text_head.copy.memory(ids, bias)
        flow_cond = h + self.flow_text(seq.text_out)
        voice_logits = None
        if self.voice is not None:
            if seq.voice_advance is None:
                raise ValueError("a model with a voice tape needs the advances (voice_advance)")
            window, dwell = windows_offline(seq.text_out, seq.voice_advance, self.voice.width)
            voice_logits, w = self.voice.logits(h, window, dwell)
            flow_cond = flow_cond + self.voice.cond(w, seq.voice_advance)
        return SequenceOutput(
            hidden=h,
            text_logits=self.text_head(h, seq.text_out, context, memory),
            control_logits=self.control_head(h),
            flow_cond=flow_cond,
            voice_logits=voice_logits,
        )

    # ---- streaming ----
    def new_state(
        self, slots: int, device: torch.device | str, cache_dtype: torch.dtype
    ) -> StreamState:
        cfg = self.cfg
        cache = KVCache(
            cfg.n_layers,
            slots,
            cfg.n_heads,
            cfg.head_dim,
            cfg.n_sinks,
            cfg.window_microturns,
            device,
            cache_dtype,
            cfg.pins,
        )
        state = StreamState(
            cache=cache,
            n_microturns=torch.zeros(slots, dtype=torch.long, device=device),
            dmel_tail=torch.zeros(slots, DMEL_TAIL_SAMPLES, device=device),
            pitch_state=torch.zeros(slots, PITCH_STATE, device=device),
            prev_text=torch.full((slots, cfg.text_out_slots), PAD, dtype=torch.long, device=device),
            prev_mel=torch.zeros(slots, MEL_FRAMES_PER_MICROTURN, N_MELS, device=device),
            voc_tail=torch.zeros(slots, TAIL_SAMPLES, device=device),
            voc_ctx=torch.full((slots, CTX_FRAMES, N_MELS), LOG10_MEL_MIN, device=device),
            last_eou=torch.full((slots,), NEVER, dtype=torch.long, device=device),
            last_start=torch.full((slots,), NEVER, dtype=torch.long, device=device),
            said_ended=torch.ones(slots, dtype=torch.bool, device=device),
            survival=torch.ones(slots, device=device),
            prev_frame=torch.zeros(
                slots, FRAME_SIZE, FRAME_SIZE, 3, dtype=torch.uint8, device=device
            ),
            has_prev_frame=torch.zeros(slots, dtype=torch.bool, device=device),
            copy_ids=torch.full(
                (slots, cfg.copy_memory + cfg.copy_context), PAD, dtype=torch.long, device=device
            ),
            said=torch.full((slots, cfg.copy_context), PAD, dtype=torch.long, device=device),
            tape=torch.full((slots, TAPE), PAD, dtype=torch.long, device=device),
            tape_count=torch.zeros(slots, dtype=torch.long, device=device),
            voiced=torch.zeros(slots, dtype=torch.long, device=device),
            dwell=torch.zeros(slots, dtype=torch.long, device=device),
            numbers=NumberState.new(slots, device),
            said_numbers=SaidState.new(slots, device),
        )
        self.reset_state(state, torch.arange(slots, device=device))
        return state

    @torch.no_grad()
    def reset_state(self, state: StreamState, rows: Tensor) -> None:
        """A fresh call in these slots: empty window, sinks, silence before the start."""
        state.cache.reset(rows, [block.attn.sink_v for block in self.layers])
        state.n_microturns[rows] = 0
        state.dmel_tail[rows] = 0.0
        state.pitch_state[rows] = 0.0
        state.prev_text[rows] = PAD
        state.prev_mel[rows] = 0.0
        state.voc_tail[rows] = 0.0
        state.voc_ctx[rows] = LOG10_MEL_MIN
        state.last_eou[rows] = NEVER
        state.last_start[rows] = NEVER
        state.said_ended[rows] = True
        state.survival[rows] = 1.0
        state.prev_frame[rows] = 0
        state.has_prev_frame[rows] = False
        state.copy_ids[rows] = PAD
        state.said[rows] = PAD
        state.tape[rows] = PAD
        state.tape_count[rows] = 0
        state.voiced[rows] = 0
        state.dwell[rows] = 0
        state.numbers.reset(rows)
        state.said_numbers.reset(rows)

    def step(self, state: StreamState, rows: Rows, inp: StepInput) -> StepOutput:
        """One micro-turn for each row (a slot), rows of any ages. Advances their state."""
        cfg, idx = self.cfg, rows.index
        batch = len(rows)
        bins, dmel_tail, pitch_state = self.dmel.stream(
            inp.audio, state.dmel_tail[idx], state.pitch_state[idx]
        )  # [B, 8, C]
        time = self.time(inp.index)  # [B, d]
        x_world = self._world_token(bins, inp.frames, inp.has_frame, inp.text_in, time)
        if cfg.motion_in:
            moved = inp.has_frame & state.has_prev_frame[idx]
            x_world = x_world + self.motion_in(inp.frames, state.prev_frame[idx], moved)
            seen = inp.has_frame[:, None, None, None]
            state.prev_frame[idx] = torch.where(seen, inp.frames, state.prev_frame[idx])
            state.has_prev_frame[idx] = state.has_prev_frame[idx] | inp.has_frame
        if cfg.said_number:
            said_numbers = state.said_numbers.take(idx)
            x_world = x_world + self.said_number(read_said(said_numbers, state.prev_text[idx]))
            state.said_numbers.put(idx, said_numbers)
        x = torch.stack(
            [self._self_token(state.prev_text[idx], state.prev_mel[idx], time), x_world], dim=1
        )  # [B, 2, d]
        n_mt = state.n_microturns[idx]  # [B]
        if cfg.rel_clock:
            last_eou = torch.where((inp.text_in == EOU).any(-1), n_mt, state.last_eou[idx])
            state.last_eou[idx] = last_eou
            number = None
            if cfg.number_clock:
                numbers = state.numbers.take(idx)
                number = read(numbers, inp.text_in)
                state.numbers.put(idx, numbers)
            x[:, WORLD_TOKEN] = x[:, WORLD_TOKEN] + self._clocks(
                n_mt, last_eou, state.last_start[idx], number
            )
        pos = TOKENS_PER_MICROTURN * n_mt[:, None] + torch.arange(
            TOKENS_PER_MICROTURN, device=idx.device
        )  # [B, T]
        entries = state.cache.entries(n_mt)  # [B, T]
        state.cache.write_positions(rows, entries, pos)
        mask = state.cache.mask(rows, pos)  # [B, 1, T, C]
        cos, sin = rope_tables(pos, cfg.head_dim, cfg.rope_base)
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, T, D/2]
        pins = None
        if cfg.pins:
            pinned = (inp.text_in != PAD).any(-1)
            at, entry = state.cache.pin_entries(rows, pinned, n_mt)
            token = torch.arange(TOKENS_PER_MICROTURN, device=idx.device)
            q_cos, q_sin = pin_query_tables(cfg, token, idx.device)
            pin_mask = state.cache.pin_mask(rows, n_mt)  # [B, 1, 1, P]
            pins = PinView(q_cos, q_sin, pin_mask, state.cache, at, entry)
        for layer, block in enumerate(self.layers):
            x = block.step(x, cos, sin, state.cache, layer, rows, entries, mask, pins)
        h = self.norm(x[:, WORLD_TOKEN])  # [B, d]
        said, memory = None, None
        if self.text_head.copy is not None:
            said, memory = state.said[idx], self._remember(state, idx, inp.text_in)

        force = None
        if cfg.rel_clock and cfg.onset_survival > 0:
            # Onset decoding. A timed utterance's onset probability is often spread over a few
            # micro-turns (0.15 each, say), so greedy decoding never starts it. Track the
            # probability that the model would have started by now, 1 - prod(1 - p_speak), since
            # it last had no intention to speak (p_speak < 0.02), and start when it passes
            # `onset_survival`: the median of the model's own onset distribution.
            first = self.text_head.first_logits(h, said, memory)
            p_speak = 1.0 - first.float().softmax(-1)[:, SIL]
            idle = state.said_ended[idx]
            surv = state.survival[idx] * (1.0 - p_speak)
            force = idle & (surv < 1.0 - cfg.onset_survival)
            reset = ~idle | force | (p_speak < 0.02) | (p_speak > 0.5)
            state.survival[idx] = torch.where(reset, torch.ones_like(surv), surv)
        text_ids = self.text_head.generate(h, force, said, *(memory or (None,) * 4))
        control = self.control_head(h)  # [B, 2]
        noise = inp.noise * cfg.flow_temperature
        cond = h + self.flow_text(text_ids)
        advance = None
        if self.voice is not None:
            tape, count, window = tape_step(
                state.tape[idx],
                state.tape_count[idx],
                state.voiced[idx],
                text_ids,
                self.voice.width,
            )
            voice_logits, w = self.voice.logits(h, window, state.dwell[idx])
            advance = voice_logits.argmax(-1)
            cond = cond + self.voice.cond(w, advance)
            state.tape[idx] = tape
            state.tape_count[idx] = count
            state.voiced[idx] = tape_advance(count, state.voiced[idx], advance)
            state.dwell[idx] = dwell_after(state.dwell[idx], advance)
        x1 = self.flow.sample(cond, noise, cfg.flow_steps)  # [B, 1280]
        logmel = self.denormalize_mel(x1.float().view(batch, MEL_FRAMES_PER_MICROTURN, N_MELS))
        with torch.autocast(device_type=logmel.device.type, enabled=False):
            audio, voc_tail, voc_ctx = self.vocoder.stream(
                logmel, state.voc_tail[idx], state.voc_ctx[idx], cfg.griffin_lim_iters
            )

        state.dmel_tail[idx] = dmel_tail
        state.pitch_state[idx] = pitch_state
        state.prev_text[idx] = text_ids
        if said is not None:
            for k in range(text_ids.shape[1]):
                said = advance_said(said, text_ids[:, k])
            state.said[idx] = said
        state.prev_mel[idx] = self.normalize_mel(logmel)
        state.voc_tail[idx] = voc_tail
        state.voc_ctx[idx] = voc_ctx
        if cfg.rel_clock:
            started = speaks(text_ids) & state.said_ended[idx]
            state.last_start[idx] = torch.where(started, n_mt, state.last_start[idx])
            state.said_ended[idx] = ends_utterance(text_ids)
        state.n_microturns[idx] = n_mt + 1
        return StepOutput(
            text_ids, control.float(), logmel, audio.clamp(-1.0, 1.0), h.float(), advance
        )

    def _remember(self, state: StreamState, idx: Tensor, text_in: Tensor) -> Memory:
        """This micro-turn's text-in ids join the rows' copy memory (oldest out); -> the copy
        pointer's memory (`CopyPointer.memory`) over it, as `memory_offline` sees the same call."""
        assert self.text_head.copy is not None
        arrived = torch.cat([state.copy_ids[idx], pads_last(text_in)], 1)
        width = state.copy_ids.shape[1]
        at = (text_in != PAD).sum(1, keepdim=True) + torch.arange(width, device=idx.device)
        ids = arrived.gather(1, at)  # [B, M + C]
        state.copy_ids[idx] = ids
        skip = self.cfg.copy_context
        seen = ids[:, skip:]
        age = torch.arange(seen.shape[1] - 1, -1, -1, device=idx.device).expand_as(seen)
        pointer = self.text_head.copy
        return pointer.memory(ids, pointer.bias(age, seen != PAD), skip=skip)
