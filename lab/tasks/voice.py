"""Speech for the task generators: espeak-ng (and, held out, flite) renders, cached on disk, procedurally
(never downloaded).

User speech uses varied voices, speeds and pitch; the model's own voice is one fixed espeak-ng voice
(`MODEL_VOICE`), whose 12.5 ms log-mel is the flow head's target.

Cache: `$MICROTURN_CACHE` or `.cache/microturn/` under the repository (gitignored), one float32
`.npy` per (text, voice, speed, pitch), 16 kHz mono, leading/trailing silence trimmed.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly

from inference.config import MEL_FRAMES_PER_MICROTURN, N_MELS, OUT_HOP_SAMPLES
from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ

TRIM_LEVEL = 1e-3  # |sample| below this at the ends counts as silence


@dataclass(frozen=True)
class Voice:
    name: str  # espeak-ng voice, e.g. "en-us+f3"; flite: kal, kal16, awb, rms, slt
    speed: int  # words per minute
    pitch: int  # 0-99 (espeak-ng only; flite keeps its voice's own pitch)
    engine: str = "espeak-ng"  # or "flite" (held out of training: the live evaluation's voices)


MODEL_VOICE = Voice("en-us", 175, 45)
USER_BASES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan")
USER_VARIANTS = ("", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4", "+m7")
# voices held out of training: evaluation may use them to test unseen speakers
HELD_OUT_BASES = ("en-gb-x-gbcwmd",)


def cache_dir() -> Path:
    env = os.environ.get("MICROTURN_CACHE")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / ".cache" / "microturn"
    out = root / "speech"
    if not out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        ignore = root / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# generated speech renders (lab/tasks/voice.py)\n*\n")
    return out


def random_user_voice(rng: np.random.Generator, held_out: bool = False) -> Voice:
    bases = HELD_OUT_BASES if held_out else USER_BASES
    base = bases[int(rng.integers(len(bases)))]
    variant = USER_VARIANTS[int(rng.integers(len(USER_VARIANTS)))]
    # speeds and pitches on a coarse grid, so the cache stays small
    return Voice(
        base + variant, int(rng.choice([130, 150, 170, 190])), int(rng.choice([30, 45, 60, 75]))
    )


FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FLITE_NATURAL_WPM = 170  # flite's own pace: a voice's `speed` stretches durations from it


def _flite(text: str, voice: Voice) -> bytes:
    """flite's WAV of `text` (through files: flite cannot write a WAV to a pipe)."""
    stretch = FLITE_NATURAL_WPM / voice.speed
    with tempfile.TemporaryDirectory(prefix="microturn-flite-") as tmp:
        src, out = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
        src.write_text(text, encoding="utf-8")
        cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={stretch:.3f}"]
        subprocess.run([*cmd, "-f", str(src), "-o", str(out)], check=True, capture_output=True)
        return out.read_bytes()


def _render(text: str, voice: Voice) -> np.ndarray:
    if voice.engine == "flite":
        wav = _flite(text, voice)
    else:
        cmd = ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch)]
        # the text on stdin: one starting with "-" is not an option
        wav = subprocess.run(
            [*cmd, "--stdout"], input=text.encode("utf-8"), check=True, capture_output=True
        ).stdout
    x = _read_wav(wav)
    loud = np.flatnonzero(np.abs(x) > TRIM_LEVEL)
    if loud.size == 0:
        return np.zeros(0, np.float32)
    return np.ascontiguousarray(x[max(0, loud[0] - 80) : loud[-1] + 160])


def _read_wav(data: bytes) -> np.ndarray:
    """A WAV file's bytes -> 16 kHz float32 mono."""
    with wave.open(io.BytesIO(data)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    x = pcm.astype(np.float32) / 32768.0
    if rate != SAMPLE_RATE_HZ:
        g = np.gcd(rate, SAMPLE_RATE_HZ)
        x = resample_poly(x, SAMPLE_RATE_HZ // g, rate // g).astype(np.float32)
    return x


_memory: dict[tuple[str, Voice], np.ndarray] = {}


def speech(text: str, voice: Voice) -> np.ndarray:
    """16 kHz float32 mono speech of `text`, trimmed; cached in memory and on disk."""
    key = (text, voice)
    got = _memory.get(key)
    if got is not None:
        return got
    engine = "" if voice.engine == "espeak-ng" else f"|{voice.engine}"  # espeak keys as before
    key_text = f"{text}|{voice.name}|{voice.speed}|{voice.pitch}{engine}"
    digest = hashlib.sha1(key_text.encode()).hexdigest()
    path = cache_dir() / f"{digest[:20]}.npy"
    try:
        audio = np.load(path)
    except (OSError, ValueError):
        audio = _render(text, voice)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, audio)
        os.replace(tmp, path)
    if len(_memory) < 20_000:
        _memory[key] = audio
    return audio


# ---- the model's voice as output mel ---------------------------------------------------------------
@lru_cache(maxsize=4096)
def model_mel(text: str) -> np.ndarray:
    """log10 mel [F, 80] of `text` in the model's voice at 12.5 ms frames, F a whole number of
    micro-turns (frame j centred on sample 200 j of the utterance, as the vocoder plays it)."""
    from inference.vocoder import output_log10_mel

    audio = speech(text, MODEL_VOICE)
    n_mt = max(1, -(-len(audio) // MICROTURN_SAMPLES))
    padded = np.zeros(n_mt * MICROTURN_SAMPLES, np.float32)
    padded[: len(audio)] = audio
    mel = output_log10_mel(torch.from_numpy(padded)[None])[0].numpy()
    assert mel.shape == (n_mt * MEL_FRAMES_PER_MICROTURN, N_MELS)
    return mel


def model_audio(text: str) -> np.ndarray:
    """The reference rendering of a model phrase (for STOI)."""
    return speech(text, MODEL_VOICE)


assert OUT_HOP_SAMPLES * MEL_FRAMES_PER_MICROTURN == MICROTURN_SAMPLES
