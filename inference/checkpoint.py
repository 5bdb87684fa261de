"""Checkpoints: safetensors weights + a JSON config, loaded without pickle.

A checkpoint is a directory:

    config.json
        {"format": "microturn-interaction-model", "version": 1,
         "name": "microturn-small-v0", "preset": "small" | null,
         "config": {every ModelConfig field},          # the sizes (d_model, n_layers, ...)
         "interface": {...},                            # inference.config.interface(): features,
                                                        # mel output, frame size, vocabulary, layout
         "dtype": "bfloat16" | "float32", "n_params": int}
    model.safetensors
        every tensor of InteractionModel.state_dict(), named by module path, e.g.
        audio_in.bag.weight [1280, e]        per-(mel channel, dMel bin) vectors (+16 for pitch_in)
        audio_in.proj.weight/bias            8 frames x e -> d
        video_in.stem.conv{1,2,3}.*, norm{1,2,3}.*, video_in.no_frame
        text_in.*, said_text.*, said_mel.*, flow_text.*   input / feedback embeddings
        time.proj.*, token_type [2, d]
        blocks.{i}.attn.qkv.weight [3d, d], attn.out.weight, attn.sink_v [H, n_sinks, D],
        attn.sink_logit [H, n_sinks], attn_norm/mlp_norm.weight, mlp.{0,2}.weight
        norm.weight, text_head.*, control_head.*, flow.* (x_in, t_mlp, c_in, c_mod, t_mod,
        blocks.{i}.norm/mlp, out), mel_mean [80], mel_std [80]
        header metadata: format, version, and "config" (the ModelConfig the weights were saved with)

`python -m inference.checkpoint --describe PATH` prints the full table.

Serving another model: inference.loading.load_model() reads a config.json that names its class
(`{"class": "package.module:ClassName"}`) and builds that instead (docs/model.md, "Serve your own
model"). Without "class" it is this reference model.

Loading refuses, with a message naming the difference: an unknown format or newer version, an
interface that differs from this code's, config fields unknown or missing, a config.json whose
architecture fields differ from the config stored inside the weights, and missing, unexpected or
misshapen tensors. Sampling settings (flow_steps, griffin_lim_iters, speak_threshold_log10) may be
edited in config.json: they change no weights.

    python -m inference.checkpoint --init small --out inference/checkpoints/small
builds the shipped, untrained checkpoint reproducibly (fixed seed; a later issue trains it).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from inference.config import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    LATER_FIELDS,
    PRESETS,
    ModelConfig,
    interface,
    preset,
)
from inference.model import CONTROL_DELEGATE, InteractionModel
from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ
from inference.text import SIL
from inference.vocoder import output_log10_mel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SHIPPED_DIR = Path(__file__).parent / "checkpoints" / "small"
SAMPLING_FIELDS = frozenset(
    {
        "name",
        "flow_steps",
        "flow_temperature",
        "griffin_lim_iters",
        "speak_threshold_log10",
        "onset_survival",
    }
)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CheckpointError(ValueError):
    """The checkpoint is not one this code can serve; the message says why."""


# ---- init -----------------------------------------------------------------------------------------
def speech_like_mel_stats(rms: float = 0.05, seed: int = 0) -> torch.Tensor:
    """Mean log10 mel [80] of noise with a speech-like tilt (flat to 500 Hz, -6 dB/oct above) at
    the given RMS: the untrained model's output sits here, audible and far from clipping."""
    gen = torch.Generator().manual_seed(seed)
    n = 20 * MICROTURN_SAMPLES
    spec = torch.fft.rfft(torch.randn(n, generator=gen))
    freqs = torch.fft.rfftfreq(n, d=1.0 / SAMPLE_RATE_HZ)
    spec = spec * torch.clamp(500.0 / freqs.clamp_min(1.0), max=1.0)
    audio = torch.fft.irfft(spec, n=n)
    audio = audio * (rms / audio.pow(2).mean().sqrt())
    return output_log10_mel(audio[None])[0, 4:-4].mean(0)


