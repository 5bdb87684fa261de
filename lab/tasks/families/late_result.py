"""Background results that arrive minutes after the request (issue 30): `delegate_long`
(training, a jump between the request and its result, as in families/long.py) and
`long_delegate` (evaluation, 4-minute calls stepped whole)."""

from __future__ import annotations

import numpy as np

from lab.tasks.common import add_video, early_text, new_episode
from lab.tasks.episode import Episode
from lab.tasks.families.delegate import ask_background, basic_request
from lab.tasks.families.readout import open_request

LATE_RESULT_MTS = (300, 1200)  # 1 to 4 minutes after the delegation


def delegate_long(rng: np.random.Generator, n: int, skip: tuple[int, int] = (150, 1500)) -> Episode:
    """Training: a request that needs the background model, "one moment", a jump of `skip`
    micro-turns, then its result arrives and the model says the value. Across the jump only the
    pins keep the request (and the model's own "one moment" is gone), as in a real call whose
    result took minutes. Values of any digits and the training split's open words
    (readout.open_request)."""
    ep, audio = new_episode("delegate_long", rng, n)
    first = int(rng.integers(max(20, n // 6), max(21, n // 3)))
    jump = int(rng.integers(*skip))
    ep.skips.append((first, jump))
    req, result, value = open_request(rng) if rng.random() < 0.7 else basic_request(rng)
    t0 = ask_background(ep, early_text(rng, first - 10), req)  # before the jump
    at = int(rng.integers(first + 5, max(first + 6, n - 25)))  # the result's arrival, visible
    ep.results.append((at - t0, f"[agent] {result}\n"))
    ep.info.update(t0=t0, request=req, result=result, value=value, delay=at - t0, jump=jump)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep


def long_delegate(rng: np.random.Generator, n: int) -> Episode:
    """Evaluation: a request typed at a call's start ("what is 12 times 7"), "one moment", and
    the background model's result 1 to 4 minutes later (as far as the call allows): the value is
    said when it arrives. A quiet room with something on camera now and then; the harness
    delivers the result only if the model delegated (`Episode.results`, delays from then)."""
    ep, audio = new_episode("long_delegate", rng, n)
    ep.start_index = 0
    req, result, value = basic_request(rng)
    t0 = ask_background(ep, int(rng.integers(1, 10)), req)
    lo, hi = LATE_RESULT_MTS
    delay = int(rng.integers(lo, max(lo + 1, min(hi, n - 40 - t0))))
    ep.results.append((delay, f"[agent] {result}\n"))
    ep.info.update(t0=t0, request=req, result=result, value=value, delay=delay)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep
