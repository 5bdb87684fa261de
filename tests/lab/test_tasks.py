"""Task generators, targets, metrics, the VAD baseline, and evaluate/train end to end (tiny)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.model import InteractionModel
from inference.protocol import MICROTURN_SAMPLES, MicroTurnOutput
from inference.text import EOU, PAD, SIL
from lab.eval.cli import main as eval_main
from lab.eval.metrics.timing import eval_timespeak, timing_accuracy
from lab.eval.metrics.turns import eval_monologue, summarize_turns, turn_events
from lab.eval.runner import Run
from lab.eval.suites import evaluate
from lab.tasks.common import AHEAD_MT, PER_S
from lab.tasks.episode import Episode, Utterance, targets
from lab.tasks.motion import harness_motion, render
from lab.tasks.registry import FAMILIES, make


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"demo"}))
def test_generators_are_deterministic_and_well_formed(family: str) -> None:
    a, b = make(family, 3, 60), make(family, 3, 60)
    assert a.typed == b.typed and [(u.mt, u.text) for u in a.say] == [(u.mt, u.text) for u in b.say]
    assert np.array_equal(a.mic(), b.mic())
    assert a.mic().shape == (60 * MICROTURN_SAMPLES,) and a.mic().dtype == np.float32
    assert np.abs(a.mic()).max() < 1.0
    if not a.skips:  # a long call shown in little is for training only (families/long.py)
        inputs = a.inputs()
        assert [i.index for i in inputs] == list(range(a.start_index, a.start_index + 60))
    t = targets(a, 8, 4)
    assert t.text_out.shape == (60, 4) and t.logmel.shape == (60, 16, 80)
    # utterances never overlap: each starts after the previous one's text and audio
    for u, v in zip(a.say, a.say[1:], strict=False):
        assert v.mt > u.mt


def test_targets_lay_out_an_utterance_over_micro_turns() -> None:
    ep = Episode(task="x", n=10, say=[Utterance(3, "hello")])
    t = targets(ep, 8, 4)
    assert t.text_out[3].tolist() == [*b"hell"]
    assert t.text_out[4].tolist() == [ord("o"), ord(" "), EOU, PAD]
    assert t.text_out[0].tolist() == [SIL, PAD, PAD, PAD]
    assert t.speaking[3] and not t.speaking[2]
    assert t.logmel[3].mean() > -4.0 > t.logmel[0].mean()  # the engine's speaking threshold
    assert t.text_weight[3] > t.text_weight[0]


def test_text_in_follows_the_engines_queue() -> None:
    ep = Episode(task="x", n=6, typed=[(1, "count down from 5"), (2, "hi")])
    ids, eou_at = ep.text_in(8)
    flat = [i for row in ids for i in row if i != PAD]
    assert flat == [*b"count down from 5", EOU, *b"hi", EOU]
    assert eou_at == {
        1: 4,
        2: 5,
    }  # one word per micro-turn: "count " "down " "from " "5"+EOU, "hi"+EOU


def test_harness_motion_matches_the_qa_harness_camera() -> None:
    from media.synthetic import moving_square_frame

    motion = harness_motion()
    motion.noise = 0.0
    frames, _, _, reps = render(motion, 25, np.ones(25, bool), np.random.default_rng(0), lag_s=0.0)
    for k in (0, 4, 9, 13):
        t = (k + 1) * 0.2 - 1 / 30  # inside the jitter of the sampled frame time
        img = moving_square_frame(round(t * 15), 320, 240, 15)[:, 40:280]
        small = img.reshape(40, 6, 40, 6, 3).mean(axis=(1, 3))
        want = np.argwhere(small[..., 0] > 160).mean(axis=0)
        got = np.argwhere(frames[k][..., 0] > 160).mean(axis=0)
        assert np.abs(want - got).max() < 3.0, (k, want, got)
    # the top of the path is reached 1.5 s into each 2 s revolution
    assert list(reps) == [7, 17]


def _out(index: int, text: str = "", speaking: bool = False, eou: bool = False) -> MicroTurnOutput:
    return MicroTurnOutput(
        index=index,
        text=text,
        audio=np.zeros(MICROTURN_SAMPLES, np.float32),
        speaking=speaking,
        end_of_utterance=eou,
    )


def test_utterances_and_timing_accuracy() -> None:
    ep = Episode(task="timespeak/every", n=8, say=[Utterance(2, "hi"), Utterance(6, "hi")])
    run = Run(
        ep,
        outputs=[
            _out(0),
            _out(1),
            _out(2),
            _out(3, "hi ", eou=True),
            _out(4),
            _out(5),
            _out(6),
            _out(7, "yo", eou=True),
        ],
    )
    said = run.utterances()
    assert [(s.mt, s.text) for s in said] == [(3, "hi"), (7, "yo")]
    assert timing_accuracy([(2, "hi"), (6, "hi")], said) == 0.5  # one hit of two
    report = eval_timespeak([run])
    assert report["macro_accuracy"] == 50.0 and report["per_subtype"] == {"every": 50.0}


def test_turn_events_latency_false_interruptions_and_barge_in() -> None:
    sr = 16_000
    ep = Episode(task="turn", n=30)
    ep.info = {
        "turns": [{"start": 0, "end": int(1.05 * sr), "take_mt": 6, "long": True}],
        "barge": [{"at": int(2.1 * sr), "stop_mt": 11, "end": int(3.0 * sr)}],
    }
    speaking = np.zeros(30, bool)
    speaking[5:12] = True  # heard from 1.2 s (0.15 s after the turn), silent output at slice 12
    e = turn_events(ep, speaking)
    assert e["latency"] == [pytest.approx(0.15)]
    assert e["false_interruption"] == [0.0]
    assert e["barge_stop"] == [pytest.approx(13 * 0.2 - 2.1)]
    speaking[2] = True  # starting inside the user's turn is a false interruption
    assert turn_events(ep, speaking)["false_interruption"] == [1.0]


def test_turns_never_taken_report_never_not_nan() -> None:
    taken = {"latency": [0.2, 0.4], "false_interruption": [0.0, 0.0], "barge_stop": []}
    never = {"latency": [float("inf")] * 3, "false_interruption": [0.0] * 3, "barge_stop": []}
    summary = summarize_turns([taken, never])  # 2 of 5 turns taken: the median is "never"
    assert summary["latency_median_s"] is None and summary["latency_p90_s"] is None
    assert summary["took_floor"] == 40.0 and summary["turns"] == 5
    summary = summarize_turns([taken, taken, never])  # 4 of 7: median 0.4 s, p90 never
    assert summary["latency_median_s"] == 0.4 and summary["latency_p90_s"] is None
    json.dumps(summary, allow_nan=False)  # the report stays valid JSON


def test_vad_baseline_on_a_turn_episode() -> None:
    pytest.importorskip("silero_vad")
    from lab.baseline import vad_baseline

    # an espeak-ng voice: a festival diphone voice's quiet last syllable is silence to the VAD
    seed = next(s for s in range(50) if make("turn", s, 80).info["voice"].startswith("en"))
    report = vad_baseline([make("turn", seed, 80)], settings=((500, 200),))
    cell = report["silence_500ms"]
    assert cell["turns"] >= 1 and cell["latency_median_s"] > 0.4  # it waits out 500 ms of silence


def test_evaluate_runs_episodes_through_the_engine(tiny_random: InteractionModel) -> None:
    report = evaluate(
        tiny_random,
        ["timespeak", "repcount", "delegate", "idle"],
        count=2,
        seed=0,
        sessions=2,
        length=20,
    )
    suites = report["suites"]
    assert set(suites) == {"timespeak", "repcount", "delegate", "idle"}
    assert 0.0 <= suites["timespeak"]["macro_accuracy"] <= 100.0
    assert suites["repcount"]["mae"] >= 0 and suites["delegate"]["episodes"] == 2
    json.dumps(report)  # serialisable


def test_evaluate_cli_writes_a_report(tmp_path: Path) -> None:
    from inference.checkpoint import init_model, save
    from inference.config import preset

    save(init_model(preset("tiny")), tmp_path / "ck", dtype="float32", preset_name="tiny")
    out = tmp_path / "eval.json"
    code = eval_main(
        [
            "--suite",
            "chat,idle",
            "--episodes",
            "1",
            "--length",
            "12",
            "--checkpoint",
            str(tmp_path / "ck"),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert (
        report["suites"]["chat"]["episodes"] == 1
        and report["checkpoint"]["name"] == "microturn-tiny-v0"
    )


def test_train_runs_resumes_and_exports(tmp_path: Path) -> None:
    from inference.checkpoint import load
    from lab.train import main

    run = tmp_path / "run"
    args = [
        "--preset",
        "tiny",
        "--run",
        str(run),
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--episode-mt",
        "12,16",
        "--no-progress",
    ]
    assert main([*args, "--minutes", "0.0001"]) == 0  # stops after its first step
    state = torch.load(run / "state.pt", weights_only=False)
    assert state["meta"]["step"] == 1
    # the next stage waits for this one to finish (make train runs them in order)
    assert main([*args, "--resume", "--stage", "listen"]) == 0
    state = torch.load(run / "state.pt", weights_only=False)
    assert (state["meta"]["stage"], state["meta"]["step"]) == ("text", 1)
    assert (
        main([*args, "--resume", "--export", str(tmp_path / "ck"), "--export-dtype", "float32"])
        == 0
    )
    assert torch.load(run / "state.pt", weights_only=False)["meta"]["step"] == 3
    assert load(tmp_path / "ck").cfg.name == "microturn-tiny-v0"
    assert (tmp_path / "ck" / "training.json").exists()
    # the next stage starts from these weights; running the first stage again then does nothing
    assert main([*args, "--resume", "--stage", "listen"]) == 0
    assert main([*args, "--resume", "--stage", "text"]) == 0
    meta = torch.load(run / "state.pt", weights_only=False)["meta"]
    assert (meta["stage"], meta["step"]) == ("listen", 3)
    # a stage that adds an input (prosody: the pitch channel) widens the model and trains it
    assert main([*args, "--resume", "--stage", "prosody", "--export", str(tmp_path / "ck2")]) == 0
    state = torch.load(run / "state.pt", weights_only=False)
    assert state["config"]["pitch_in"] and state["meta"]["stage"] == "prosody"
    # its heard-word head trains beside the model but is not exported (load refuses extras)
    assert set(state["word_head"]) == {"out.weight", "out.bias", "floor.weight", "floor.bias"}
    assert load(tmp_path / "ck2").cfg.pitch_in and not load(tmp_path / "ck").cfg.pitch_in
    # the next stage starts from that head, not a fresh one (one step at warm-up lr moves it little)
    head = state["word_head"]["out.weight"]
    assert main([*args, "--resume", "--stage", "timing", "--minutes", "0.0001"]) == 0
    moved = torch.load(run / "state.pt", weights_only=False)["word_head"]["out.weight"] - head
    assert moved.abs().max() < 1e-3 < head.abs().max()
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert "word" in logged[-1] and "word" not in logged[0]
    # a warm start from an export (no head in it) detaches a fresh head for its first steps
    warm = [*args[:3], str(tmp_path / "warm"), *args[4:]]
    assert (
        main([*warm, "--init", str(tmp_path / "ck"), "--stage", "late", "--minutes", "0.0001"]) == 0
    )
    state = torch.load(tmp_path / "warm" / "state.pt", weights_only=False)
    assert state["meta"]["word_detached_until"] == 100 and "word_head" in state


def test_demo_episode_uses_the_harness_camera_and_a_quiet_mic() -> None:
    ep = make("demo", 0, 200, training=False)
    assert ep.typed[0] == (0, "say hello every 3 seconds")  # typed as soon as the call is up
    hellos = [u.mt for u in ep.say if u.kind == "say"]
    assert [b - a for a, b in itertools.pairwise(hellos)] == [15, 15, 15]
    counts = [u for u in ep.say if u.kind == "count"]
    assert len(counts) >= 8 and counts[0].text == "1"
    assert np.abs(ep.mic()).max() < 0.05  # a quiet room, as in the page test: nobody talks


@pytest.mark.parametrize("training", [True, False])
def test_a_calls_first_typed_message_is_sometimes_in_its_first_micro_turn(training: bool) -> None:
    # a page may type as soon as the call is up; the model must have seen that, and be judged on it
    firsts = [make("timespeak", seed, 120, training=training).typed[0][0] for seed in range(200)]
    at_zero = sum(mt == 0 for mt in firsts)
    assert 10 <= at_zero <= 60, at_zero
    assert max(firsts) > 10


def test_only_the_plain_chain_loops_the_harness_speech() -> None:
    from lab.tasks.families.demo import harness_mic

    loop = harness_mic(120)
    looped = {
        family: sum(
            abs(np.corrcoef(make(family, seed, 120).mic(), loop)[0, 1]) > 0.9 for seed in range(20)
        )
        for family in ("chain", "chain_quiet")
    }
    assert looped["chain_quiet"] == 0 and 0 < looped["chain"] < 20, looped


def test_chain_runs_tasks_one_after_another() -> None:
    from lab.tasks.common import utter_mts
    from lab.tasks.families.timespeak import STOPS

    seen: set[str] = set()
    stopped_after_saying = 0
    for seed in range(12):
        ep = make("chain", seed, 240)
        seen.update(ep.info["segments"])
        assert ep.info["segments"] and ep.frames is not None
        # no utterance begins before the previous one is over
        for u, v in itertools.pairwise(ep.say):
            assert v.mt >= u.mt + utter_mts(u.text)
        # each "count my reps" counts from 1 until its "how many?", answered with the count
        counts: list[int] = []
        for u in [] if "countdown" in ep.info["segments"] else ep.say:
            if u.kind == "count":
                counts.append(int(u.text))
                assert counts == list(range(1, len(counts) + 1))
            elif u.kind == "answer":
                assert int(u.text) == len(counts)
                counts = []
        # nothing is said of a stopped "every": its word's last utterance precedes the stop
        typed = [*ep.typed, (ep.n, "")]
        for i, (mt, text) in enumerate(typed[:-2]):
            if text.startswith("say ") and " every " in text and typed[i + 1][1] in STOPS:
                word = text[len("say ") : text.index(" every ")]
                stop, after = typed[i + 1][0], typed[i + 2][0]
                said = [u.mt for u in ep.say if u.text == word and mt < u.mt < after]
                # (a stop may come before the first one is due: then nothing is said)
                assert all(m < stop for m in said)
                stopped_after_saying += bool(said)
    assert {"every", "count"} <= seen
    assert stopped_after_saying >= 3


def test_turns_get_the_long_reply_and_a_barge_in_gets_okay() -> None:
    from lab.tasks.common import utter_mts
    from lab.tasks.families.turn import LONG_REPLY, TAKE

    barges = 0
    for seed in range(6):
        ep = make("turn", seed, 220)
        said = {u.mt: u.text for u in ep.say}
        barged_at = {b["at"] for b in ep.info["barge"]}
        for t in ep.info["turns"]:  # every turn gets the long reply, a barge-in turn "okay"
            assert said[t["take_mt"]] == (TAKE if t["start"] in barged_at else LONG_REPLY)
        for b in ep.info["barge"]:  # the long reply is cut: silence from the stop to its end
            reply = max(mt for mt in said if mt < b["stop_mt"])
            assert (b["stop_mt"], reply + utter_mts(LONG_REPLY) + 1) in ep.silence
        barges += len(ep.info["barge"])
    assert barges >= 6  # most long replies are barged in on: stopping is practised


def test_spoken_instructions_are_said_not_typed_and_timed_from_the_speech_end() -> None:
    from lab.tasks.common import MT, PER_S, instruct
    from lab.tasks.episode import Episode
    from lab.tasks.speakers import voice

    # said aloud, an instruction is the model's from the first micro-turn after its speech ends
    for i in (0, 1, 2):
        ep = Episode(task="x", n=60)
        mic = np.zeros(60 * MT, np.float32)
        t0 = instruct(ep, np.random.default_rng(i), mic, 3, "say hello every 3 seconds", voice(i))
        peak = [float(np.abs(x).max()) for x in mic.reshape(-1, MT)]
        assert peak[t0 - 1] > 0 and max(peak[t0:]) == 0.0
    for seed in range(8):
        typed, spoken = make("timespeak", seed, 200), make("timespeak_spoken", seed, 200)
        assert typed.typed and not spoken.typed  # the same kind of task, said aloud
        t0 = spoken.info["t0"]
        if spoken.task == "timespeak/every":
            period = spoken.info["period"] * PER_S
            assert [u.due for u in spoken.say][:2] == [t0 + period, t0 + 2 * period][
                : len(spoken.say)
            ]
    chat = make("chat_spoken", 3, 60)
    assert not chat.typed and chat.say[0].mt == chat.info["t0"]


def test_timed_timespeak_reads_a_number_once_or_every_and_the_held_out_keeps_three_kinds() -> None:
    from lab.tasks.common import PER_S

    episodes = [make("timespeak_timed", seed, 200) for seed in range(16)]
    assert {ep.task for ep in episodes} == {"timespeak/every", "timespeak/once"}
    for ep in episodes:
        if ep.task == "timespeak/once":
            assert " in " in f" {ep.typed[0][1]} " and "every" not in ep.typed[0][1]
            assert [u.due for u in ep.say] == [ep.info["t0"] + ep.info["delay"] * PER_S][
                : len(ep.say)
            ]
    # the evaluation's family still draws all three kinds
    assert {make("timespeak", seed, 200).task for seed in range(16)} == {
        "timespeak/every",
        "timespeak/once",
        "timespeak/countdown",
    }


def test_a_detached_heard_word_head_trains_itself_but_leaves_the_trunk_alone() -> None:
    from inference.checkpoint import init_model
    from inference.config import preset
    from lab.objectives import WordHead, losses
    from lab.tasks.batch import training_batch
    from lab.train_recipe import Recipe

    cfg = preset("tiny")
    batch = training_batch(cfg, 0, 2, {"cuespeak": 1.0}, (40, 48))
    assert (batch.word > 0).any()
    for detach in (True, False):
        model, head = init_model(cfg, seed=0), WordHead(cfg.d_model)
        parts = losses(model, batch, Recipe(word_weight=1.0), torch.Generator(), head, detach)
        parts["word"].backward()
        trunk = [p.grad for p in model.parameters() if p.grad is not None and p.grad.any()]
        assert head.out.weight.grad is not None and head.out.weight.grad.any()
        assert (len(trunk) == 0) == detach


def test_a_read_out_batch_trains_the_copy_pointer_at_its_stages_own_lr() -> None:
    """The copy stage: a batch of results with open values reaches the pointer's parameters
    through the text loss, and the optimiser trains them at `fast_scale` times the lr."""
    from inference.checkpoint import init_model
    from inference.config import preset
    from lab.objectives import losses
    from lab.tasks.batch import training_batch
    from lab.train import make_optimizer
    from lab.train_recipe import Recipe

    cfg = preset("tiny", copy_memory=32)
    model = init_model(cfg, seed=0)
    pointer = model.text_head.copy
    assert pointer is not None
    batch = training_batch(cfg, 0, 2, {"delegate_open": 1.0}, (70, 80))
    losses(model, batch, Recipe(), torch.Generator())["text"].backward()
    for part in (pointer.gate.bias, pointer.match, pointer.key_prev1.weight):
        assert part.grad is not None and part.grad.abs().sum() > 0
    opt, _ = make_optimizer(model, None, Recipe(lr=1e-3), (), ("text_head.copy.",), 4.0)
    fast = [g for g in opt.param_groups if g.get("lr_scale") == 4.0]
    assert len(fast) == 1
    assert {id(p) for p in fast[0]["params"]} == {id(p) for p in pointer.parameters()}


def test_every_stage_mixes_training_families_and_a_typo_is_an_error() -> None:
    from inference.config import preset
    from lab.stages import STAGES
    from lab.tasks.batch import training_batch

    for spec in STAGES.values():
        assert set(spec["mix"]) <= set(FAMILIES) - {"demo"}
        assert abs(sum(spec["mix"].values()) - 1) < 1e-9
    with pytest.raises(ValueError, match="timespeek"):
        training_batch(preset("tiny"), 0, 1, {"timespeek": 1.0}, (10, 12))


def test_backchannels_fall_in_late_pauses_of_a_telling_and_never_in_a_short_turn() -> None:
    from lab.tasks.common import MT
    from lab.tasks.families.monologue import BACKCHANNEL, backchannel_mt
    from lab.tasks.families.turn import LONG_REPLY

    sr, placed = 16_000, 0
    for seed in range(6):
        ep = make("monologue", seed, 220)
        for u in ep.say:
            if u.text == LONG_REPLY:
                continue
            assert u.text == BACKCHANNEL
            # in a telling (one the episode's end cuts short included), well into it
            (t,) = [t for t in ep.info["turns"] if t["start"] <= u.mt * MT < t["end"]]
            assert u.mt * MT - t["start"] >= 7 * sr
            # its micro-turn's input and the one before it: all in a pause (>= 0.4 s heard)
            assert any(a <= (u.mt - 1) * MT and (u.mt + 1) * MT <= b for a, b in ep.info["pauses"])
            placed += 1
        mts = [u.mt for u in ep.say if u.text == BACKCHANNEL]
        assert all(b - a >= 15 for a, b in itertools.pairwise(mts))  # at most every 3 s
    assert placed >= 6
    for seed in range(20):  # a turn of the turn family is over before a pause could qualify
        ep = make("turn", seed, 200)
        for t in ep.info["turns"]:
            for a, b in ep.info["pauses"]:
                if t["start"] <= a < t["end"]:
                    assert backchannel_mt(t["start"], (a, b), None) is None


def test_eval_monologue_counts_backchannels_apart_from_taking_the_floor() -> None:
    sr = 16_000
    ep = Episode(task="monologue", n=30, say=[Utterance(10, "uh-huh", "backchannel")])
    ep.info = {"turns": [{"start": 0, "end": int(4.05 * sr), "take_mt": 21, "long": True}]}

    def run(said: dict[int, str]) -> Run:
        outs = []
        for k in range(30):
            text = said.get(k, "")
            speaking = any(m <= k < m + 2 for m in said)  # each utterance plays 2 micro-turns
            outs.append(_out(k, text, speaking=speaking, eou=bool(text)))
        return Run(ep, outputs=outs)

    good = eval_monologue([run({10: "uh-huh ", 21: "okay "})])
    assert good["backchannel_rate"] == 100.0 and good["false_interruption_rate"] == 0.0
    assert good["misplaced_backchannels_per_episode"] == 0.0 and good["took_floor"] == 100.0
    # the long reply in the pause takes the floor mid-telling; an early "uh-huh" is misplaced
    bad = eval_monologue([run({4: "uh-huh ", 10: "let me ", 21: "okay "})])
    assert bad["backchannel_rate"] == 0.0 and bad["false_interruption_rate"] == 100.0
    assert bad["misplaced_backchannels_per_episode"] == 1.0
    # speech right after a backchannel is not taken for it: it interrupts the telling
    rushed = eval_monologue([run({10: "uh-huh ", 12: "let me ", 21: "okay "})])
    assert rushed["backchannel_rate"] == 100.0 and rushed["false_interruption_rate"] == 100.0
    # a telling the episode's end cuts short: interruptions count, latency does not
    ep.info["turns"].append({"start": int(4.6 * sr), "end": 30 * 3200, "take_mt": None})
    cut = eval_monologue([run({10: "uh-huh ", 21: "okay ", 26: "let me "})])
    assert cut["false_interruption_rate"] == 50.0 and cut["turns"] == 1


def test_cue_words_near_misses_and_their_word_classes() -> None:
    """A near miss sounds different from its cue (espeak-ng's phonemes differ: "blew" was a
    homophone of "blue"), and every vocabulary word has a heard-word class of its own (hashed
    classes put "blue" with "me" and "seven" with "to")."""
    import subprocess

    from lab.tasks.vocab import CUES, VOCABULARY, WORD_CLASSES, word_class

    def phonemes(word: str) -> str:
        out = subprocess.run(["espeak-ng", "-q", "-x", word], capture_output=True, text=True)
        return out.stdout.strip()

    for cue, near in CUES.items():
        assert phonemes(cue) not in {phonemes(w) for w in near}, cue
    classes = [word_class(w) for w in VOCABULARY]
    assert len(set(classes)) == len(VOCABULARY) and max(classes) < WORD_CLASSES
    assert word_class("blue") != word_class("me") and word_class("seven") != word_class("to")
    assert 0 < word_class("zebra") < WORD_CLASSES and word_class("Seven,") == word_class("7")


def test_cuespeak_near_trains_on_more_near_misses() -> None:
    """The training-only cuespeak_near family says more near misses than cues (half its phrases
    hold one, 40 % the cue); the held-out cuespeak fewer (30 % and 50 %)."""
    from lab.tasks.vocab import CUES

    def near_per_cue(family: str) -> float:
        near = cues = 0
        for seed in range(64):  # 24 episodes left the ratio a sampling accident away from 1
            ep = make(family, seed, 200)
            near += sum(w in CUES[ep.info["cue"]] for _, w in ep.heard)
            cues += sum(w == ep.info["cue"] for _, w in ep.heard)
        return near / cues

    assert near_per_cue("cuespeak") < 0.9 < 1.0 < near_per_cue("cuespeak_near")


def test_timespeak_late_is_one_late_reminder_and_timespeak_keeps_short_ones() -> None:
    """The training-only timespeak_late family is one reminder of 12-20 s; the held-out
    timespeak's reminders still start at 2 s."""
    late = [make("timespeak_late", seed, 200).info for seed in range(24)]
    assert {i["delay"] for i in late} <= set(range(12, 21)) and len({i["delay"] for i in late}) > 4
    assert all(len(i["expected"]) == 1 and "period" not in i for i in late)
    once = [make("timespeak", seed, 200, training=False).info.get("delay") for seed in range(48)]
    assert min(d for d in once if d is not None) < 12


