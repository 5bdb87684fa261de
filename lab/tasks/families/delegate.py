"""Delegation: requests that need a tool; "one moment", then the result's value when it arrives."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lab.tasks.common import (
    add_distractor_speech,
    add_video,
    early_text,
    first_free,
    new_episode,
    typed_eou,
    utter_mts,
)
from lab.tasks.episode import Episode, Utterance

# ---- delegation ------------------------------------------------------------------------------------
HOLD = "one moment"
AFTER_TALK_MTS = 2  # a result that arrived while the user talked: said this long after they stop


def basic_request(rng: np.random.Generator) -> tuple[str, str, str]:
    """(typed request, the background model's result text, the value the model says)."""
    kind = rng.integers(0, 4)
    if kind == 0:
        a, b = int(rng.integers(2, 100)), int(rng.integers(2, 100))
        op, word, fn = [
            ("*", "times", lambda x, y: x * y),
            ("+", "plus", lambda x, y: x + y),
            ("-", "minus", lambda x, y: x - y),
        ][int(rng.integers(0, 3))]
        req = str(
            rng.choice(
                [f"what is {a} {word} {b}", f"what's {a} {op} {b}", f"calculate {a} {op} {b}"]
            )
        )
        value = str(fn(a, b))
        return req, f"{a}{op}{b} = {value}", value
    if kind == 1:
        v = int(rng.integers(1, 50))
        src, dst, f = [
            ("km", "miles", 0.621371),
            ("miles", "km", 1.609344),
            ("kg", "lb", 2.204623),
            ("feet", "meters", 0.3048),
        ][int(rng.integers(0, 4))]
        out = round(v * f, 2)
        value = f"{out:g} {dst}"
        return f"convert {v} {src} to {dst}", f"{v} {src} = {value}", value
    if kind == 2:
        h, m = int(rng.integers(0, 24)), int(rng.integers(0, 60))
        city = str(rng.choice(["tokyo", "paris", "new york", "london", "sydney", ""]))
        req = f"what time is it in {city}" if city else "what time is it"
        value = f"{h:02d}:{m:02d}"
        return req, f"It is {value}" + (f" in {city.title()}" if city else ""), value
    topic = str(rng.choice(["the budget", "the trip", "the garden", "the meeting", "dinner"]))
    value = str(rng.choice(["tuesday at noon", "three items", "call anna", "room 12", "buy seeds"]))
    return f"look up {topic} in my notes", f"From your notes: {value}", value


Request = Callable[[np.random.Generator], tuple[str, str, str]]


def ask_background(ep: Episode, at: int, request: str) -> int:
    """The request typed at micro-turn `at`: the model delegates as soon as it has entered, and
    says HOLD then. Returns that micro-turn (results are timed from it)."""
    ep.typed.append((at, request))
    t0 = typed_eou(ep, at)
    ep.delegate.append(t0)
    ep.say.append(Utterance(t0, HOLD, "hold"))
    return t0


def delegate(rng: np.random.Generator, n: int, request: Request = basic_request) -> Episode:
    ep, audio = new_episode("delegate", rng, n)
    req, result, value = request(rng)
    t0 = ask_background(ep, early_text(rng, n), req)
    delay = int(rng.integers(utter_mts(HOLD) + 1, 30))
    wire = f"[agent] {result}\n"
    ep.results.append((delay, wire))
    ep.info.update(t0=t0, request=req, result=result, value=value, delay=delay)
    add_video(rng, ep)
    add_distractor_speech(rng, ep, audio, p=0.2)
    ep.audio = audio
    return ep


def add_result_targets(ep: Episode) -> None:
    """Training view: results arrive `delay` after the delegation; the model says the value."""
    for (delay, wire), d_mt in zip(ep.results, ep.delegate, strict=False):
        at = d_mt + delay
        if at >= ep.n:
            continue
        ep.typed.append((at, wire))
        r0 = typed_eou(ep, at)
        value = ep.info["value"]
        m = first_free(ep.say, r0)
        if "talk" in ep.info:  # the user is talking to the model: wait for the sentence's end
            start, end = ep.info["talk"]
            ep.hold.extend(range(max(r0, start), min(end, ep.n)))
            m = max(m, end + AFTER_TALK_MTS)
        if m < ep.n:
            ep.say.append(Utterance(m, value, "result"))
        ep.info.update(result_at=at, r0=r0)
