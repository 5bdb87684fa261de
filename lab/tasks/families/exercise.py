"""Exercise video (issue 29): counting a person's repetitions, and saying "start" and "stop".

Both families film an articulated figure (lab/tasks/figure/) in a random scene, through the
video path as served (the browser camera's picture, media/video_in.py's crop and resize).

    repcount_figure          typed "count my reps"; the person does bouts of the training
                             exercises (squat, arm raise, push-up, jumping jack) and random periodic
                             motions, 3-12 reps each, idling between; the model says 1, 2, 3 ... at
                             each rep's completion (the first micro-turn whose seen frame is past
                             the return to the rest pose); "how many?" -> the total. Targets and
                             info as `repcount`'s, so `eval_repcount` scores it
    repcount_figure_heldout  (evaluation only) the same with held-out exercises (lunge, side
                             bend, knee raise), backgrounds and figure styles
    startstop                typed "tell me when I start and stop <action>"; the person idles,
                             does the action, idles, maybe does something else (no answer),
                             maybe the action again; the model says "start" START_LAG micro-turns
                             after the first frame of the action and "stop" STOP_LAG after the
                             first frame past its end. Scored by temporal IoU (Charades' mIoU)
    startstop_heldout        (evaluation only) held-out scenes; the other motions are held-out
                             exercises, and "exercising" covers them too

The reaction allowance: START_LAG = 2 micro-turns (0.4 s): a repetition starts from rest with
zero speed, so its first frame barely differs from standing; 0.4 s in, the pose has moved a sixth
to a half of the way to the peak and the action can be told apart from others. STOP_LAG = 3
(0.6 s): the end of a bout is the return to rest, which every repetition also passes through;
only a rest that outlasts the return (the next rep's start would have shown by then) says the
bout is over. The IoU is taken against the true action interval (no allowance), so an episode
whose targets are said exactly scores a little under 1 (`target_miou` in the report).
"""

from __future__ import annotations

import numpy as np

from lab.tasks.common import add_distractor_speech, early_text, first_free, instruct, new_episode
from lab.tasks.episode import Episode, Utterance
from lab.tasks.families.repcount import HOW_MANY
from lab.tasks.figure.poses import (
    ACTION_KINDS,
    HELDOUT_KINDS,
    KINDS,
    STAND,
    TRAIN_KINDS,
    Kind,
    pick_yaw,
    random_kind,
    with_yaw,
)
from lab.tasks.figure.scene import Scene, sample_scene
from lab.tasks.figure.schedule import Bout
from lab.tasks.figure.video import DT, micro_turn_of, render_video
from lab.tasks.voice import random_user_voice

START_LAG = 2  # micro-turns from the first frame of the action to "start"
STOP_LAG = 3  # micro-turns from the first frame past its end to "stop"

COUNT_PROMPTS = [
    "count my reps",
    "count the reps",
    "count out loud",
    "count the repetitions",
    "please count my reps",
    "count my reps please",
    "can you count my reps",
]

# what the user names -> the kinds it covers ("exercising": every exercise of the split)
ACTIONS: dict[str, tuple[str, ...]] = {
    "waving": ("waving",),
    "doing squats": ("squat",),
    "squatting": ("squat",),
    "doing jumping jacks": ("jumping_jack",),
    "raising my arms": ("arm_raise",),
    "doing arm raises": ("arm_raise",),
    "doing push-ups": ("pushup",),
    "doing pushups": ("pushup",),
    "clapping": ("clapping",),
    "exercising": (),
    "working out": (),
}
STARTSTOP_PROMPTS = [
    "tell me when I start and stop {a}",
    "let me know when I start and stop {a}",
    "say start when I start {a} and stop when I stop",
    "tell me when i start {a} and when i stop",
    "watch me and say when I start and stop {a}",
]


def exercise_kinds(split: str) -> tuple[str, ...]:
    return TRAIN_KINDS if split == "train" else HELDOUT_KINDS


def draw_kind(rng: np.random.Generator, names: tuple[str, ...], p_random: float) -> Kind:
    """One of the named kinds, or (p_random) a procedurally random periodic motion."""
    if rng.random() < p_random:
        return random_kind(rng)
    return KINDS[str(rng.choice(names))]


def reps_for(
    kind: Kind, rng: np.random.Generator, seconds: tuple[float, float]
) -> tuple[int, float]:
    """(reps, period) for a bout lasting about `seconds`."""
    period = float(rng.uniform(*kind.period))
    lo, hi = seconds
    reps = max(1, round(float(rng.uniform(lo, hi)) / period))
    return reps, period