def test_the_silence_after_a_near_miss_weighs_like_the_answer_to_a_cue() -> None:
    """Each near miss of the cue holds the two micro-turns after it silent at an event's weight
    (an answer's onset has it; plain silence keeps weight 1)."""
    from lab.tasks.vocab import CUES

    held = 0
    for seed in range(8):
        ep = make("cuespeak_near", seed, 200)
        near_ends = [m for m, w in ep.heard if w in CUES[ep.info["cue"]]]
        assert sorted(ep.hold) == sorted(m + d for m in near_ends for d in (0, 1))
        weight = targets(ep, 8, 8).text_weight
        answers = {u.mt for u in ep.say}
        held_in = [m for m in ep.hold if m < ep.n]
        assert all(weight[m] == 4.0 for m in held_in)
        held += len(held_in)
        quiet = set(range(ep.n)) - set(ep.hold) - {a + d for a in answers for d in (-1, 0, 1)}
        assert all(weight[m] == 1.0 for m in quiet if m < ep.n)
    assert held >= 20


def test_heard_words_label_cues_turn_ends_and_spoken_numbers() -> None:
    """The heard-word targets of the auxiliary loss: in CueSpeak every word, each at the
    micro-turn a response to it would be due (the cue's class exactly where the model answers),
    none between; a turn's last word where the turn ends; a spoken instruction's number."""
    from lab.tasks.common import MT
    from lab.tasks.vocab import WORD_CLASSES, word_class

    ep = make("cuespeak", 4, 200)
    tg = targets(ep, 8, 4)
    assert ep.heard_all and (tg.word >= 0).all()
    assert 0 < (tg.word > 0).sum() < ep.n / 2 and (tg.word < WORD_CLASSES).all()
    cue = word_class(ep.info["cue"])
    assert ep.info["expected"] and all(tg.word[m] == cue for m in ep.info["expected"])
    assert word_class("seven") == word_class("7") != word_class("eleven")

    ep = make("turn", 2, 200)
    tg = targets(ep, 8, 4)
    assert not ep.heard_all and (tg.word == -1).sum() > ep.n / 2  # unknown between turn ends
    ends = {t["end"] // MT + 1 for t in ep.info["turns"] if t["take_mt"] is not None}
    assert ends and ends <= {m for m, _ in ep.heard} and all(tg.word[m] > 0 for m in ends)

    for seed in range(6):
        ep = make("timespeak_spoken", seed, 200)
        if ep.task == "timespeak/every":
            (m, w), *_ = ep.heard
            assert m == ep.info["t0"] and word_class(w) == word_class(str(ep.info["period"]))
            break
    else:
        raise AssertionError("no spoken 'every' instruction in 6 seeds")


def test_silence_in_a_mid_turn_pause_weighs_like_taking_the_floor() -> None:
    from lab.tasks.common import MT

    held = 0
    for seed in range(6):
        ep = make("turn_corpus", seed, 200)
        t = targets(ep, 8, 4)
        for a, b in ep.info["pauses"]:
            inside = range(a // MT + 1, min(ep.n, b // MT))  # wholly in the pause
            assert all(t.text_weight[m] == 4.0 and t.text_out[m, 0] == SIL for m in inside)
            held += len(inside)
    assert held > 20


def test_floor_labels_say_where_the_user_is_in_their_turn() -> None:
    from lab.tasks.common import MT
    from lab.tasks.episode import FLOOR_NONE, FLOOR_OVER, FLOOR_PAUSE, FLOOR_SPEAKING

    ep = make("turn_corpus", 3, 200)
    floor = targets(ep, 8, 4).floor
    for tr in ep.info["turns"]:
        assert floor[tr["start"] // MT + 1] in (FLOOR_SPEAKING, FLOOR_PAUSE)
        if tr["take_mt"] is not None and tr["take_mt"] < ep.n:
            assert floor[tr["take_mt"]] == FLOOR_OVER
    for a, b in ep.info["pauses"]:
        assert all(floor[m] == FLOOR_PAUSE for m in range(-(-a // MT), b // MT))
    assert floor[0] == FLOOR_NONE  # before the first turn
    assert (targets(make("timespeak", 1, 60), 8, 4).floor == -1).all()  # no turns: unknown


def test_a_schedules_words_are_labelled_ahead_and_a_countdowns_numbers_when_due() -> None:
    seen: set[str] = set()
    for seed in range(60):
        ep = make("timespeak", seed, 200)
        kind = ep.task.split("/")[1]
        if not ep.say:
            continue
        seen.add(kind)
        t0 = ep.info["t0"]
        if kind == "countdown":
            # said when due: a count is timed from the last one and the message, clocks that
            # config clock_ahead leaves alone
            assert all(u.lead == 0 for u in ep.say)
            assert [u.mt for u in ep.say] == [t0 + k * PER_S for k in range(1, len(ep.say) + 1)]
        else:
            assert all(u.lead == AHEAD_MT for u in ep.say)
            assert [u.due for u in ep.say] == ep.info["expected"]
            assert all(u.mt == u.due - AHEAD_MT for u in ep.say)
    assert seen == {"every", "once", "countdown"}
