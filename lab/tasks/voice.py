"""Speech for the task generators: renders of Debian's TTS engines, cached on disk, procedurally
(never downloaded).

    espeak-ng  formant synthesis: 6 accents x 10 variants, speeds and pitches (training users)
    festival   concatenative diphone voices kal and ked, stretched and pitch-shifted (training
               users), and the HTS voice cmu_us_slt_arctic_hts: the model's own voice
               (`MODEL_VOICE`), whose 12.5 ms log-mel is the flow head's target. Chosen by the
               speech judge (lab/eval/metrics/heard.py): pocketsphinx hears 85 % of its words on
               WordNet sentences, 83 % through the model's vocoder; espeak-ng en-us: 10 %
    flite      held out of training: the live and open evaluations' speakers (its kal voice is
               the diphone set festival's kal_diphone is built from: report held-out speakers
               awb, rms and slt apart from kal)

Licences: espeak-ng GPL-3; festival and its voices, flite: BSD-style (CMU, Edinburgh).

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
from dataclasses import dataclass, replace
from fractions import Fraction
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
    name: str  # espeak-ng voice, e.g. "en-us+f3"; flite: kal, kal16, awb, rms, slt; festival: ked_diphone
    speed: int  # words per minute
    # espeak-ng: its 0-99 pitch; festival: a shift in semitones (sox); flite: unused
    pitch: int
    engine: str = "espeak-ng"  # festival, or flite (held out of training)
    # The render resampled so that pitch, formants and pace all scale by this (a longer or
    # shorter vocal tract, Kaldi's speed perturbation): more speakers out of the training bank's
    # voices (lab/tasks/speakers.warped). 1: as the engine renders it.
    warp: float = 1.0


MODEL_VOICE = Voice("cmu_us_slt_arctic_hts", 170, 0, engine="festival")
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


FESTIVAL_USER_VOICES = ("kal_diphone", "ked_diphone")
FESTIVAL_SHIFTS = (-3, 0, 2, 4, 6)  # semitones: deeper, as recorded, and up to a higher voice


def random_user_voice(rng: np.random.Generator) -> Voice:
    """A training user: espeak-ng (60 %) or a festival diphone voice, at varied speed and pitch."""
    if rng.random() < 0.6:
        return espeak_voice(rng)
    name = FESTIVAL_USER_VOICES[int(rng.integers(len(FESTIVAL_USER_VOICES)))]
    speed = int(rng.choice([140, 155, 170, 185, 200]))
    return Voice(name, speed, int(rng.choice(FESTIVAL_SHIFTS)), engine="festival")


def espeak_voice(rng: np.random.Generator, held_out: bool = False) -> Voice:
    """An espeak-ng user voice (the only kind before the open-speech world; the frozen live
    episodes still draw theirs here)."""
    bases = HELD_OUT_BASES if held_out else USER_BASES
    base = bases[int(rng.integers(len(bases)))]
    variant = USER_VARIANTS[int(rng.integers(len(USER_VARIANTS)))]
    # speeds and pitches on a coarse grid, so the cache stays small
    return Voice(
        base + variant, int(rng.choice([130, 150, 170, 190])), int(rng.choice([30, 45, 60, 75]))
    )


FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FLITE_NATURAL_WPM = 170  # flite's own pace: a voice's `speed` stretches durations from it


def flite_voice(rng: np.random.Generator) -> Voice:
    """A speaker of the held-out engine (the live and open evaluations' users)."""
    name = FLITE_VOICES[int(rng.integers(len(FLITE_VOICES)))]
    return Voice(name, int(rng.choice([140, 160, 180])), 0, engine="flite")


def _flite(text: str, voice: Voice) -> bytes:
    """flite's WAV of `text` (through files: flite cannot write a WAV to a pipe)."""
    stretch = FLITE_NATURAL_WPM / voice.speed
    with tempfile.TemporaryDirectory(prefix="microturn-flite-") as tmp:
        src, out = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
        src.write_text(text, encoding="utf-8")
        cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={stretch:.3f}"]
        subprocess.run([*cmd, "-f", str(src), "-o", str(out)], check=True, capture_output=True)
        return out.read_bytes()


FESTIVAL_NATURAL_WPM = 170


class _Festival:
    """One persistent festival process per voice (per process: the data workers fork), fed
    Scheme on stdin: ~15-70 ms a render instead of ~0.4 s of start-up per call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "festival", "--pipe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.tmp = tempfile.mkdtemp(prefix="microturn-festival-")

    def synth(self, text: str, stretch: float, then: str = "") -> tuple[bytes, list[str]]:
        """Render `text` (as `microturn_utt`), run the Scheme `then` on it -> (the WAV, the lines
        festival printed)."""
        out = Path(self.tmp) / "speech.wav"
        out.unlink(missing_ok=True)
        quoted = text.replace("\\", " ").replace('"', " ")
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(
            f"(voice_{self.name})(Parameter.set 'Duration_Stretch {stretch:.3f})"
            f'(set! microturn_utt (utt.synth (Utterance Text "{quoted}")))'
            f'(utt.save.wave microturn_utt "{out}" \'riff){then}'
            '(print "MICROTURN-DONE")\n'
        )
        self.proc.stdin.flush()
        seen: list[str] = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"festival ({self.name}) ended: {''.join(seen[-5:])}")
            if "MICROTURN-DONE" in line:
                break
            seen.append(line)
        return out.read_bytes(), seen

    def timings(self, text: str, stretch: float) -> tuple[bytes, list[tuple[str, float, float]]]:
        """The render and its tokens' times: (WAV, [(token, start s, end s)]), each token as
        festival split the text (punctuation stripped) with its spoken words' span."""
        wav, lines = self.synth(text, stretch, _TOKEN_TIMES)
        tokens: list[tuple[str, float, float]] = []
        for line in lines:
            if line.startswith("MICROTURN-T "):
                tokens.append((line[12:].rstrip("\n"), float("inf"), 0.0))
            elif line.startswith("MICROTURN-W ") and tokens:
                start, end = (float(v) for v in line.split()[1:3])
                if end > 0:  # a spoken word (punctuation is a word with no time)
                    name, s0, e0 = tokens[-1]
                    tokens[-1] = (name, min(s0, start), max(e0, end))
        return wav, tokens


# Scheme: print each token of `microturn_utt` and the start and end of each of its words
_TOKEN_TIMES = (
    "(define (microturn_tokens tok) (if tok (begin"
    ' (format t "MICROTURN-T %s\\n" (item.name tok))'
    ' (mapcar (lambda (w) (format t "MICROTURN-W %s %s\\n"'
    " (item.feat w 'word_start) (item.feat w 'word_end))) (item.daughters tok))"
    " (microturn_tokens (item.next tok)))))"
    "(microturn_tokens (utt.relation.first microturn_utt 'Token))"
)


_festivals: dict[tuple[int, str], _Festival] = {}


def _festival_process(name: str) -> _Festival:
    """This process's festival for a voice (started, or restarted if it ended)."""
    key = (os.getpid(), name)
    proc = _festivals.get(key)
    if proc is None or proc.proc.poll() is not None:
        proc = _festivals[key] = _Festival(name)
    return proc


def _festival(text: str, voice: Voice) -> bytes:
    wav, _ = _festival_process(voice.name).synth(text, FESTIVAL_NATURAL_WPM / voice.speed)
    if voice.pitch:
        wav = subprocess.run(
            ["sox", "-t", "wav", "-", "-t", "wav", "-", "pitch", str(100 * voice.pitch)],
            input=wav,
            check=True,
            capture_output=True,
        ).stdout
    return wav


def _render(text: str, voice: Voice) -> np.ndarray:
    if voice.engine == "flite":
        wav = _flite(text, voice)
    elif voice.engine == "festival":
        wav = _festival(text, voice)
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
    return np.ascontiguousarray(x[_trim_start(loud) : loud[-1] + 160])


def _trim_start(loud: np.ndarray) -> int:
    """The first sample a trimmed render keeps, from the indices of its loud samples."""
    return max(0, int(loud[0]) - 80)


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


def warp_clip(x: np.ndarray, warp: float) -> np.ndarray:
    """`x` resampled by 1/warp and played at the same rate: every frequency times `warp`, every
    duration divided by it."""
    ratio = Fraction(1 / warp).limit_denominator(40)
    return resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)


