"""The exercise video of issue 29: the figure renderer, the served video path, the families'
targets, the start/stop IoU, the baselines, the held-out split and the live check's Y4M."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lab.eval.metrics.vision import (
    SaidRun,
    baseline_repcount,
    eval_startstop,
    interval_iou,
    said_intervals,
)
from lab.eval.runner import Run, Said
from lab.eval.suites import episodes_for
from lab.tasks.episode import Episode, Utterance
from lab.tasks.families.exercise import ACTIONS, START_LAG, STOP_LAG
from lab.tasks.figure.body import P
from lab.tasks.figure.draw import Paint
from lab.tasks.figure.live import live_scene, write_live_y4m, write_y4m
from lab.tasks.figure.poses import (
    HELDOUT_BACKGROUNDS,
    HELDOUT_BUILDS,
    HELDOUT_KINDS,
    HELDOUT_PATTERNS,
    KINDS,
    STAND,
    TRAIN_KINDS,
    with_yaw,
)
from lab.tasks.figure.scene import Background, Camera, Scene, sample_scene
from lab.tasks.figure.schedule import Schedule
from lab.tasks.figure.video import (
    DT,
    RENDER_H,
    ModelFramer,
    draw_scene,
    frame_times,
    render_size,
    rep_micro_turns,
    to_i420,
)
from lab.tasks.registry import EVAL_ONLY, FAMILIES, make


def quiet_scene(width: int = 640, height: int = 480) -> Scene:
    """A scene with nothing but the person: flat backdrop, no noise, shake, light or blur."""
    scene = sample_scene(np.random.default_rng(0), "train")
    scene.camera = Camera(width, height, 30.0, 0.05)
    grey = np.full((3, 3), 40.0)
    scene.background = Background("gradient", grey)
    scene.bystander = scene.mover = scene.light = None
    scene.noise, scene.exposure = 0.0, 0.0
    scene.shake = np.zeros((3, 4))
    person = scene.person
    person.height, person.ground, person.x = 0.8, 0.95, scene.camera.aspect / 2
    person.sway = np.zeros((3, 3))
    person.fidget = np.zeros_like(person.fidget)
    colours = {"skin": 200.0, "shirt": 120.0, "sleeves": 120.0, "forearms": 160.0}
    colours |= {"trousers": 90.0, "shins": 90.0, "shoes": 60.0}
    person.style.paints = {
        k: Paint("solid", np.full(3, v), np.full(3, v)) for k, v in colours.items()
    }
    return scene


def test_the_figure_is_where_the_pose_says() -> None:
    scene = quiet_scene()
    kind = KINDS["arm_raise"]
    sched = scene.person.schedule
    sched.idle(1.0, STAND)
    sched.bout(kind, 2, 2.0, np.random.default_rng(1), amp=1.0)
    sched.idle(1.0)
    # standing, and at the top of the first raise (the hold at the peak is around its middle)
    seg = next(s for s in sched.segments if s.reps)
    times = np.array([0.5, seg.t0 + 0.5 * (seg.t1 - seg.t0) / seg.reps])
    pic = draw_scene(scene, times, np.random.default_rng(0), 640, 480)
    pts = scene.person.points(times) * 480

    def at(i: int, name: str) -> float:
        x, y = pts[i, P[name]]
        return float(pic[i, int(y), int(x)].mean())

    for i in range(2):
        assert at(i, "head") == pytest.approx(200, abs=2)
        assert at(i, "pelvis") == pytest.approx(120, abs=2)
        assert at(i, "l_hand") == pytest.approx(160, abs=2)
        x, y = 0.5 * (pts[i, P["l_elbow"]] + pts[i, P["l_hand"]])
        assert float(pic[i, int(y), int(x)].mean()) == pytest.approx(160, abs=2)
        assert float(pic[i, 20, 20].mean()) == pytest.approx(40, abs=1)  # the backdrop
    # standing: hands below the shoulders, feet on the ground line, about `height` tall
    assert pts[0, P["l_hand"], 1] > pts[0, P["l_shoulder"], 1]
    fig = np.argwhere(np.abs(pic[0].mean(-1) - 40) > 5)
    assert (fig[:, 0].max() + 1) / 480 == pytest.approx(0.95, abs=0.01)
    assert (fig[:, 0].max() - fig[:, 0].min() + 1) / 480 == pytest.approx(0.8, abs=0.03)
    # arms raised: hands above the head
    assert pts[1, P["l_hand"], 1] < pts[1, P["head"], 1]
    assert pts[1, P["r_hand"], 1] < pts[1, P["head"], 1]


def test_reps_complete_at_the_return_to_rest() -> None:
    rng = np.random.default_rng(2)
    sched = Schedule(t_start=-1.0)
    sched.idle(1.5, STAND)
    for kind in ("squat", "pushup", "lunge", "side_bend"):  # plank rest, alternating sides
        sched.bout(KINDS[kind], 3, float(rng.uniform(1.3, 2.5)), rng, yaw=1.4)
        sched.idle(1.0)
    times = np.array(sched.rep_times())
    assert len(times) == 12 and np.all(np.diff(times) > 1.0)
    # the pose at each completion is the kind's rest pose, half a rep earlier it is not
    rests = [with_yaw(KINDS[k].rest, 1.4) for k in ("squat", "pushup", "lunge", "side_bend")]
    for k, t in enumerate(times):
        rest = rests[k // 3]
        assert np.allclose(sched.poses(np.array([t]))[0], rest, atol=1e-6)
        assert not np.allclose(sched.poses(np.array([t - 0.6]))[0], rest, atol=0.05)
    completed = sched.completed(np.concatenate([times - 1e-6, times + 1e-6]))
    assert np.array_equal(np.floor(completed[12:] + 1e-9), np.arange(1, 13))
    assert np.array_equal(np.floor(completed[:12] + 1e-9), np.arange(0, 12))
    # the micro-turn of a rep: the first seen frame captured at or after its completion
    ftimes = np.arange(200) * DT + 0.15
    has = np.ones(200, bool)
    has[::7] = False
    mts = rep_micro_turns(sched.completed(ftimes), has)
    for t, m in zip(times, mts, strict=True):
        assert has[m] and ftimes[m] >= t
        assert not any(has[j] and ftimes[j] >= t for j in range(m))


def test_the_served_path_keeps_the_cameras_geometry() -> None:
    """Drawing at RENDER_H rows and resizing through media/video_in.py's `to_model_frame` gives
    the 40x40 frame of the camera's full-resolution picture (within a few grey levels)."""
    for width, height in ((640, 480), (1280, 720), (320, 240)):
        camera = Camera(width, height)
        w, h = render_size(camera)
        assert h == RENDER_H and w % 2 == 0
        assert round(w * 40 / h) == round(width * 40 / height)
    rng = np.random.default_rng(3)
    scene = sample_scene(rng, "train")
    scene.camera = Camera(640, 480)
    scene.noise = 0.0
    kind = KINDS["jumping_jack"]
    scene.person.schedule.bout(kind, 3, 1.5, rng)
    times = np.linspace(0.2, 4.0, 6)
    frames = {}
    for w, h in ((640, 480), render_size(scene.camera)):
        y, u, v = to_i420(draw_scene(scene, times, np.random.default_rng(0), w, h))
        framer = ModelFramer(w, h)
        frames[h] = np.stack([framer(y[i], u[i], v[i]) for i in range(len(times))])
    diff = np.abs(frames[480].astype(float) - frames[RENDER_H].astype(float))
    assert diff.mean() < 3.0


