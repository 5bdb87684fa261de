"""Procedural episodes, one family per benchmark of the lab (seeded, deterministic).

    timespeak  typed "say W every N seconds" / "remind me to W in N seconds" / "count down from N";
               the model says the word at T0 + N s (T0 = the micro-turn whose input completes the
               instruction), again every N s for "every" until a typed "stop"
    repcount   typed "count my reps", a periodically moving object on camera (the QA harness's
               circling square among others); the model says 1, 2, 3 ... as each repetition
               completes (the object passes the top of its path); "how many?" -> the total
    delegate   typed requests that need a tool ("what is 12 times 7"): the model delegates at
               T0, says "one moment", and says the result's value when "[agent] ... = V" arrives
    chat       typed small talk ("thank you"): a fixed short reply, never a delegation
    idle       camera motion, noise and speech, no instruction: the model stays silent
    cuespeak   typed "when I say C, say R" then the user talks; R right after each C, not after
               near-miss words (needs the dMel input)
    turn       the user speaks a turn with mid-sentence pauses; the model takes the floor right
               after the end of the turn (not in the pauses) and stops within 2 micro-turns
               when the user barges in (needs the dMel input)
    monologue  the user tells something at length; the model backchannels ("uh-huh") in the
               pauses late in the telling without taking the floor, then takes it at the end

Every family draws background noise on the microphone; some draw distractor speech.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy.signal import lfilter

from inference.protocol import MICROTURN_SAMPLES
from inference.tasks.episode import Episode, Utterance
from inference.tasks.motion import harness_motion, noise_slice, random_motion, render, still_frames
from inference.tasks.vocab import (
    CUES,
    FILLER,
    NUMBER_WORDS,
    RESPONSES,
    SAY_WORDS,
    SENTENCES,
)
from inference.tasks.voice import Voice, model_mel, random_user_voice, speech
from inference.text import encode_message

MT = MICROTURN_SAMPLES
PER_S = 5  # micro-turns per second
K_IN = 8  # text-in ids per micro-turn (the small preset's text_in_slots)


def num_text(n: int, rng: np.random.Generator) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) and rng.random() < 0.25 else str(n)


# ---- audio -----------------------------------------------------------------------------------------
def background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Microphone noise floor: white or brown-ish noise at -70..-35 dBFS."""
    x = noise_slice(rng, n * MT)
    if rng.random() < 0.5:  # low-passed (one pole at ~250 Hz): a rumble rather than a hiss
        x = lfilter([0.1], [1.0, -0.9], x).astype(np.float32)
        x /= x.std() + 1e-9
    level = 10 ** (rng.uniform(-70, -35) / 20)
    return (x * level).astype(np.float32)


def place(audio: np.ndarray, clip: np.ndarray, at_sample: int, gain: float = 1.0) -> int:
    """Add clip at a sample offset (clipped to the episode); -> end sample."""
    a = max(0, at_sample)
    b = min(len(audio), at_sample + len(clip))
    if b > a:
        audio[a:b] += gain * clip[a - at_sample : b - at_sample]
    return at_sample + len(clip)


def speech_gain(rng: np.random.Generator, clip: np.ndarray) -> float:
    peak = float(np.abs(clip).max()) + 1e-9
    return float(10 ** (rng.uniform(-16, -3) / 20)) / peak


