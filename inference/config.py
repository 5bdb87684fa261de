"""Model configuration: the fixed interface constants and the named presets.

Two kinds of numbers live here.

* Interface constants (module level): the feature and output formats every checkpoint of this
  interface shares (dMel input, 12.5 ms mel output, 40x40 video patch, byte vocabulary, the token
  layout). A checkpoint records them and loading refuses one that disagrees.
* `ModelConfig`: the sizes a checkpoint may choose (width, depth, attention window, flow head, ...),
  with named presets: `tiny` (tests) and `small` (the shipped default).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from inference.protocol import MICROTURN_MS, MICROTURN_SAMPLES, SAMPLE_RATE_HZ

# ---- audio in: dMel (Bai et al. 2024) -------------------------------------------------------------
DMEL_N_FFT = 1024
DMEL_WIN_SAMPLES = 800  # 50 ms Hann
DMEL_HOP_SAMPLES = 400  # 25 ms
DMEL_FRAMES_PER_MICROTURN = MICROTURN_SAMPLES // DMEL_HOP_SAMPLES  # 8
DMEL_BINS = 16  # 4 bits per channel
N_MELS = 80
MEL_FMIN_HZ = 80.0
MEL_FMAX_HZ = 7600.0
LOG10_MEL_MIN = -7.0  # log10 magnitude-mel clip range (dMel's), shared by input and output
LOG10_MEL_MAX = 2.0

# ---- audio out: continuous log-mel at 12.5 ms, vocoded by streaming Griffin-Lim ------------------
OUT_N_FFT = 800  # no zero padding: 401 bins (20 Hz), cheaper Griffin-Lim iterations
OUT_WIN_SAMPLES = 800
OUT_HOP_SAMPLES = 200  # 12.5 ms
MEL_FRAMES_PER_MICROTURN = MICROTURN_SAMPLES // OUT_HOP_SAMPLES  # 16

# ---- video in: one 40x40 RGB patch per micro-turn through the hMLP stem ---------------------------
FRAME_SIZE = 40

# ---- token layout ---------------------------------------------------------------------------------
TOKENS_PER_MICROTURN = 2  # [self, world]; see inference/model.py
SELF_TOKEN, WORLD_TOKEN = 0, 1

CHECKPOINT_FORMAT = "microturn-interaction-model"
CHECKPOINT_VERSION = 1


def interface() -> dict[str, Any]:
    """The constants a checkpoint must agree with (stored in config.json, checked on load)."""
    return {
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "microturn_ms": MICROTURN_MS,
        "dmel": [DMEL_N_FFT, DMEL_WIN_SAMPLES, DMEL_HOP_SAMPLES, DMEL_BINS],
        "mel": [N_MELS, MEL_FMIN_HZ, MEL_FMAX_HZ, LOG10_MEL_MIN, LOG10_MEL_MAX],
        "mel_out": [OUT_N_FFT, OUT_WIN_SAMPLES, OUT_HOP_SAMPLES],
        "frame_size": FRAME_SIZE,
        "vocab": "bytes+pad,sil,eou",
        "tokens_per_microturn": TOKENS_PER_MICROTURN,
    }


@dataclass(frozen=True)
class ModelConfig:
    name: str = "microturn-small-v0"
    # trunk (decoder-only transformer over the fused token stream)
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 4
    mlp_hidden: int = 576
    window_microturns: int = 150  # bounded attention: the last W micro-turns (30 s) + sinks
    n_sinks: int = 2  # learned attention-sink key/value pairs per layer
    # pinned micro-turns: the world tokens of the last P micro-turns that brought typed text
    # (messages, background results) stay visible past the window (inference/kvcache.py), so
    # what the user asked outlives it; 0: none (the window alone)
    pins: int = 0
    rope_base: float = 10_000.0
    # inputs
    dmel_embed_dim: int = 48  # per-(channel, bin) embedding summed per 25 ms frame
    video_stem_dim: int = 48  # hMLP hidden channels
    text_embed_dim: int = 48
    text_in_slots: int = 8  # bytes of queued text entering per micro-turn: one word (<= 40 B/s)
    text_out_slots: int = 4  # bytes the model may say per micro-turn (20 B/s)
    time_embed_dim: int = 64  # sinusoidal elapsed-time features
    # relative clocks in the world token: time since the last typed message (or result) fully
    # entered, and since the model last started an utterance (what TimeSpeak needs)
    rel_clock: bool = True
    # with rel_clock: the clock since the last typed message also as its phase in every whole-
    # second period (model.PhaseClock), so a schedule minutes old is due where it was at first;
    # the relative clocks then read at most a minute (model.CLOCK_CAP_S)
    phase_clock: bool = False
    # with rel_clock: the last typed message's number (inference/numbers.py) against that clock:
    # whether it reads a whole number of those seconds, and its phase (model.NumberClock)
    number_clock: bool = False
    # the schedule clocks (phase_clock, number_clock) read the time this many micro-turns on: a
    # word said in micro-turn k is heard from the end of k + 1 (grace, step, playout; the live
    # evaluation's timing_parts), so a schedule's W said one micro-turn ahead is heard on time
    clock_ahead: int = 0
    # the last whole number the model said (its digits; inference/numbers.py read_said) given to
    # every micro-turn (model.SaidNumber): "how many?" answered from a register, not by reading
    # its own bytes back out of the window
    said_number: bool = False
    # the self token hears back the mel the model played. Off: only its text. In training that
    # mel is the clean target voice, in serving the flow head's sample, a mismatch that cost
    # free-running timing (docs/model.md); off, training and serving see the same self token
    mel_feedback: bool = True
    # a pitch channel beside the 80 mel channels: each 25 ms frame's pitch relative to the
    # speaker's (inference/pitch.py), the intonation that tells a turn's end from a pause
    pitch_in: bool = False
    # what moved since the last frame seen (the frame difference through its own stem; video.py)
    motion_in: bool = False
    # the copy pointer (inference/text.py): the text head may point into the last M text-in ids
    # the call received (typed messages, background results) and say them: values of any digits,
    # words it never trained on; 0: no pointer (generation alone)
    copy_memory: int = 0
    # how many of the bytes it said last the pointer matches against the ids before each memory
    # id (its explicit induction key, >= 2); more tells "meters" from "feet" after "e t"
    copy_context: int = 2
    # the voice tape (inference/voice.py): the flow head sees the bytes its audio voices, a
    # window of this many around a cursor that a voice head advances; 0: no tape (the flow head
    # sees the bytes chosen this micro-turn)
    voice_window: int = 0
    # outputs
    flow_width: int = 256
    flow_depth: int = 3
    flow_steps: int = 8  # Euler steps at sampling
    # the flow's start noise is scaled by this (a sampling temperature, as Grad-TTS and Matcha-TTS
    # sample): at 1 the model's voice came out noisy and loud (clipping, STOI 0.40 on the open
    # stage at step 500); at 0 it is the flow's deterministic path (STOI 0.73, the teacher's level)
    flow_temperature: float = 1.0
    griffin_lim_iters: int = 8  # measured mel error: 3.0 dB at 8, 2.9 at 32 (vocoder.py)
    speak_threshold_log10: float = -4.0  # mean output log10-mel above this = speaking
    # onset decoding: start an utterance once the probability that it has started by now
    # (1 - prod of the per-micro-turn "not yet") passes this; 0 = plain greedy (see model.py)
    onset_survival: float = 0.0

    def __post_init__(self) -> None:
        assert self.d_model % self.n_heads == 0, "d_model must divide into heads"
        assert (self.d_model // self.n_heads) % 2 == 0, "head dim must be even for rotary"
        assert self.window_microturns >= 1 and self.n_sinks >= 1
        assert self.flow_steps >= 1 and self.griffin_lim_iters >= 1

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        # fields added after version 1 was published: absent means their old behaviour
        data = {**{k: v for k, v in LATER_FIELDS.items() if k not in data}, **data}
        missing = sorted(known - set(data))
        if unknown or missing:
            raise ValueError(f"model config fields: unknown {unknown}, missing {missing}")
        return cls(**data)


LATER_FIELDS: dict[str, Any] = {
    "pins": 0,
    "flow_temperature": 1.0,
    "rel_clock": False,
    "onset_survival": 0.0,
    "mel_feedback": True,
    "pitch_in": False,
    "motion_in": False,
    "copy_memory": 0,
    "voice_window": 0,
    "phase_clock": False,
    "number_clock": False,
    "clock_ahead": 0,
    "said_number": False,
    "copy_context": 2,
}

PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        name="microturn-tiny-v0",
        d_model=64,
        n_layers=2,
        n_heads=2,
        mlp_hidden=128,
        window_microturns=6,
        n_sinks=1,
        dmel_embed_dim=8,
        video_stem_dim=8,
        text_embed_dim=8,
        time_embed_dim=16,
        flow_width=64,
        flow_depth=2,
        flow_steps=2,
        griffin_lim_iters=4,
    ),
    # the shipped model (inference/checkpoints/small): typed text pinned past the window, the
    # motion input, the flow sampled at its mean (temperature 0: the most intelligible voice),
    # the copy pointer over the last 128 text-in ids keyed by the last 4 bytes said, the voice
    # tape (8 bytes around its cursor), the schedule clocks a micro-turn ahead, the register of
    # the last number it said
    "small": ModelConfig(
        name="microturn-small-v10",
        mel_feedback=False,
        pitch_in=True,
        pins=32,
        motion_in=True,
        flow_temperature=0.0,
        copy_memory=128,
        copy_context=4,
        voice_window=8,
        phase_clock=True,
        number_clock=True,
        clock_ahead=1,
        said_number=True,
    ),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