def test_i420_round_trip_keeps_colours() -> None:
    colours = np.array([[30.0, 60, 200], [240, 240, 240], [128, 20, 90], [10, 10, 10]])
    pic = np.broadcast_to(colours[:, None, None, :], (4, 120, 160, 3)).astype(np.float32)
    y, u, v = to_i420(pic)
    framer = ModelFramer(160, 120)
    for i, c in enumerate(colours):
        assert np.abs(framer(y[i], u[i], v[i]).astype(float) - c).max() <= 3


def test_frames_are_the_newest_before_each_slice_ends() -> None:
    camera = Camera(640, 480, 15.0, 0.06)
    times, has = frame_times(np.random.default_rng(4), 500, camera)
    ends = (np.arange(500) + 1) * DT
    lag = ends - times
    assert np.all(lag >= 0.06 - 0.005 - 1e-9) and np.all(lag <= 0.06 + 0.005 + 1 / 15 + 1e-9)
    assert np.all(np.diff(times) > 0) and 0.9 < has.mean() < 1.0


def test_heldout_kinds_scenes_and_styles_never_reach_training() -> None:
    held = {*HELDOUT_BACKGROUNDS, *HELDOUT_BUILDS, *HELDOUT_PATTERNS}
    for seed in range(1500):
        s = sample_scene(np.random.default_rng(seed), "train").describe()
        by = s["bystander"] or []
        assert not ({s["background"], s["build"], s["pattern"], *by} & held)  # type: ignore[misc]
        h = sample_scene(np.random.default_rng(seed), "heldout").describe()
        assert {h["background"], h["build"], h["pattern"]} <= held
    assert {"repcount_figure_heldout", "startstop_heldout"} <= EVAL_ONLY
    for seed in range(30):
        for family in ("repcount_figure", "startstop"):
            info = make(family, 10_000_000 + seed, 60).info
            assert not set(info["kinds"]) & set(HELDOUT_KINDS)
            s = info["scene"]
            assert s["split"] == "train" and not (
                {s["background"], s["build"], s["pattern"]} & held
            )
    for seed in range(6):
        info = make("repcount_figure_heldout", seed, 30).info
        assert set(info["kinds"]) <= set(HELDOUT_KINDS) and info["scene"]["split"] == "heldout"


