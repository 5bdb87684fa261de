"""The demo page's acceptance, offline: hellos every 3 s, counting the harness square, then "how many?"."""

from __future__ import annotations

import functools

import numpy as np

from lab.tasks.common import (
    MT,
    background,
    fits,
    scheduled,
    typed_eou,
)
from lab.tasks.episode import Episode, Utterance
from lab.tasks.motion import harness_motion, render


# ---- the demo page's acceptance, offline -----------------------------------------------------------
@functools.cache
def harness_clip(text: str = "hello, can you hear me?") -> np.ndarray:
    """The QA harness's fake microphone file (tests/browser/harness.py): espeak-ng's default
    voice saying `text`, untrimmed, at 16 kHz."""
    import subprocess

    from lab.tasks.voice import _read_wav

    proc = subprocess.run(
        ["espeak-ng", "--stdout"], input=text.encode(), check=True, capture_output=True
    )
    return _read_wav(proc.stdout).astype(np.float32)


def harness_mic(n: int) -> np.ndarray:
    """n micro-turns of the harness's microphone: its file looped, as Chromium loops it."""
    clip = harness_clip()
    return np.tile(clip, -(-n * MT // len(clip)))[: n * MT].copy()


def demo(rng: np.random.Generator, n: int) -> Episode:
    """The demo page as the page test drives it: a quiet room on the mic (the user types; spoken
    words would be answered), the QA harness's camera (the circling square); typed "say hello
    every 3 seconds", later "count my reps", then "how many?"."""
    ep = Episode(task="demo", n=n, start_index=0)
    motion = harness_motion()
    ep.frames, ep.has_frame, _, reps = render(motion, n, np.ones(n, bool), rng)
    ep.audio = background(rng, n)
    t_typed = 0  # the page test types as soon as the call is up
    ep.typed.append((t_typed, "say hello every 3 seconds"))
    t0 = typed_eou(ep, t_typed)
    stop = t0 + 15 * 4 + 5  # four hellos, then "stop"
    ep.typed.append((stop, "stop"))
    for k in range(1, 5):
        ep.say.append(scheduled(t0 + 15 * k, "hello"))
    c_typed = stop + 5
    ep.typed.append((c_typed, "count my reps"))
    c0 = typed_eou(ep, c_typed)
    ask = n - 8
    count = 0
    for m in reps:
        if c0 < m < ask:
            count += 1
            ep.say.append(Utterance(int(m), str(count), "count"))
    ep.typed.append((ask, "how many?"))
    q0 = typed_eou(ep, ask)
    ep.say.append(Utterance(q0 + (1 if not fits(ep.say, q0) else 0), str(count), "answer"))
    ep.info.update(t0=t0, c0=c0, q0=q0, total=count, harness=True)
    return ep
