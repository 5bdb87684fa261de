"""Long calls: what the user asked stays asked for minutes (issue 30).

Training episodes are calls of minutes shown in little: a first stretch (the instruction and its
first effects), a jump of 30 s to 10 minutes that nobody sees (`Episode.skips`: the session
clock, the rotary positions and the relative clocks all move on by it), then a second stretch
where the model must go on as if it had been there all along. Across the jump only the pinned
micro-turns (the typed text; config `pins`, inference/kvcache.py) remain visible, as they would
in a real call whose window has long moved on. The second stretch starts with a lead-in that has
no loss (`Episode.ignore`) until the model's own recent output would be back in its window (its
first utterance there): what a real call would show and a skipped one cannot.

    timespeak_long  typed "say W every N seconds" (N 3-20), kept up across the jump; sometimes a
                    later "stop" or a new period ("now every M seconds"), typed after the jump
    timespeak_far   the same with the jump right after the instruction: a schedule minutes old
                    seen whole for most of the episode
    timespeak_drift the next W a period after the last one said, the history sometimes off by
                    1-3 micro-turns (as a model's own slips running free)
    timespeak_slow  periods of 8-20 s (a quarter 4-7 s), every W in view: the first gap whole,
                    the later ones shown in little (skips shorter than a period)
    repcount_long   typed "count my reps", something moving all along; the counting goes on
                    across the jump (counts into the hundreds), sometimes "how many?" at the end
    recall_long     a number typed to be remembered ("my locker number is 42"), the question
                    after the jump ("what is my locker number?"): the number
    delegate_long   (families/late_result.py) a request that needs the background model
                    ("what is 12 times 7"), "one moment", then the jump: its result arrives
                    minutes later and is said

Evaluation does not skip: `long_timespeak`, `long_repcount`, `long_recall` and `long_delegate`
are real calls of 10, 3, 5 and 4 minutes stepped micro-turn by micro-turn (mostly a quiet room,
so they cost little to make).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lab.tasks.common import (
    AHEAD_MT,
    PER_S,
    add_video,
    early_text,
    first_free,
    instruct,
    new_episode,
    num_text,
    scheduled,
    typed_eou,
)
from lab.tasks.episode import Episode, Utterance
from lab.tasks.families.repcount import COUNT_PROMPTS, HOW_MANY
from lab.tasks.families.timespeak import STOPS
from lab.tasks.motion import Motion, random_motion, render
from lab.tasks.vocab import SAY_WORDS

EVERY = [
    "say {w} every {n} seconds",
    "every {n} seconds say {w}",
    "remind me to {w} every {n} seconds",
    "please say {w} every {n} seconds",
]
CHANGES = [
    "now every {n} seconds",
    "make it every {n} seconds",
    "say {w} every {n} seconds instead",
]


def _schedule(t0: int, period_mt: int, until: int, clock: np.ndarray) -> list[int]:
    """The visible micro-turns (indices into `clock`) where a schedule that starts at clock value
    `t0` with this period falls, up to clock value `until` (exclusive)."""
    out = []
    for m, c in enumerate(clock):
        if t0 < c < until and (c - t0) % period_mt == 0:
            out.append(m)
    return out


def _skips(clock: list[int]) -> list[tuple[int, int]]:
    """`Episode.skips` of a visible call given as the clock value of each visible micro-turn."""
    return [
        (m, clock[m] - clock[m - 1] - 1)
        for m in range(1, len(clock))
        if clock[m] > clock[m - 1] + 1
    ]


def timespeak_long(
    rng: np.random.Generator, n: int, skip: tuple[int, int] = (150, 3000), far: bool = False
) -> Episode:
    """Training: "say W every N seconds", a jump of `skip` micro-turns, and it goes on.

    far (`timespeak_far`): the jump comes right after the instruction, so most of the episode
    is a schedule minutes old seen whole, its Ws filling the window at their period. Teacher-
    forced, the v3 model's onset probability at a due W was 0.93 in a call's first 100
    micro-turns and about 0.5 after 200 (`python -m lab.eval.periods --long`): the short
    families end at 220 and timespeak_long's second stretch is short."""
    ep, audio = new_episode("timespeak_far" if far else "timespeak_long", rng, n)
    if far:  # the instruction and a few quiet micro-turns
        first = int(rng.integers(12, 40))
    else:
        first = int(rng.integers(max(30, n // 5), max(31, n // 2)))  # the first stretch
    jump = int(rng.integers(*skip))
    ep.skips.append((first, jump))
    clock = ep.clock() - ep.start_index  # micro-turns since the call's first visible one
    word = str(rng.choice(SAY_WORDS))
    period = int(rng.integers(3, 21))
    t_typed = early_text(rng, first)
    t0 = instruct(
        ep, rng, audio, t_typed, rng.choice(EVERY).format(w=word, n=num_text(period, rng)), None
    )
    stop_at = clock[-1] + 10**6
    change: dict[str, Any] | None = None
    lead_end = first  # the lead-in after the jump: until the first utterance in view again
    said = _schedule(t0, period * PER_S, stop_at, clock)
    after = [m for m in said if m >= first]
    if after:
        lead_end = after[0] + 1 - AHEAD_MT  # past the first one said
    if lead_end < n - 20 and rng.random() < 0.5:
        at = int(rng.integers(lead_end + 5, n - 10))
        if rng.random() < 0.5:
            instruct(ep, rng, audio, at, str(rng.choice(STOPS)), None)
            stop_at = int(clock[typed_eou(ep, at)]) if typed_eou(ep, at) < n else stop_at
            change = {"kind": "stop", "mt": at}
        else:
            new_period = int(rng.integers(3, 21))
            text = str(rng.choice(CHANGES)).format(w=word, n=num_text(new_period, rng))
            t1 = instruct(ep, rng, audio, at, text, None)
            stop_at = int(clock[min(t1, n - 1)])
            change = {"kind": "period", "mt": at, "t1": t1, "period": new_period}
    said = _schedule(t0, period * PER_S, stop_at, clock)
    if change is not None and change["kind"] == "period" and change["t1"] < n:
        said += _schedule(int(clock[change["t1"]]), change["period"] * PER_S, clock[-1] + 1, clock)
    for m in sorted(set(said)):
        say_due(ep, clock, m, word)
    ep.ignore.append((first, lead_end))
    ep.info.update(word=word, period=period, t0=t0, jump=jump, first=first, change=change)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep


def timespeak_slow(rng: np.random.Generator, n: int) -> Episode:
    """Training: "say W every N seconds" with N of 8-20 s (a quarter 4-7 s), its gaps shown in
    little. The short family's periods are 2-10 s and timespeak_long's first W of a long period
    mostly falls in its jump, so the v3 model never said a 20 s period's first W in 10-minute
    calls, and a 220 micro-turn episode holds at most one gap of 20 s. Here the first gap is
    seen whole and each later W from 6 micro-turns to a whole period before it (and 4-12 after),
    the rest of each gap skipped (`Episode.skips`: less than a period, so no W falls unseen and
    both relative clocks stay exact); in 30 % of episodes nothing is skipped. Minutes pass in a
    220 micro-turn episode, so the clock since the instruction reaches values only long calls had
    (a 5 s period was kept for a minute, then slipped). The first W is due when the clock since
    the instruction reads N, each next one when the clock since the model's own last W does; in
    30 % a "stop" is typed after one and the Ws' times that follow pass in silence."""
    ep, audio = new_episode("timespeak_slow", rng, n)
    word = str(rng.choice(SAY_WORDS))
    period = int(rng.integers(8, 21)) if rng.random() < 0.75 else int(rng.integers(4, 8))
    p5 = period * PER_S
    t_typed = early_text(rng, n)
    text = rng.choice(EVERY).format(w=word, n=num_text(period, rng))
    t0 = instruct(ep, rng, audio, t_typed, text, None)
    compress = rng.random() < 0.7
    stop_after = int(rng.integers(1, 4)) if rng.random() < 0.3 else None
    stop_text = str(rng.choice(STOPS))
    # the visible call: clock value of each visible micro-turn, built segment by segment
    clock: list[int] = list(range(min(n, t0 + 1)))
    k, stopped_at = 1, None
    while len(clock) < n:
        due = t0 + k * p5
        # the first gap whole (a W said early is a misread period); later ones from a random
        # point on, so early Ws are still seen and taught against
        pre = p5 - 1 if k == 1 else int(rng.integers(6, max(7, p5 - 4)))
        nxt = due - pre if compress else clock[-1] + 1
        nxt = max(nxt, clock[-1] + 1)
        end = due + int(rng.integers(8 if stop_after == k else 4, 13)) if compress else due + 1
        clock.extend(range(nxt, end))
        if stop_after == k:
            stopped_at = due + 3
        k += 1
    clock = clock[:n]
    ep.skips = _skips(clock)
    change: dict[str, Any] | None = None
    if stopped_at is not None and stopped_at in clock:
        at = clock.index(stopped_at)
        instruct(ep, rng, audio, at, stop_text, None)
        end_typed = typed_eou(ep, at)
        if end_typed < n and clock[end_typed] < stopped_at + 8:  # typed in view
            change = {"kind": "stop", "mt": at}
        else:
            ep.typed.pop()
    until = clock[change["mt"]] if change is not None else clock[-1] + 1
    for m in _schedule(t0, p5, until, np.asarray(clock)):
        say_due(ep, clock, m, word)
    ep.info.update(word=word, period=period, t0=t0, change=change, compressed=compress)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep


def timespeak_drift(rng: np.random.Generator, n: int) -> Episode:
    """Training: "say W every N seconds" (N 3-20) kept by the clock since the model's own last W.
    In 35 % of the Ws the history is off by 1-3 micro-turns (a W said early or late running free:
    an input only, no loss around it) and the next W is due a period after it, not on the
    instruction's grid: teacher-forced, a W moved by 4 micro-turns left the v3 model silent at
    both the grid and a period after the moved W, so running free each slip lost the schedule.
    Periods of 8 s and more are shown in little in 70 %, as in timespeak_slow."""
    ep, audio = new_episode("timespeak_drift", rng, n)
    word = str(rng.choice(SAY_WORDS))
    period = int(rng.integers(3, 21))
    p5 = period * PER_S
    t_typed = early_text(rng, n)
    text = str(rng.choice(EVERY)).format(w=word, n=num_text(period, rng))
    t0 = instruct(ep, rng, audio, t_typed, text, None)
    compress = period >= 8 and rng.random() < 0.7
    clock: list[int] = list(range(min(n, t0 + 1)))
    said: list[int] = []  # clock values of the Ws
    off: list[tuple[int, int]] = []  # (due, said) of the Ws said off time
    while len(clock) < n:
        due = (said[-1] if said else t0) + p5
        shift = int(rng.choice([-3, -2, -1, 1, 2, 3])) if rng.random() < 0.35 else 0
        at = due + shift
        if compress and said:
            nxt = max(at - int(rng.integers(6, max(7, p5 - 4))), clock[-1] + 1)
            clock.extend(range(nxt, at + int(rng.integers(4, 13))))
        else:
            clock.extend(range(clock[-1] + 1, at + 1))
        said.append(at)
        if shift:
            off.append((due, at))
    clock = clock[:n]
    ep.skips = _skips(clock)
    quiet = [(min(due, at) - 1, max(due, at) + 1) for due, at in off]
    place_ws(ep, clock, said, word, quiet)
    ep.info.update(word=word, period=period, t0=t0, said=said, off=off, compressed=compress)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep


def slow_motion(rng: np.random.Generator) -> Motion:
    """Reps of 2-3.5 s: counts into the hundreds ("one hundred and twelve") take over a second
    to say, so a long count needs slower reps than the RepCount family's 1-3 s."""
    motion = random_motion(rng)
    motion.period_s = float(rng.uniform(2.0, 3.5))
    return motion


def fits(ep: Episode, m: int) -> bool:
    return first_free(ep.say, m) == m


def say_due(ep: Episode, clock: Any, m: int, word: str) -> None:
    """W due in visible micro-turn m (`clock`: each visible micro-turn's clock value), said
    AHEAD_MT micro-turns before (scheduled()) where the call shows that micro-turn and it fits."""
    at = m - AHEAD_MT
    if at >= 0 and clock[m] - clock[at] == AHEAD_MT and fits(ep, at):
        ep.say.append(scheduled(m, word))


def place_ws(
    ep: Episode, clock: list[int], said: list[int], word: str, quiet: list[tuple[int, int]]
) -> None:
    """W due at each clock value in `said` (said AHEAD_MT before, where the visible call shows
    it and it fits), no loss over the clock ranges `quiet` (first, last; moved AHEAD_MT earlier
    with the Ws) as far as the call shows them."""
    index = {c: m for m, c in enumerate(clock)}
    for c in said:
        if c in index:
            say_due(ep, clock, index[c], word)
    for lo, hi in quiet:
        seen = [index[c] for c in range(lo - AHEAD_MT, hi + 1 - AHEAD_MT) if c in index]
        if seen:
            ep.ignore.append((seen[0], seen[-1] + 1))


def repcount_long(
    rng: np.random.Generator,
    n: int,
    skip: tuple[int, int] | None = (150, 900),
    ask_p: float = 0.4,
) -> Episode:
    """Training: "count my reps", something moving all along, a jump of `skip` micro-turns (the
    reps go on unseen; None: no jump, the whole call seen), and the counting goes on from where
    it must be; in `ask_p` of them "how many?" near the end."""
    ep, audio = new_episode("repcount_long", rng, n)
    first = int(rng.integers(max(30, n // 5), max(31, n // 2)))
    jump = int(rng.integers(*skip)) if skip else 0
    if jump:
        ep.skips.append((first, jump))
    motion = slow_motion(rng)
    moving = np.ones(first, bool)
    frames_a, has_a, phase_a, _ = render(motion, first, moving, rng)
    motion.phase0 = float(phase_a[-1] + (jump + 1) * 0.2 / motion.period_s)
    frames_b, has_b, phase_b, _ = render(motion, n - first, np.ones(n - first, bool), rng)
    ep.frames = np.concatenate([frames_a, frames_b])
    ep.has_frame = np.concatenate([has_a, has_b])
    phase = np.concatenate([phase_a, phase_b])
    t_typed = early_text(rng, first)
    ep.typed.append((t_typed, str(rng.choice(COUNT_PROMPTS))))
    t0 = typed_eou(ep, t_typed)
    base = int(np.floor(phase[min(t0, n - 1)]))
    prev, prev_m = 0, t0
    # prev: reps completed since the instruction, as of the last frame seen
    counts: list[tuple[int, int]] = []
    for m in range(t0 + 1, n):
        if not ep.has_frame[m]:
            continue
        k = int(np.floor(phase[m])) - base
        # a rep completes between two frames seen in a row; across the jump the skipped reps
        # were counted out loud in the stretch nobody sees
        if k > prev and not (jump and m >= first and prev_m < first):
            counts.append((m, k))
        prev, prev_m = k, m
    ask = None
    if rng.random() < ask_p:
        ask = int(rng.integers(max(first + 20, n - 25), n - 5)) if n - 25 > first + 20 else None
    for m, k in counts:
        if ask is not None and m >= ask:
            break
        if fits(ep, m):
            ep.say.append(Utterance(m, str(k), "count"))
    if jump:
        lead = [u.mt for u in ep.say if u.mt >= first]
        ep.ignore.append((first, lead[0] + 1 if lead else n))
    total = int(ep.say[-1].text) if ep.say else 0
    if ask is not None:
        ep.typed.append((ask, str(rng.choice(HOW_MANY))))
        q0 = typed_eou(ep, ask)
        m = first_free(ep.say, q0)
        if m < n:
            ep.say.append(Utterance(m, str(total), "answer"))
    ep.info.update(t0=t0, jump=jump, first=first, total=total, period_s=motion.period_s)
    ep.audio = audio
    return ep


# ---- evaluation: real long calls, stepped without skips ---------------------------------------------
def long_timespeak(rng: np.random.Generator, n: int) -> Episode:
    """Evaluation: a call of n micro-turns (10 minutes: 3000) in a quiet room; "say W every N
    seconds" typed at its start; in half of them a "stop" or a new period typed minutes later."""
    ep, audio = new_episode("long_timespeak", rng, n)
    ep.start_index = 0
    word = str(rng.choice(SAY_WORDS))
    period = int(rng.integers(3, 21))
    t0 = instruct(
        ep,
        rng,
        audio,
        int(rng.integers(1, 10)),
        rng.choice(EVERY).format(w=word, n=num_text(period, rng)),
        None,
    )
    clock = np.arange(n)
    stop_at = n + 10
    change: dict[str, Any] | None = None
    if rng.random() < 0.5:
        at = int(rng.integers(n // 3, 2 * n // 3))
        if rng.random() < 0.5:
            instruct(ep, rng, audio, at, str(rng.choice(STOPS)), None)
            stop_at = typed_eou(ep, at)
            change = {"kind": "stop", "mt": at, "from": stop_at}
        else:
            new_period = int(rng.integers(3, 21))
            text = str(rng.choice(CHANGES)).format(w=word, n=num_text(new_period, rng))
            t1 = instruct(ep, rng, audio, at, text, None)
            stop_at = t1
            change = {"kind": "period", "mt": at, "from": t1, "period": new_period}
    times = _schedule(t0, period * PER_S, stop_at, clock)
    if change is not None and change["kind"] == "period":
        times += _schedule(change["from"], change["period"] * PER_S, n, clock)
    for m in sorted(set(times)):
        say_due(ep, clock, m, word)
    ep.info.update(word=word, period=period, t0=t0, change=change, expected=[u.due for u in ep.say])
    ep.audio = audio
    return ep


def long_repcount(rng: np.random.Generator, n: int) -> Episode:
    """Evaluation: a call of n micro-turns (3 minutes: 900) with something moving on camera all
    along, "count my reps" typed at its start and "how many?" at its end."""
    ep, audio = new_episode("long_repcount", rng, n)
    ep.start_index = 0
    motion = slow_motion(rng)
    ep.frames, ep.has_frame, _, reps = render(motion, n, np.ones(n, bool), rng)
    ep.typed.append((int(rng.integers(1, 10)), str(rng.choice(COUNT_PROMPTS))))
    t0 = typed_eou(ep, ep.typed[0][0])
    ask = n - 15
    count = 0
    for m in reps:
        if t0 < m < ask:
            count += 1
            if fits(ep, int(m)):
                ep.say.append(Utterance(int(m), str(count), "count"))
    ep.typed.append((ask, str(rng.choice(HOW_MANY))))
    q0 = typed_eou(ep, ask)
    m = first_free(ep.say, q0)
    if m < n:
        ep.say.append(Utterance(m, str(count), "answer"))
    ep.info.update(
        t0=t0,
        ask_mt=ask,
        q0=q0,
        total=count,
        count_mts=[u.mt for u in ep.say if u.kind == "count"],
        harness=False,
        period_s=motion.period_s,
    )
    ep.audio = audio
    return ep


# ---- what was said minutes ago ----------------------------------------------------------------------
RECALL = [
    ("remember the number {n}", "what number did I tell you to remember?"),
    ("my locker number is {n}", "what is my locker number?"),
    ("the door code is {n}", "what was the door code?"),
    ("my room is number {n}", "what room am I in?"),
    ("please remember {n} for me", "what did I ask you to remember?"),
]
NOTED = "okay"


def recall_long(rng: np.random.Generator, n: int, skip: tuple[int, int] = (150, 3000)) -> Episode:
    """Training: a number typed to be remembered ("my locker number is 42"; the model says
    "okay"), a jump of `skip` micro-turns, then the question ("what is my locker number?"):
    the model answers with the number. Only the pins keep the first message in view."""
    ep, audio = new_episode("recall_long", rng, n)
    first = int(rng.integers(max(20, n // 6), max(21, n // 3)))
    jump = int(rng.integers(*skip))
    ep.skips.append((first, jump))
    tell, ask = RECALL[int(rng.integers(len(RECALL)))]
    number = int(rng.integers(1, 100))
    t_typed = early_text(rng, first - 8)
    t0 = instruct(ep, rng, audio, t_typed, tell.format(n=number), None)
    if t0 < first:
        ep.say.append(Utterance(t0, NOTED, "reply"))
    at = int(rng.integers(first + 5, max(first + 6, n - 15)))
    q0 = instruct(ep, rng, audio, at, ask, None)
    if q0 < n:
        ep.say.append(Utterance(first_free(ep.say, q0), str(number), "answer"))
    ep.info.update(number=number, t0=t0, ask_mt=at, q0=q0, jump=jump, first=first)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep


def long_recall(rng: np.random.Generator, n: int) -> Episode:
    """Evaluation: the number told at a call's start, the question n - 40 micro-turns later (5
    minutes: n = 1500), a quiet room in between."""
    ep, audio = new_episode("long_recall", rng, n)
    ep.start_index = 0
    tell, ask = RECALL[int(rng.integers(len(RECALL)))]
    number = int(rng.integers(1, 100))
    t0 = instruct(ep, rng, audio, int(rng.integers(1, 10)), tell.format(n=number), None)
    ep.say.append(Utterance(t0, NOTED, "reply"))
    q0 = instruct(ep, rng, audio, n - 40, ask, None)
    ep.say.append(Utterance(q0, str(number), "answer"))
    ep.info.update(number=number, t0=t0, q0=q0)
    ep.audio = audio
    return ep