@pytest.mark.parametrize("seed", range(4))
def test_repcount_figure_counts_each_rep_as_it_completes(seed: int) -> None:
    ep = make("repcount_figure", 10_000_000 + seed, 160)
    info = ep.info
    counts = [u for u in ep.say if u.kind == "count"]
    assert [u.text for u in counts] == [str(i + 1) for i in range(len(counts))]
    due = [m for m in info["rep_mts"] if m > info["t0"] and m < info.get("q0", ep.n)]
    assert len(counts) == len(due) == info["total"]
    assert sum(u.mt == m for u, m in zip(counts, due, strict=True)) >= len(due) - 1  # one late
    answers = [u for u in ep.say if u.kind == "answer"]
    if answers:
        assert answers[0].text == str(info["total"]) and answers[0].mt >= info["q0"]
    assert ep.frames is not None and ep.frames.shape == (160, 40, 40, 3)


@pytest.mark.parametrize("seed", range(4))
def test_startstop_says_start_and_stop_at_the_named_action(seed: int) -> None:
    ep = make("startstop", 10_000_000 + seed, 200)
    info = ep.info
    covers = set(ACTIONS[info["action"]]) or {*TRAIN_KINDS, "random"}
    named = [(a, e) for k, a, e in info["bouts"] if k in covers and a > info["t0"]]
    assert named, info
    # the true intervals are the named action's bouts (back to back ones joined)
    assert info["intervals"][0][0] == named[0][0]
    assert all(a > info["t0"] for a, _ in info["intervals"])
    want = []
    for a, e in info["intervals"]:
        want.append((a + START_LAG, "start"))
        if e + STOP_LAG < ep.n:
            want.append((e + STOP_LAG, "stop"))
    assert [(u.mt, u.text) for u in ep.say] == [w for w in want if w[0] < ep.n]
    assert "start" in ep.typed[0][1]