def add_distractor_speech(
    rng: np.random.Generator, ep: Episode, audio: np.ndarray, p: float = 0.4
) -> None:
    """Somebody talks in the room (not to the model) now and then."""
    if rng.random() >= p:
        return
    voice = random_user_voice(rng)
    for _ in range(int(rng.integers(1, 3))):
        clip = speech(str(rng.choice(SENTENCES)), voice)
        at = int(rng.integers(0, max(1, len(audio) - len(clip) // 2)))
        # background level (-30..-16 dB under the user's speech): the model must not answer it
        place(audio, clip, at, speech_gain(rng, clip) * rng.uniform(0.03, 0.16))


def add_video(rng: np.random.Generator, ep: Episode, p_motion: float = 0.6) -> None:
    if rng.random() < p_motion:
        motion = random_motion(rng)
        ep.frames, ep.has_frame, _, _ = render(motion, ep.n, np.ones(ep.n, bool), rng)
    elif rng.random() < 0.8:
        ep.frames, ep.has_frame = still_frames(rng, ep.n)


def utter_mts(text: str) -> int:
    """Micro-turns an utterance occupies (text and audio)."""
    text_mt = -(-(len((text + " ").encode()) + 1) // 4)
    return max(text_mt, len(model_mel(text)) // 16)


def first_free(say: list[Utterance], mt: int) -> int:
    """The first micro-turn from mt on that leaves room after the previous utterance."""
    return mt if not say else max(mt, say[-1].mt + utter_mts(say[-1].text))


def fits(say: list[Utterance], mt: int) -> bool:
    """mt leaves room after the previous utterance."""
    return first_free(say, mt) == mt


def new_episode(task: str, rng: np.random.Generator, n: int) -> tuple[Episode, np.ndarray]:
    start = int(rng.integers(0, 3000)) if rng.random() < 0.7 else 0
    ep = Episode(task=task, n=n, start_index=start)
    return ep, background(rng, n)


def typed_eou(ep: Episode, mt: int) -> int:
    """Micro-turn in which the message typed at mt has fully entered the model."""
    _, eou = ep.text_in(K_IN)
    return eou.get(mt, ep.n)  # not in by the end of the episode: past it


def early_text(rng: np.random.Generator, n: int) -> int:
    """The micro-turn of a call's first typed message: often its very first (a page that types
    as soon as the call is up; text there sits on the attention's first positions), else soon."""
    if rng.random() < 0.15:
        return 0
    return int(rng.integers(1, max(2, min(n // 3, 25))))


def instruct(
    ep: Episode,
    rng: np.random.Generator,
    audio: np.ndarray,
    at: int,
    text: str,
    voice: Voice | None,
) -> int:
    """The user gives an instruction at micro-turn `at`: typed (voice None) or said aloud;
    -> the micro-turn from which the model has all of it (typed: the one its EOU enters in;
    spoken: the first after the speech ends). Typed draws nothing from rng."""
    if voice is None:
        ep.typed.append((at, text))
        return typed_eou(ep, at)
    clip = speech(text, voice)
    t0 = place(audio, clip, at * MT, speech_gain(rng, clip)) // MT + 1
    numbers = [w for w in text.split() if w.isdigit() or w in NUMBER_WORDS]
    ep.heard.append((t0, numbers[-1] if numbers else text.split()[-1]))  # what matters in it
    return t0


# ---- timespeak -------------------------------------------------------------------------------------
STOPS = ["stop", "ok stop", "stop now", "that's enough"]


ONCE_TEMPLATES = [
    "remind me to {w} in {n} seconds",
    "in {n} seconds say {w}",
    "say {w} in {n} seconds",
]
TIMESPEAK_KINDS = {"every": 0.45, "once": 0.3, "countdown": 0.25}


def timespeak(
    rng: np.random.Generator,
    n: int,
    spoken: bool = False,
    kinds: dict[str, float] = TIMESPEAK_KINDS,
    delays: tuple[int, int] = (2, 20),
) -> Episode:
    kind = str(rng.choice(list(kinds), p=list(kinds.values())))
    ep, audio = new_episode(f"timespeak/{kind}", rng, n)
    t_typed = early_text(rng, n)
    voice = random_user_voice(rng) if spoken else None
    if kind == "every":
        word = str(rng.choice(SAY_WORDS))
        period = int(rng.integers(2, 11))
        if (period * PER_S) < utter_mts(word) + 2:
            period = 3
        nt = num_text(period, rng)
        template = rng.choice(
            [
                "say {w} every {n} seconds",
                "every {n} seconds say {w}",
                "remind me to {w} every {n} seconds",
                "say {w} every {n} seconds until I say stop",
                "please say {w} every {n} seconds",
            ]
        )
        t0 = instruct(ep, rng, audio, t_typed, template.format(w=word, n=nt), voice)
        stop_at = n + 10
        if rng.random() < 0.5 and t0 + period * PER_S < n + 5:
            stop_at = int(rng.integers(t0 + period * PER_S, n + 5))
            if stop_at < n:
                instruct(ep, rng, audio, stop_at, str(rng.choice(STOPS)), voice)
        k = 1
        times = []
        while t0 + k * period * PER_S < min(n, stop_at):
            m = t0 + k * period * PER_S
            ep.say.append(Utterance(m, word, "say"))
            times.append(m)
            k += 1
        ep.info.update(word=word, period=period, t0=t0, stop_at=stop_at, expected=times)
    elif kind == "once":
        word = str(rng.choice(SAY_WORDS))
        delay = int(rng.integers(delays[0], delays[1] + 1))
        template = rng.choice(ONCE_TEMPLATES)
        t0 = instruct(
            ep, rng, audio, t_typed, template.format(w=word, n=num_text(delay, rng)), voice
        )
        m = t0 + delay * PER_S
        times = []
        if m < n:
            ep.say.append(Utterance(m, word, "say"))
            times.append(m)
        ep.info.update(word=word, delay=delay, t0=t0, expected=times)
    else:
        start = int(rng.integers(3, 11))
        template = rng.choice(
            ["count down from {n}", "countdown from {n}", "please count down from {n}"]
        )
        t0 = instruct(ep, rng, audio, t_typed, template.format(n=num_text(start, rng)), voice)
        times = []
        for k in range(1, start + 1):
            m = t0 + k * PER_S
            if m < n:
                ep.say.append(Utterance(m, str(start + 1 - k), "count"))
                times.append(m)
        ep.info.update(start=start, t0=t0, expected=times)
    add_video(rng, ep)
    add_distractor_speech(rng, ep, audio, p=0.3)
    ep.audio = audio
    return ep


# ---- repcount --------------------------------------------------------------------------------------
COUNT_PROMPTS = [
    "count my reps",
    "count the reps",
    "count out loud",
    "count the repetitions",
    "count my pushups",
    "count how many times it goes around",
    "please count my reps",
]
HOW_MANY = ["how many?", "how many reps?", "how many was that?", "what's the count?"]


def repcount(rng: np.random.Generator, n: int, harness: bool | None = None) -> Episode:
    ep, audio = new_episode("repcount", rng, n)
    use_harness = rng.random() < 0.25 if harness is None else harness
    motion = harness_motion() if use_harness else random_motion(rng)
    if use_harness:
        motion.phase0 = float(rng.random())
    # the object moves in one stretch [a, b), holds still otherwise
    a = int(rng.integers(0, max(1, n // 4))) if rng.random() < 0.6 else 0
    b = n if rng.random() < 0.4 else int(rng.integers(max(a + 10, n // 2), n + 1))
    moving = np.zeros(n, bool)
    moving[a:b] = True
    ep.frames, ep.has_frame, _, reps = render(motion, n, moving, rng)
    t_typed = early_text(rng, n) if rng.random() < 0.8 else int(rng.integers(1, max(2, n // 2)))
    ep.typed.append((t_typed, str(rng.choice(COUNT_PROMPTS))))
    t0 = typed_eou(ep, t_typed)
    counted = [int(m) for m in reps if m > t0]
    ask = None
    if rng.random() < 0.7:
        lo = min(n - 8, max(t0 + 5, (counted[-1] + 2) if counted else t0 + 5))
        if lo < n - 6:
            ask = int(rng.integers(lo, n - 5))
    count = 0
    for m in counted:
        if ask is not None and typed_eou_after(ep, ask) is not None and m >= ask:
            break
        count += 1
        ep.say.append(Utterance(m, str(count), "count"))
    total = count
    if ask is not None:
        ep.typed.append((ask, str(rng.choice(HOW_MANY))))
        q0 = typed_eou(ep, ask)
        # answer right away (after any count still being said); counting stops once asked
        ep.say = [u for u in ep.say if u.mt < q0]
        total = len(ep.say)
        m = first_free(ep.say, q0)
        if m < n:
            ep.say.append(Utterance(m, str(total), "answer"))
        ep.info.update(ask_mt=ask, q0=q0)
    ep.info.update(
        t0=t0,
        count_mts=[u.mt for u in ep.say if u.kind == "count"],
        total=total,
        harness=use_harness,
        period_s=motion.period_s,
    )
    # counts too close to each other to be said in turn: drop the episode's later ones is not
    # needed: the shortest period (1 s = 5 micro-turns) leaves room for "20 " (2 micro-turns)
    add_distractor_speech(rng, ep, audio, p=0.2)
    ep.audio = audio
    return ep


def typed_eou_after(ep: Episode, mt: int) -> int | None:
    return mt


# ---- delegation ------------------------------------------------------------------------------------
HOLD = "one moment"


def _request(rng: np.random.Generator) -> tuple[str, str, str]:
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


def delegate(rng: np.random.Generator, n: int) -> Episode:
    ep, audio = new_episode("delegate", rng, n)
    req, result, value = _request(rng)
    t_typed = early_text(rng, n)
    ep.typed.append((t_typed, req))
    t0 = typed_eou(ep, t_typed)
    ep.delegate.append(t0)
    ep.say.append(Utterance(t0, HOLD, "hold"))
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
        if m < ep.n:
            ep.say.append(Utterance(m, value, "result"))
        ep.info.update(result_at=at, r0=r0)


# ---- small talk (never delegated) ------------------------------------------------------------------
CHAT = {
    "thank you": "you're welcome",
    "thanks": "you're welcome",
    "thanks a lot": "you're welcome",
    "how are you": "i'm fine",
    "how are you doing?": "i'm fine",
    "are you there?": "yes",
    "can you hear me?": "yes",
    "good morning": "good morning",
    "bye": "goodbye",
    "goodbye": "goodbye",
}
GREETINGS = [
    "hello",
    "hi",
    "hey",
    "hello there",
    "hi there",
    "hello model",
    "hey there",
    "hello again",
    "hi model",
    "hello everyone",
    "hey you",
    "hello!",
]


def chat_message(rng: np.random.Generator) -> tuple[str, str]:
    if rng.random() < 0.45:
        msg = str(rng.choice(GREETINGS))
        if rng.random() < 0.3:
            msg = msg.capitalize()
        return msg, "hi there"
    msg = str(rng.choice(list(CHAT)))
    return msg, CHAT[msg]


def chat(rng: np.random.Generator, n: int, spoken: bool = False) -> Episode:
    ep, audio = new_episode("chat", rng, n)
    msg, reply = chat_message(rng)
    t_typed = early_text(rng, n)
    voice = random_user_voice(rng) if spoken else None
    t0 = instruct(ep, rng, audio, t_typed, msg, voice)
    ep.say.append(Utterance(t0, reply, "reply"))
    ep.info.update(t0=t0, message=msg)
    add_video(rng, ep)
    add_distractor_speech(rng, ep, audio, p=0.3)
    ep.audio = audio
    return ep


def idle(rng: np.random.Generator, n: int) -> Episode:
    ep, audio = new_episode("idle", rng, n)
    add_video(rng, ep, p_motion=0.8)
    add_distractor_speech(rng, ep, audio, p=0.6)
    ep.audio = audio
    return ep


# ---- registry --------------------------------------------------------------------------------------
Generator = Callable[[np.random.Generator, int], Episode]
FAMILIES: dict[str, Generator] = {
    "timespeak": timespeak,
    "repcount": repcount,
    "delegate": delegate,
    "chat": chat,
    "idle": idle,
    # the same instructions said aloud (one user voice, at the user's level) instead of typed
    "timespeak_spoken": functools.partial(timespeak, spoken=True),
    "chat_spoken": functools.partial(chat, spoken=True),
    # training only: the two kinds that read a number and keep time by it, half each ("in N
    # seconds" and "every N seconds" differ in one word; the countdown is learnt)
    "timespeak_timed": functools.partial(timespeak, kinds={"every": 0.5, "once": 0.5}),
    # training only: the late reminders alone ("in 12-20 seconds"; the settle model said 18-19 s
    # ones ~2.5 s early, 14-16 s ones 1-2 s late)
    "timespeak_late": functools.partial(timespeak, kinds={"once": 1.0}, delays=(12, 20)),
}


def make(family: str, seed: int, n: int, training: bool = True) -> Episode:
    """One episode, fully determined by (family, seed, n).

    training: background results are placed in the typed stream `delay` micro-turns after the
    expected delegation (teacher forcing); otherwise (evaluation) they stay in `ep.results` and
    the harness delivers them only when the model really delegates.
    """
    rng = np.random.default_rng([hash_family(family), seed, n])
    ep = FAMILIES[family](rng, n)
    if training and ep.results:
        add_result_targets(ep)
    return ep


def hash_family(family: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(family))


__all__ = ["FAMILIES", "HOLD", "encode_message", "make"]


# ---- cuespeak (listening) --------------------------------------------------------------------------


def spoken_words(
    rng: np.random.Generator,
    voice: Voice,
    words: list[str],
    audio: np.ndarray,
    at: int,
    heard: list[tuple[int, str]],
) -> list[tuple[str, int, int]]:
    """Words said one after another from sample `at` (short gaps), each appended to `heard`;
    -> (word, start, end)."""
    out = []
    pos = at
    gain = None
    for w in words:
        clip = speech(w, voice)
        if gain is None:
            gain = speech_gain(rng, clip)
        end = place(audio, clip, pos, gain)
        out.append((w, pos, end))
        heard.append((end // MT + 1, w))
        pos = end + int(rng.integers(300, 2000))  # 20-125 ms
    return out


CUE_KINDS = {"cue": 0.5, "near": 0.3, "none": 0.2}  # what each phrase of the user's talk holds


def cuespeak(rng: np.random.Generator, n: int, kinds: dict[str, float] = CUE_KINDS) -> Episode:
    ep, audio = new_episode("cuespeak", rng, n)
    cue = str(rng.choice(list(CUES)))
    resp = str(rng.choice(RESPONSES))
    t_typed = early_text(rng, n)
    template = rng.choice(
        ["when I say {c}, say {r}", "say {r} when I say {c}", "every time I say {c} say {r}"]
    )
    ep.typed.append((t_typed, template.format(c=cue, r=resp)))
    t0 = typed_eou(ep, t_typed)
    voice = random_user_voice(rng)
    pos = (t0 + int(rng.integers(3, 10))) * MT
    expected = []
    while pos < (n - 8) * MT:
        k = int(rng.integers(2, 7))
        words = [str(w) for w in rng.choice(FILLER, size=k)]
        kind = rng.choice(list(kinds), p=list(kinds.values()))
        if kind == "cue":
            words.insert(int(rng.integers(0, k + 1)), cue)
        elif kind == "near":
            words.insert(int(rng.integers(0, k + 1)), str(rng.choice(CUES[cue])))
        said = spoken_words(rng, voice, words, audio, pos, ep.heard)
        for w, _, end in said:
            m = end // MT + 1
            if w == cue:
                if m < n and fits(ep.say, m):
                    ep.say.append(Utterance(m, resp, "cue"))
                    expected.append(m)
            elif w in CUES[cue]:  # a near miss: the silence after it as weighty as an answer
                ep.hold += [m, m + 1]
        pos = said[-1][2] + int(rng.integers(int(0.3 * 16000), int(1.5 * 16000)))
    ep.heard_all = True  # every word the user says was listed (the typed instruction is text)
    ep.info.update(t0=t0, cue=cue, response=resp, expected=expected)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep


# ---- turn-taking and barge-in (listening) ----------------------------------------------------------
TAKE = "okay"
LONG_REPLY = "let me think about that for a moment"


def _sentence_parts(rng: np.random.Generator) -> list[str]:
    words = str(rng.choice(SENTENCES)).split()
    n_parts = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    cuts = (
        sorted(rng.choice(np.arange(2, len(words) - 1), size=n_parts - 1, replace=False))
        if n_parts > 1
        else []
    )
    parts, last = [], 0
    for c in [*cuts, len(words)]:
        parts.append(" ".join(words[last:c]))
        last = int(c)
    return parts


def say_turn(
    rng: np.random.Generator,
    audio: np.ndarray,
    parts: list[str],
    pos: int,
    voice: Voice,
    gain: float | None,
    heard: list[tuple[int, str]],
) -> tuple[int, float | None, list[tuple[int, int]]]:
    """The user says a turn's parts from sample `pos` on, with a pause of 0.3-1.2 s after each
    but the last; a part before a pause ends with a comma (espeak's continuation, rising,
    intonation), the last with a period (falling). gain None: drawn from the first clip (a call
    keeps its level). Each part's last word is appended to `heard` at its end.
    -> (the sample where the turn ends, the gain, the pauses [start, end))."""
    pauses = []
    for j, part in enumerate(parts):
        clip = speech(part + ("," if j < len(parts) - 1 else "."), voice)
        if gain is None:
            gain = speech_gain(rng, clip)
        pos = place(audio, clip, pos, gain)
        heard.append((pos // MT + 1, part.split()[-1]))
        if j < len(parts) - 1:
            gap = int(rng.uniform(0.3, 1.2) * 16000)
            pauses.append((pos, pos + gap))
            pos += gap
    return pos, gain, pauses


def turn(rng: np.random.Generator, n: int) -> Episode:
    """The user speaks turns (with mid-sentence pauses of 0.3-1.2 s); after each turn ends the
    model answers with its long reply; often the user barges in on it, the model stops, and after
    the barge-in turn it says "okay"."""
    ep, audio = new_episode("turn", rng, n)
    voice = random_user_voice(rng)
    gain = None
    pos = int(rng.integers(2, 10)) * MT
    turns = []
    barge = []
    pauses = []
    while pos < (n - 25) * MT:
        start = pos
        end, gain, said_pauses = say_turn(
            rng, audio, _sentence_parts(rng), pos, voice, gain, ep.heard
        )
        pauses += said_pauses
        m = end // MT + 1  # the first micro-turn whose output can follow the end of the turn
        if m >= n:  # the episode ends first: nothing to take, but nothing to interrupt either
            turns.append({"start": start, "end": min(end, n * MT), "take_mt": None, "long": True})
            break
        # a turn gets the long reply (what a barge-in can cut short); a barge-in turn gets "okay"
        ep.say.append(Utterance(m, LONG_REPLY, "take"))
        reply_mts = utter_mts(LONG_REPLY)
        turns.append({"start": start, "end": end, "take_mt": m, "long": True})
        if rng.random() < 0.7 and m + 6 < n:
            # the user barges in 0.4-1.2 s into the reply; the model stops within 2 micro-turns
            b = (m + 1) * MT + int(rng.uniform(0.2, 1.0) * 16000)
            parts2 = _sentence_parts(rng)
            bpos = b
            clip = speech(" ".join(parts2) + ".", voice)
            bend = place(audio, clip, bpos, gain or 1.0)
            ep.heard.append((bend // MT + 1, parts2[-1].split()[-1]))
            stop_mt = b // MT + 1
            ep.silence.append((stop_mt, m + reply_mts + 1))
            barge.append({"at": b, "stop_mt": stop_mt, "end": bend})
            # and then takes the floor again after the barge-in turn
            m2 = bend // MT + 1
            if m2 < n:
                ep.say.append(Utterance(m2, TAKE, "take"))
                turns.append({"start": b, "end": bend, "take_mt": m2, "long": False})
            pos = (m2 + utter_mts(TAKE)) * MT + int(rng.uniform(0.3, 1.5) * 16000)
        else:
            pos = (m + reply_mts) * MT + int(rng.uniform(0.3, 1.5) * 16000)
    ep.info.update(turns=turns, barge=barge, pauses=pauses)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep


# ---- backchannels in a long telling (listening) ----------------------------------------------------
BACKCHANNEL = "uh-huh"
BACKCHANNEL_AFTER_S = 7.0  # a pause this far into the user's turn (the turn family's are shorter)
BACKCHANNEL_HEARD_S = 0.4  # ... heard for this long gets a backchannel
BACKCHANNEL_GAP_MT = 15  # at most one every 3 s


def backchannel_mt(turn_start: int, pause: tuple[int, int], last: int | None) -> int | None:
    """The micro-turn whose output says the backchannel in a continuation pause (samples
    [a, b) of a turn that began at sample turn_start), or None when the pause gets none: it must
    begin BACKCHANNEL_AFTER_S into the turn, and the micro-turn's input must hold
    BACKCHANNEL_HEARD_S of it, all silent."""
    a, b = pause
    m = -(-(a + int(BACKCHANNEL_HEARD_S * 16_000)) // MT) - 1
    if a - turn_start < BACKCHANNEL_AFTER_S * 16_000 or (m + 1) * MT > b:
        return None
    if last is not None and m - last < BACKCHANNEL_GAP_MT:
        return None
    return m


def monologue(rng: np.random.Generator, n: int) -> Episode:
    """The user tells something at length: 3-5 sentences, every clause and sentence but the last
    ending in a continuation pause (0.3-1.2 s, rising intonation); in a pause from 7 s into the
    telling on, once 0.4 s of it has passed, the model says "uh-huh" (a backchannel: it does not
    take the floor), at most every 3 s; after the last sentence it takes the floor with the long
    reply, as in the turn family."""
    ep, audio = new_episode("monologue", rng, n)
    voice = random_user_voice(rng)
    gain = None
    pos = int(rng.integers(2, 10)) * MT
    turns, pauses = [], []
    while pos < (n - 40) * MT:
        parts = [p for _ in range(int(rng.integers(3, 6))) for p in _sentence_parts(rng)]
        start = pos
        end, gain, said_pauses = say_turn(rng, audio, parts, pos, voice, gain, ep.heard)
        last = None
        for pause in said_pauses:
            m = backchannel_mt(start, pause, last)
            if m is not None and m < n:
                ep.say.append(Utterance(m, BACKCHANNEL, "backchannel"))
                last = m
        pauses += said_pauses
        m = end // MT + 1
        if m >= n:  # cut short by the episode's end (as in turn)
            turns.append({"start": start, "end": min(end, n * MT), "take_mt": None, "long": True})
            break
        ep.say.append(Utterance(m, LONG_REPLY, "take"))
        turns.append({"start": start, "end": end, "take_mt": m, "long": True})
        pos = (m + utter_mts(LONG_REPLY)) * MT + int(rng.uniform(0.3, 1.5) * 16000)
    ep.info.update(turns=turns, barge=[], pauses=pauses)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep


FAMILIES.update({"cuespeak": cuespeak, "turn": turn, "monologue": monologue})
# training only: more near misses, so telling the cue from them carries more of the loss
FAMILIES["cuespeak_near"] = functools.partial(
    cuespeak, kinds={"cue": 0.4, "near": 0.5, "none": 0.1}
)


# ---- the demo page's acceptance, offline -----------------------------------------------------------
@functools.cache
def harness_clip(text: str = "hello, can you hear me?") -> np.ndarray:
    """The QA harness's fake microphone file (tests/browser/harness.py): espeak-ng's default
    voice saying `text`, untrimmed, at 16 kHz."""
    import subprocess

    from inference.tasks.voice import _read_wav

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
        ep.say.append(Utterance(t0 + 15 * k, "hello", "say"))
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


FAMILIES["demo"] = demo  # evaluation only (no training mix names it)


# ---- chain: typed tasks one after another in one call (training) -----------------------------------
def _every(rng: np.random.Generator, ep: Episode, at: int, reps: list[int]) -> int:
    word = str(rng.choice(SAY_WORDS))
    period = int(rng.integers(2, 7))
    ep.typed.append((at, f"say {word} every {num_text(period, rng)} seconds"))
    t0 = typed_eou(ep, at)
    gap = period * PER_S
    times = [t0 + k * gap for k in range(1, int(rng.integers(1, 6)) + 1)]
    times = [m for m in times if m < ep.n]
    ep.say.extend(Utterance(m, word, "say") for m in times)
    last = times[-1] if times else t0
    lo = last + utter_mts(word)
    stop_at = int(rng.integers(lo, max(lo + 1, last + gap - 3)))
    if stop_at < ep.n:
        ep.typed.append((stop_at, str(rng.choice(STOPS))))
    return typed_eou(ep, stop_at) if stop_at < ep.n else ep.n


def _count(rng: np.random.Generator, ep: Episode, at: int, reps: list[int]) -> int:
    ep.typed.append((at, str(rng.choice(COUNT_PROMPTS))))
    c0 = typed_eou(ep, at)
    coming = [m for m in reps if c0 < m < ep.n]
    if not coming:
        return ep.n
    k = int(rng.integers(1, min(len(coming), 8) + 1))
    ask = coming[k - 1] + int(rng.integers(2, 9))
    counted = [m for m in coming if m < ask]
    ep.say.extend(Utterance(m, str(i + 1), "count") for i, m in enumerate(counted))
    if ask >= ep.n - 2:
        return ep.n
    ep.typed.append((ask, str(rng.choice(HOW_MANY))))
    q0 = typed_eou(ep, ask)
    m = first_free(ep.say, q0)
    if m < ep.n:
        ep.say.append(Utterance(m, str(len(counted)), "answer"))
    return m + utter_mts(str(len(counted)))


def _countdown(rng: np.random.Generator, ep: Episode, at: int, reps: list[int]) -> int:
    start = int(rng.integers(3, 7))
    ep.typed.append((at, f"count down from {num_text(start, rng)}"))
    t0 = typed_eou(ep, at)
    ep.say.extend(
        Utterance(t0 + k * PER_S, str(start + 1 - k), "count")
        for k in range(1, start + 1)
        if t0 + k * PER_S < ep.n
    )
    return t0 + start * PER_S + 2


def _once(rng: np.random.Generator, ep: Episode, at: int, reps: list[int]) -> int:
    word = str(rng.choice(SAY_WORDS))
    delay = int(rng.integers(2, 21))
    template = rng.choice(ONCE_TEMPLATES)
    ep.typed.append((at, template.format(w=word, n=num_text(delay, rng))))
    m = typed_eou(ep, at) + delay * PER_S
    if m < ep.n:
        ep.say.append(Utterance(m, word, "say"))
    return m + utter_mts(word)


def _chat(rng: np.random.Generator, ep: Episode, at: int, reps: list[int]) -> int:
    msg, reply = chat_message(rng)
    ep.typed.append((at, msg))
    t0 = typed_eou(ep, at)
    if t0 < ep.n:
        ep.say.append(Utterance(t0, reply, "reply"))
    return t0 + utter_mts(reply)


SEGMENTS: dict[str, Callable[[np.random.Generator, Episode, int, list[int]], int]] = {
    "every": _every,
    "count": _count,
    "countdown": _countdown,
    "once": _once,
    "chat": _chat,
}
SEGMENT_MIX = {"every": 0.3, "count": 0.3, "countdown": 0.14, "once": 0.11, "chat": 0.15}


def chain(rng: np.random.Generator, n: int, p_mic: float = 0.3) -> Episode:
    """Typed tasks one after another in one call, each begun once the previous is over (stopped,
    done or answered): "say W every N seconds" ... "stop", "count my reps" ... "how many?", a
    countdown, a reminder, small talk. The demo page's sequence is one such chain; a model trained
    on each task alone does them far worse in sequence. The camera shows a moving object the whole
    time (the harness's square in 40 %); the mic plays the harness's looped speech with
    probability `p_mic` (to be ignored: a model that listens answers it instead, so `chain_quiet`,
    the listening stage's variant, never plays it), else the room's noise, sometimes with somebody
    talking in the background."""
    ep, audio = new_episode("chain", rng, n)
    use_harness = rng.random() < 0.4
    motion = harness_motion() if use_harness else random_motion(rng)
    if use_harness:
        motion.phase0 = float(rng.random())
    ep.frames, ep.has_frame, _, rep_mts = render(motion, n, np.ones(n, bool), rng)
    reps = [int(m) for m in rep_mts]
    kinds = list(SEGMENT_MIX)
    p = np.array(list(SEGMENT_MIX.values()))
    at = early_text(rng, n)
    done = []
    while at < n - 10:
        kind = kinds[int(rng.choice(len(kinds), p=p))]
        at = SEGMENTS[kind](rng, ep, at, reps) + int(rng.integers(1, 12))
        done.append(kind)
    ep.say.sort(key=lambda u: u.mt)
    ep.info.update(segments=done, harness=use_harness)
    if rng.random() < p_mic:  # the QA harness's fake mic, as loud as in the demo page
        audio += harness_mic(n)
    else:
        add_distractor_speech(rng, ep, audio, p=0.3)
    ep.audio = audio
    return ep


# training only (the demo suite evaluates the demo page's chain)
FAMILIES["chain"] = chain
FAMILIES["chain_quiet"] = functools.partial(chain, p_mic=0.0)