def init_model(cfg: ModelConfig, seed: int = 0) -> InteractionModel:
    """A fresh model, reproducibly: nanoGPT-style init, AdaLN-zero flow head, quiet heads."""
    torch.manual_seed(seed)
    model = InteractionModel(cfg)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Embedding | nn.EmbeddingBag):
            std = 0.02
            if name.endswith(("attn.out", "mlp.2")) and name.startswith("blocks."):
                std = 0.02 / math.sqrt(2 * cfg.n_layers)  # residual projections (GPT-2)
            nn.init.normal_(module.weight, 0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
    model.flow.zero_init()
    if cfg.rel_clock:  # the relative clocks start silent (a warm start from a model without them)
        for clock in (model.clock_text, model.clock_said):
            nn.init.zeros_(clock.proj.weight)
    if cfg.rel_clock and cfg.phase_clock:
        nn.init.zeros_(model.clock_phase.proj.weight)
    if cfg.rel_clock and cfg.number_clock:
        nn.init.zeros_(model.clock_number.proj.weight)
    if cfg.said_number:  # and the register of its own last number
        nn.init.zeros_(model.said_number.proj.weight)
    if cfg.motion_in:  # so does the motion input (its gate)
        nn.init.zeros_(model.motion_in.gate.weight)
    if model.text_head.copy is not None:  # and the copy pointer (its gate nearly shut)
        model.text_head.copy.neutral_init()
    if model.voice is not None:  # and the voice tape (adds nothing to the flow's conditioning)
        model.voice.neutral_init()
    with torch.no_grad():
        # Untrained behaviour the server can rely on: no text, no delegation, moderate audio.
        model.text_head.out.bias[SIL] = 4.0
        nn.init.zeros_(model.control_head.weight)
        model.control_head.bias.copy_(torch.tensor([0.0, -6.0]))
        assert CONTROL_DELEGATE == 1
        model.mel_mean.copy_(speech_like_mel_stats())
        model.mel_std.fill_(0.3)
    return model.eval()


# new parts that start from their own init: the copy pointer's gate starts at sigmoid(5) = 0.993
# generator (inference/text.py), so the widened model's bytes are the old model's but in near ties;
# the phase and number clocks' projections start at zero
NEUTRAL_STARTS = (
    "text_head.copy.",
    "voice.",
    "clock_phase.",
    "clock_number.",
    "said_number.",
)


def widen(model: InteractionModel, cfg: ModelConfig, seed: int = 0) -> InteractionModel:
    """A model of config `cfg` that computes what `model` computed: every tensor copied; an input
    `cfg` adds starts at zero (the pitch channel's (channel, bin) vectors: rows appended to the
    dMel EmbeddingBag), a new part in NEUTRAL_STARTS from its own init. For a training stage that
    gives a trained model a new input or head."""
    new = init_model(cfg, seed)
    # a part of NEUTRAL_STARTS keeps its own init: it leaves the old outputs (nearly) as they were
    for name in take_weights(new, model.state_dict()):
        if not name.startswith(NEUTRAL_STARTS):
            raise ValueError(f"widen: {name} is new and has no zero start; not supported")
    return new


def take_weights(model: nn.Module, given: dict[str, Tensor]) -> list[str]:
    """Every tensor of `model` that `given` has takes its values (`copy_grown`: a tensor grown
    since keeps them at its start), in place; -> the names `given` lacks (left as initialised)."""
    own = model.state_dict()
    with torch.no_grad():
        for name, t in own.items():
            if name in given:
                copy_grown(name, t, given[name])
    return [name for name in own if name not in given]


def copy_grown(name: str, t: Tensor, src: Tensor) -> None:
    """t (freshly initialised) takes src's values, in place. A tensor grown along its first
    dimension keeps src's values and, after them, zeros (the dMel rows of a new input channel:
    the old function) or, in a part of NEUTRAL_STARTS, its own init (the copy pointer's bonus for
    a longer key: MATCH_INIT per byte, as the first two had; v9 so widened said "8.53 meters"
    whole untrained, where it had said "8.53 met")."""
    if src.shape == t.shape:
        t.copy_(src)
    elif src.shape[1:] == t.shape[1:] and src.shape[0] < t.shape[0]:
        if not name.startswith(NEUTRAL_STARTS):
            t.zero_()
        t[: src.shape[0]].copy_(src)
    else:
        raise ValueError(f"widen: {name} {tuple(src.shape)} -> {tuple(t.shape)}")


# ---- save / load ----------------------------------------------------------------------------------
def _arch(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in SAMPLING_FIELDS}


def save(
    model: InteractionModel,
    out_dir: str | Path,
    dtype: str = "float32",
    preset_name: str | None = None,
) -> Path:
    """Write config.json + model.safetensors into out_dir (created)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg.to_dict()
    tensors = {
        k: v.detach().to("cpu", DTYPES[dtype]).contiguous() for k, v in model.state_dict().items()
    }
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": str(CHECKPOINT_VERSION),
        "config": json.dumps(cfg, sort_keys=True),
    }
    save_file(tensors, str(out / WEIGHTS_FILE), metadata=meta)
    doc = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "name": model.cfg.name,
        "preset": preset_name,
        "config": cfg,
        "interface": interface(),
        "dtype": dtype,
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    (out / CONFIG_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    return out


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        p = p.parent
    if not (p / CONFIG_FILE).is_file() or not (p / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{p}: expected a directory with {CONFIG_FILE} and {WEIGHTS_FILE}")
    return p


def read_config(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """Validate config.json; -> (ModelConfig, the whole JSON document)."""
    p = _resolve(path)
    try:
        doc = json.loads((p / CONFIG_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{p / CONFIG_FILE}: not JSON ({exc})") from None
    if doc.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p}: format {doc.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    if doc.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{p}: version {doc.get('version')!r}, this code reads {CHECKPOINT_VERSION}"
        )
    if doc.get("interface") != interface():
        raise CheckpointError(
            f"{p}: interface {doc.get('interface')} differs from this code's {interface()}"
        )
    try:
        cfg = ModelConfig.from_dict(doc.get("config", {}))
    except (TypeError, ValueError, AssertionError) as exc:
        raise CheckpointError(f"{p}: bad config: {exc}") from None
    return cfg, doc


def load(path: str | Path | None = None, device: str | torch.device = "cpu") -> InteractionModel:
    """Load a checkpoint directory (or either of its files); None -> the shipped `small`."""
    p = _resolve(SHIPPED_DIR if path is None else path)
    cfg, _ = read_config(p)
    weights = p / WEIGHTS_FILE
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != str(CHECKPOINT_VERSION):
        raise CheckpointError(f"{weights}: not a {CHECKPOINT_FORMAT} v{CHECKPOINT_VERSION} file")
    # fields added later are absent from older weights' header: their old value, as in config.json
    saved = _arch({**LATER_FIELDS, **json.loads(meta.get("config", "{}"))})
    given = _arch(cfg.to_dict())
    if saved != given:
        diff = sorted(k for k in set(saved) | set(given) if saved.get(k) != given.get(k))
        detail = ", ".join(
            f"{k}: config.json {given.get(k)!r} vs weights {saved.get(k)!r}" for k in diff
        )
        raise CheckpointError(f"{p}: config does not match the weights ({detail})")
    model = InteractionModel(cfg)
    tensors = load_file(str(weights), device="cpu")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshapen = sorted(
        k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape
    )
    if missing or unexpected or misshapen:
        raise CheckpointError(
            f"{p}: tensors do not match the config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, misshapen {misshapen[:5]}"
        )
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    )
    return model.to(device).eval()


def describe(path: str | Path) -> str:
    p = _resolve(path)
    _, doc = read_config(p)
    lines = [f"{doc['name']} ({doc.get('preset')}, {doc['dtype']}, {doc['n_params']:,} parameters)"]
    with safe_open(str(p / WEIGHTS_FILE), framework="pt") as f:
        for key in sorted(f.keys()):
            lines.append(f"  {key:42s} {list(f.get_slice(key).get_shape())}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.checkpoint", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--init", choices=sorted(PRESETS), help="write a fresh checkpoint of this preset"
    )
    parser.add_argument("--out", help="output directory for --init")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument("--describe", metavar="PATH", help="print a checkpoint's tensors")
    args = parser.parse_args(argv)
    if args.describe:
        print(describe(args.describe))
        return 0
    if not args.init or not args.out:
        parser.error("use --init PRESET --out DIR, or --describe PATH")
    model = init_model(preset(args.init), seed=args.seed)
    out = save(model, args.out, dtype=args.dtype, preset_name=args.init)
    load(out)  # round-trip check
    print(
        f"wrote {out} ({model.cfg.name}, {sum(p.numel() for p in model.parameters()):,} parameters)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