def test_start_stop_iou_on_hand_made_cases() -> None:
    s = [
        Said(10, "start"),
        Said(12, "start"),
        Said(20, "stop"),
        Said(25, "stop"),
        Said(40, "Start."),
    ]
    assert said_intervals(s, 50) == [(10, 20), (40, 50)]  # a second start or stop is ignored
    assert interval_iou([(10, 20)], [(10, 20)], 50) == 1.0
    assert interval_iou([(10, 20)], [(15, 25)], 50) == pytest.approx(5 / 15)
    assert interval_iou([], [(15, 25)], 50) == 0.0
    assert interval_iou([], [], 50) == 1.0
    assert interval_iou([(10, 50)], [(10, 20)], 50) == pytest.approx(10 / 40)  # no "stop"
    assert interval_iou([(10, 20), (30, 40)], [(10, 20)], 50) == pytest.approx(0.5)  # a false pair
    ep = Episode(task="startstop", n=50, info={"t0": 2, "intervals": [[10, 20]]})
    ep.say = [Utterance(12, "start", "start"), Utterance(23, "stop", "stop")]
    ep.frames = np.zeros((50, 40, 40, 3), np.uint8)
    ep.has_frame = np.ones(50, bool)
    runs: list[Run] = [
        SaidRun(ep, said=[Said(12, "start"), Said(23, "stop")]),  # the targets: 8 / 13
        SaidRun(ep, said=[Said(10, "start")]),  # never stopped: 10 / 40
    ]
    res = eval_startstop(runs)
    assert res["miou"] == pytest.approx(100 * (8 / 13 + 10 / 40) / 2, abs=0.1)
    assert res["target_miou"] == pytest.approx(100 * 8 / 13, abs=0.1)
    assert res["r_at_0_5"] == 50.0 and res["episodes"] == 2


def test_centroid_tracker_counts_squares_not_people() -> None:
    """The baseline of issue 29: the old square scenes are easy for a centroid tracker; the
    held-out figure scenes are not (the point of them). Measured in the docs on 32 episodes."""
    squares = baseline_repcount(episodes_for("repcount", 24, 1), "centroid")
    people = baseline_repcount(episodes_for("repcount_figure_heldout", 24, 1), "centroid")
    assert squares["off_by_one_accuracy"] >= 85
    assert people["off_by_one_accuracy"] <= 40
    assert squares["off_by_one_accuracy"] - people["off_by_one_accuracy"] >= 50


def test_y4m_writer_matches_the_browser_harness(tmp_path: Path) -> None:
    harness = pytest.importorskip("tests.browser.harness")
    from media.synthetic import moving_square_frame

    ref = harness.make_motion_y4m(tmp_path / "ref.y4m", seconds=1.0)
    frames = (moving_square_frame(k, 320, 240, 15) for k in range(15))
    ours = write_y4m(tmp_path / "ours.y4m", frames, 320, 240, 15)
    assert ours.read_bytes() == ref.read_bytes()


def test_live_check_y4m_and_its_rep_times(tmp_path: Path) -> None:
    path = tmp_path / "live.y4m"
    reps = write_live_y4m(path, seed=0, seconds=12.0)
    data = path.read_bytes()
    header = data[: data.index(b"\n")]
    assert header == b"YUV4MPEG2 W320 H240 F15:1 Ip A1:1 C420jpeg"
    frame = len(b"FRAME\n") + 320 * 240 * 3 // 2
    assert len(data) == len(header) + 1 + 180 * frame
    assert len(reps) >= 3 and reps == sorted(reps) and 2.0 <= reps[0] and reps[-1] < 12.0
    scene = live_scene(0, 12.0)
    assert scene.split == "heldout" and scene.background.kind in HELDOUT_BACKGROUNDS
    assert math.isclose(reps[0], scene.person.schedule.rep_times()[0])


def test_families_are_registered() -> None:
    for family in ("repcount_figure", "repcount_figure_heldout", "startstop", "startstop_heldout"):
        assert family in FAMILIES