def speech(text: str, voice: Voice) -> np.ndarray:
    """16 kHz float32 mono speech of `text`, trimmed; cached in memory and on disk (a warped
    voice's render is its engine render's, warped at each use)."""
    if voice.warp != 1.0:
        return warp_clip(speech(text, replace(voice, warp=1.0)), voice.warp)
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


def _align_bytes(text: str, tokens: list[tuple[str, float, float]], end: float) -> np.ndarray:
    """Per byte of `text` (utf-8), the time its sound starts: a token's bytes spread evenly over
    its words' span; a byte between tokens (space, punctuation) at the end of the token before
    it; bytes festival did not voice as a token at the next token's start."""
    raw = text.encode("utf-8")
    times = np.full(len(raw), np.nan, np.float64)
    at = 0
    for name, start, stop in tokens:
        if not np.isfinite(start) or stop <= start:
            continue
        found = raw.find(name.encode("utf-8"), at)
        if found < 0:
            continue
        n = len(name.encode("utf-8"))
        times[found : found + n] = start + (stop - start) * np.arange(n) / n
        if found + n < len(raw):
            times[found + n] = stop  # the byte after a token: the pause after it
        at = found + n
    # the rest: the next known time (so the cursor waits for the sound), else the end
    nxt = end
    for i in range(len(raw) - 1, -1, -1):
        if np.isnan(times[i]):
            times[i] = nxt
        nxt = min(nxt, times[i])
    return np.maximum.accumulate(times)


@lru_cache(maxsize=4096)
def model_alignment(text: str) -> np.ndarray:
    """float32 [len(text.encode())]: the second at which each byte of `text` starts sounding in
    `model_mel(text)` (the trimmed render), from festival's word timings; cached on disk."""
    voice = MODEL_VOICE
    digest = hashlib.sha1(f"align|{text}|{voice}".encode()).hexdigest()
    path = cache_dir() / f"align-{digest[:20]}.npy"
    try:
        return np.load(path)
    except (OSError, ValueError):
        pass
    wav, tokens = _festival_process(voice.name).timings(text, FESTIVAL_NATURAL_WPM / voice.speed)
    loud = np.flatnonzero(np.abs(_read_wav(wav)) > TRIM_LEVEL)
    lead = _trim_start(loud) / SAMPLE_RATE_HZ if loud.size else 0.0
    end = len(speech(text, voice)) / SAMPLE_RATE_HZ
    times = (_align_bytes(text, tokens, end + lead) - lead).clip(0.0, end).astype(np.float32)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, times)
    os.replace(tmp, path)
    return times


assert OUT_HOP_SAMPLES * MEL_FRAMES_PER_MICROTURN == MICROTURN_SAMPLES