def place_person(scene: Scene, kinds: list[Kind], rng: np.random.Generator) -> float:
    """Centre the person in the model's crop for the most leaning of the kinds' rest poses (a
    plank is long: standing where its feet go would put the head out of the picture); -> the
    yaw of the first bout."""
    yaw = pick_yaw(kinds[0], rng)
    widest = max(kinds, key=lambda k: abs(float(k.rest[0])))
    left = (scene.camera.aspect - 1) / 2
    scene.person.centre_on(with_yaw(widest.rest, yaw), left + float(rng.uniform(0.38, 0.62)))
    return yaw


def mean_period(bouts: list[Bout]) -> float:
    return round(float(np.mean([(b.end - b.start) / b.reps for b in bouts])), 2) if bouts else 0.0


# ---- repcount_figure -------------------------------------------------------------------------------
def repcount_figure(rng: np.random.Generator, n: int, split: str = "train") -> Episode:
    task = "repcount_figure" if split == "train" else "repcount_figure_heldout"
    ep, audio = new_episode(task, rng, n)
    scene = sample_scene(rng, split)
    names = exercise_kinds(split)
    p_random = 0.3 if split == "train" else 0.0
    pool = [draw_kind(rng, names, p_random) for _ in range(int(rng.integers(1, 3)))]
    yaw = place_person(scene, pool, rng)
    sched = scene.person.schedule
    sched.t_start = -float(rng.uniform(0, 3))
    sched.idle(float(rng.uniform(0.5, 5.0)) if rng.random() < 0.6 else 0.0, with_yaw(STAND, yaw))
    # bouts until a few seconds before the end (room to ask "how many?")
    stop_by = n * DT - (float(rng.uniform(2, 6)) if rng.random() < 0.7 else 0.0)
    while sched.end < stop_by - 2:
        kind = pool[int(rng.integers(len(pool)))]
        yaw = pick_yaw(kind, rng, yaw)
        reps, period = reps_for(kind, rng, (4, 20))
        reps = max(1, min(reps, int((stop_by - sched.end) / period)))
        sched.bout(kind, reps, period, rng, float(rng.uniform(0.75, 1.1)), yaw)
        sched.idle(float(rng.uniform(0.8, 5.0)))
    sched.idle(max(0.0, n * DT - sched.end + 1))
    video = render_video(scene, n, rng)
    ep.frames, ep.has_frame = video.frames, video.has_frame

    t_typed = early_text(rng, n) if rng.random() < 0.8 else int(rng.integers(1, max(2, n // 2)))
    t0 = instruct(ep, rng, audio, t_typed, str(rng.choice(COUNT_PROMPTS)), None)
    counted = [int(m) for m in video.rep_mts if m > t0]
    ask = None
    if rng.random() < 0.7:
        lo = min(n - 8, max(t0 + 5, (counted[-1] + 2) if counted else t0 + 5))
        if lo < n - 6:
            ask = int(rng.integers(lo, n - 5))
    q0 = instruct(ep, rng, audio, ask, str(rng.choice(HOW_MANY)), None) if ask is not None else n
    for m in counted:
        if m >= q0:
            break  # counting stops once asked
        at = first_free(ep.say, m)  # a count still being said delays the next (rarely)
        ep.say.append(Utterance(at, str(len(ep.say) + 1), "count"))
    total = len(ep.say)
    if ask is not None:
        m = first_free(ep.say, q0)
        if m < n:
            ep.say.append(Utterance(m, str(total), "answer"))
        ep.info.update(ask_mt=ask, q0=q0)
    ep.info.update(
        t0=t0,
        count_mts=[u.mt for u in ep.say if u.kind == "count"],
        rep_mts=[int(m) for m in video.rep_mts],
        total=total,
        harness=False,
        kinds=sorted({b.kind for b in sched.bouts}),
        period_s=mean_period(sched.bouts),
        scene=scene.describe(),
    )
    add_distractor_speech(rng, ep, audio, p=0.2)
    ep.audio = audio
    return ep


def repcount_figure_heldout(rng: np.random.Generator, n: int) -> Episode:
    return repcount_figure(rng, n, split="heldout")


# ---- startstop -------------------------------------------------------------------------------------
def covered(action: str, split: str) -> tuple[str, ...]:
    """The kinds an action's name covers ("exercising": every exercise of the split, random
    periodic motions included)."""
    return ACTIONS[action] or (*exercise_kinds(split), "random")


def other_kind(rng: np.random.Generator, action: str, split: str) -> Kind:
    """A motion that is not the named action (the model must not answer it): another kind of the
    split, an action (waving, clapping), or a random periodic motion."""
    named = covered(action, split)
    kinds = (*TRAIN_KINDS, *ACTION_KINDS) if split == "train" else (*HELDOUT_KINDS, *ACTION_KINDS)
    if "random" not in named and rng.random() < 0.3:
        return random_kind(rng)
    return KINDS[str(rng.choice([k for k in kinds if k not in named]))]


def named_kind(rng: np.random.Generator, action: str, split: str) -> Kind:
    choice = str(rng.choice(covered(action, split)))
    return random_kind(rng) if choice == "random" else KINDS[choice]


def plan_bouts(rng: np.random.Generator, action: str, split: str) -> list[tuple[Kind, bool, bool]]:
    """What the person does after the instruction, in order: (kind, is it the named action,
    straight into the next without a rest). The named action first; then, after a rest, the
    named action again, something else, or nothing more; from a named action sometimes straight
    into something else (not for "exercising", where anything next would be named too)."""
    plan = [(named_kind(rng, action, split), True, False)]
    while len(plan) < 8:
        _, named, _ = plan[-1]
        if named and ACTIONS[action] and rng.random() < 0.2:
            plan[-1] = (plan[-1][0], True, True)
            plan.append((other_kind(rng, action, split), False, False))
            continue
        r = rng.random()
        if r < 0.35:
            plan.append((named_kind(rng, action, split), True, False))
        elif r < 0.8:
            plan.append((other_kind(rng, action, split), False, False))
        else:
            break
    return plan


def startstop(
    rng: np.random.Generator, n: int, split: str = "train", spoken: bool = False
) -> Episode:
    task = "startstop" if split == "train" else "startstop_heldout"
    ep, audio = new_episode(task, rng, n)
    scene = sample_scene(rng, split)
    action = str(rng.choice(list(ACTIONS)))
    if split != "train" and rng.random() < 0.3:
        action = str(rng.choice(["exercising", "working out"]))  # held-out exercises, named
    prompt = str(rng.choice(STARTSTOP_PROMPTS)).format(a=action)
    t_typed = early_text(rng, n)
    voice = random_user_voice(rng) if spoken else None
    t0 = instruct(ep, rng, audio, t_typed, prompt, voice)

    plan = plan_bouts(rng, action, split)
    yaw = place_person(scene, [k for k, _, _ in plan], rng)
    sched = scene.person.schedule
    sched.t_start = -float(rng.uniform(0, 2))
    end = n * DT
    # the named action begins 1-5 s after the instruction is in (sooner in short episodes)
    begin = (t0 + 1) * DT + float(rng.uniform(1.0, 5.0))
    begin = min(begin, max((t0 + 1) * DT + 0.6, end - 6.0))
    sched.idle(max(0.0, begin - sched.t_start), with_yaw(STAND, yaw))
    named_bouts = []
    for kind, is_named, straight_on in plan:
        if sched.end >= end - 3.0:
            break
        yaw = pick_yaw(kind, rng, yaw)
        reps, period = reps_for(kind, rng, (3.0, 10.0))
        reps = max(2, min(reps, int((end - sched.end) / period) + 1))
        bout = sched.bout(kind, reps, period, rng, float(rng.uniform(0.75, 1.1)), yaw)
        if is_named:
            named_bouts.append(bout)
        if not straight_on:
            sched.idle(float(rng.uniform(1.5, 5.0)))
    sched.idle(max(0.0, end - sched.end + 1))
    video = render_video(scene, n, rng)
    ep.frames, ep.has_frame = video.frames, video.has_frame

    intervals: list[list[int]] = []
    for b in named_bouts:
        a, e = micro_turn_of(b.start, video.times), micro_turn_of(b.end, video.times)
        if a <= t0 or a >= n:
            continue
        if intervals and a <= intervals[-1][1]:  # back to back: one stretch of the action
            intervals[-1][1] = e
            continue
        intervals.append([a, e])
    for a, e in intervals:
        if a + START_LAG < n:
            ep.say.append(Utterance(first_free(ep.say, a + START_LAG), "start", "start"))
        if e + STOP_LAG < n:
            ep.say.append(Utterance(first_free(ep.say, e + STOP_LAG), "stop", "stop"))
    ep.info.update(
        t0=t0,
        action=action,
        covers=list(covered(action, split)),
        intervals=[[a, min(e, n)] for a, e in intervals],
        start_lag=START_LAG,
        stop_lag=STOP_LAG,
        bouts=[
            [b.kind, micro_turn_of(b.start, video.times), micro_turn_of(b.end, video.times)]
            for b in sched.bouts
        ],
        kinds=sorted({b.kind for b in sched.bouts}),
        scene=scene.describe(),
    )
    add_distractor_speech(rng, ep, audio, p=0.2)
    ep.audio = audio
    return ep


def startstop_heldout(rng: np.random.Generator, n: int) -> Episode:
    return startstop(rng, n, split="heldout")
