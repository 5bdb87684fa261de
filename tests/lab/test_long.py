"""Long calls: training shows minutes in little (a skipped stretch), evaluation steps them all."""

from __future__ import annotations

import itertools

import numpy as np

from lab.tasks.common import AHEAD_MT, PER_S
from lab.tasks.episode import targets
from lab.tasks.registry import make


def test_timespeak_long_keeps_the_period_across_the_jump_and_learns_nothing_in_the_lead_in() -> (
    None
):
    changes = set()
    for seed in range(24):
        ep = make("timespeak_long", seed, 200)
        ((first, jump),) = ep.skips
        clock = ep.clock() - ep.start_index
        assert clock[first] - clock[first - 1] == jump + 1 and jump >= 150  # past the window
        said = [u.due for u in ep.say]  # said a micro-turn ahead (scheduled())
        assert all(u.lead == AHEAD_MT for u in ep.say)
        period = ep.info["period"] * PER_S
        change = ep.info["change"]
        until = change["mt"] if change else ep.n
        before_change = [m for m in said if m < until]
        # every utterance before any change sits on the schedule in the call's true time
        assert all((clock[m] - ep.info["t0"]) % period == 0 for m in before_change)
        after_jump = [m for m in said if m >= first]
        ((a, b),) = ep.ignore
        assert a == first and (not after_jump or b == after_jump[0] + 1 - AHEAD_MT)
        valid = targets(ep, 8, 4).valid
        assert not valid[a:b].any() and valid[:a].all() and valid[b:].all()
        if change is not None:
            changes.add(change["kind"])
            if change["kind"] == "stop":
                assert not [m for m in said if m > change["mt"] + 3]
    assert changes == {"stop", "period"}


def test_timespeak_far_jumps_right_after_the_instruction_and_shows_the_schedule_whole() -> None:
    seen_after = 0
    for seed in range(24):
        ep = make("timespeak_far", seed, 220)
        ((first, jump),) = ep.skips
        assert ep.task == "timespeak_far" and first < 40 and jump >= 150
        assert ep.info["t0"] < first  # the instruction is in before the jump
        clock = ep.clock() - ep.start_index
        period = ep.info["period"] * PER_S
        change = ep.info["change"]
        until = change["mt"] if change else ep.n
        after = [u.due for u in ep.say if first <= u.due < until]
        assert all((clock[m] - ep.info["t0"]) % period == 0 for m in after)
        # nothing skipped after the jump: consecutive Ws are a period apart in view too
        assert all(b - a == period for a, b in itertools.pairwise(after))
        seen_after += len(after) >= 3
    assert seen_after >= 6  # most of the episode is the old schedule, seen whole


def test_timespeak_drift_times_each_w_from_the_last_one_said_and_learns_nothing_off_time() -> None:
    offs = compressed = 0
    for seed in range(24):
        ep = make("timespeak_drift", seed, 220)
        clock = ep.clock() - ep.start_index
        period = ep.info["period"] * PER_S
        said = [int(clock[u.due]) for u in ep.say]
        # the first W on the instruction's clock (or a slip of it), each next a period after
        # the last one said, whatever the instruction's grid says
        assert abs(said[0] - ep.info["t0"] - period) <= 3
        assert all(b - a - period in range(-3, 4) for a, b in itertools.pairwise(said))
        off = {at for _, at in ep.info["off"]}
        valid = targets(ep, 8, 4).valid
        for u, c in zip(ep.say, said, strict=True):
            assert bool(valid[u.mt]) == (c not in off)  # an off-time W is an input only
        offs += len(off)
        compressed += bool(ep.skips)
    assert offs >= 8 and compressed >= 4


def test_timespeak_slow_shows_every_w_of_a_long_period_with_its_gaps_in_little() -> None:
    periods, compressed, stops = set(), 0, 0
    for seed in range(32):
        ep = make("timespeak_slow", seed, 200)
        period, t0 = ep.info["period"], ep.info["t0"]
        periods.add(period)
        assert 4 <= period <= 20 and not ep.ignore
        p5 = period * PER_S
        clock = ep.clock() - ep.start_index
        # a skip is shorter than a period: no W falls unseen, the relative clocks stay exact
        assert all(0 < k < p5 for _, k in ep.skips)
        compressed += bool(ep.skips)
        said = [int(clock[u.due]) for u in ep.say]
        change = ep.info["change"]
        until = int(clock[change["mt"]]) if change else int(clock[-1]) + 1
        due = [c for c in range(t0 + p5, until, p5) if c in set(clock.tolist())]
        assert said == due and said and said[0] == t0 + p5  # every W in view on the schedule
        if change is not None:
            stops += 1
            assert int(clock[-1]) > until  # the silence after "stop" is shown
    assert max(periods) >= 18 and stops > 0 and 10 < compressed < 32


def test_repcount_long_goes_on_counting_from_the_true_count() -> None:
    for seed in range(12):
        ep = make("repcount_long", seed, 220)
        ((first, _),) = ep.skips
        counts = [(u.mt, int(u.text)) for u in ep.say if u.kind == "count"]
        before = [c for m, c in counts if m < first]
        after = [c for m, c in counts if m >= first]
        assert before == list(range(1, len(before) + 1))  # from 1, one by one
        if before and after:
            # the skipped reps were counted unseen: the count goes on well past where it was
            assert after[0] > before[-1] + 1
            assert after == list(range(after[0], after[0] + len(after)))
        assert ep.frames is not None and len(ep.frames) == ep.n


def test_long_evaluation_calls_are_stepped_whole() -> None:
    ep = make("long_timespeak", 3, 3000, training=False)
    assert not ep.skips and len(ep.inputs()) == 3000
    assert ep.info["expected"] and max(ep.info["expected"]) > 2500  # kept up to the end
    rc = make("long_repcount", 3, 900, training=False)
    assert not rc.skips and rc.info["total"] >= 30
    assert np.diff(rc.clock()).max() == 1


def test_recall_asks_minutes_later_for_the_number_told_and_scores_the_answer() -> None:
    from lab.eval.metrics.timing import eval_recall
    from lab.eval.runner import Run
    from tests.lab.test_tasks import _out

    for seed in range(8):
        ep = make("recall_long", seed, 200)
        ((first, jump),) = ep.skips
        told, asked = ep.typed[0][0], ep.typed[-1][0]
        assert told < first <= asked and jump >= 150
        assert str(ep.info["number"]) in ep.typed[0][1]
        assert ep.say[-1].text == str(ep.info["number"]) and ep.say[-1].mt >= ep.info["q0"]
    long = make("long_recall", 2, 1500, training=False)
    assert long.info["q0"] > 1400 and not long.skips

    q0, n = long.info["q0"], long.info["number"]

    def run(at: int, text: str) -> Run:
        return Run(long, outputs=[_out(at, text + " ", eou=True)])

    right, wrong, late = run(q0, str(n)), run(q0, str(n + 1)), run(q0 + 10, str(n))
    assert eval_recall([right, wrong, late, right])["answer_accuracy"] == 50.0


def test_background_results_arrive_minutes_after_the_request_and_are_said() -> None:
    from lab.eval.metrics.requests import entry_mts, eval_delegate
    from lab.eval.runner import Run
    from tests.lab.test_tasks import _out

    for seed in range(8):  # training: the request before the jump, its result after it
        ep = make("delegate_long", seed, 200)
        ((first, jump),) = ep.skips
        (t0,) = ep.delegate
        (request_mt, request), (result_mt, result) = ep.typed
        assert request == ep.info["request"] and result.startswith("[agent] ")
        assert request_mt < t0 < first <= result_mt and jump >= 150
        hold, value = ep.say
        assert (hold.mt, hold.kind) == (t0, "hold")
        assert value.text == ep.info["value"] and value.mt > result_mt
    long = make("long_delegate", 2, 1300, training=False)
    assert not long.skips and not long.typed[1:]  # the harness delivers the result (when asked)
    ((delay, wire),) = long.results
    assert 300 <= delay and long.info["t0"] + delay < 1300 - 30
    (t0,) = long.delegate
    at = t0 + delay
    r0 = at + entry_mts(wire) - 1
    value = long.info["value"]

    def run(said: str, when: int) -> Run:
        outputs = [_out(t0, "one moment ", eou=True), _out(when, said + " ", eou=True)]
        return Run(long, outputs=outputs, delegations=[t0], result_typed=[(at, wire)])

    right, wrong, late = run(value, r0), run(value + "1", r0), run(value, r0 + 10)
    assert eval_delegate([right, wrong, late, right])["success"] == 50.0


def test_the_period_probe_reads_the_shipped_models_first_w() -> None:
    from inference.checkpoint import load
    from lab.eval.periods import first_onset_s

    model = load().eval()
    # trained periods (the short family's 2-10 s) are read right: W after exactly N seconds
    assert first_onset_s(model, "say hello every 7 seconds") == 7.0
    assert first_onset_s(model, "say hello every 10 seconds") == 10.0


def test_the_long_probe_finds_the_shipped_model_sure_of_a_schedule_early_in_a_call() -> None:
    from inference.checkpoint import load
    from lab.eval.periods import onset_at_due

    bands = onset_at_due(load().eval(), seed=2, length=100, band=50)
    assert set(bands) <= {0, 50} and sum(len(v) for v in bands.values()) >= 16
    assert all(0.0 <= p <= 1.0 for v in bands.values() for p in v)
    # the first Ws of a typed schedule: due, and the model is sure of them
    assert float(np.mean(bands[0] + bands.get(50, []))) > 0.8


def test_the_slip_probe_reads_an_unmoved_schedule_at_its_due_micro_turn() -> None:
    from inference.checkpoint import load
    from lab.eval.periods import after_slip

    model = load().eval()
    grid, said = after_slip(model, 5, 0)
    assert grid == said > 0.8  # no slip: the grid and a period after the last W are one place
    moved = after_slip(model, 5, 3)
    assert moved != (grid, said) and all(0.0 <= p <= 1.0 for p in moved)


def test_timespeak_grid_keeps_each_w_on_the_instructions_grid_whatever_the_history_says() -> None:
    """Slips and stray Ws are inputs only (no loss near them); the Ws with a loss fall where the
    clock since the last instruction reads a whole number of periods; a stop ends them."""
    offs = strays = compressed = 0
    kinds = set()
    for seed in range(40):
        ep = make("timespeak_grid", seed, 220)
        clock = ep.clock() - ep.start_index
        change = ep.info["change"]
        valid = targets(ep, 8, 4).valid
        grid0, period = ep.info["t0"], ep.info["period"] * PER_S
        for u in ep.say:
            c = int(clock[u.due])
            if change is not None and change["kind"] == "period" and u.due >= change["from"]:
                grid0, period = int(clock[change["from"]]), change["period"] * PER_S
            on_grid = (c - grid0) % period == 0
            assert bool(valid[u.mt]) == on_grid  # a W off the grid is an input only
            if not on_grid:
                off = min((c - grid0) % period, period - (c - grid0) % period)
                offs += off <= 3
                strays += off > 3
        if change is not None:
            kinds.add(change["kind"])
            if change["kind"] == "stop":
                assert not [u for u in ep.say if u.mt > change["mt"]]
        compressed += bool(ep.skips)
    assert offs >= 10 and strays >= 2 and compressed >= 4 and kinds == {"stop", "period"}


def test_a_word_begun_at_a_calls_end_for_a_schedule_due_after_it_is_not_counted_extra() -> None:
    from lab.eval.metrics.timing import eval_long_timespeak
    from lab.eval.runner import Run
    from tests.lab.test_tasks import _out

    ep = make("long_timespeak", 3, 3000, training=False)
    word = ep.info["word"]

    def run(extra: list[tuple[int, str]]) -> Run:
        said = [(u.mt, u.text) for u in ep.say] + extra
        outputs = [_out(m, t + " ", eou=True) for m, t in sorted(said)]
        return Run(ep, outputs=outputs)

    # the word for a W due in the micro-turn after the call, begun (and cut) in its last one
    kept = eval_long_timespeak([run([(ep.n - AHEAD_MT, word[:-1])])])
    assert kept["on_time"] == 100.0 and kept["said"] == kept["expected"]
    # the same word a micro-turn earlier, due inside the call, is one too many
    extra = eval_long_timespeak([run([(ep.n - AHEAD_MT - 1, word)])])
    assert extra["on_time"] < 100.0 and extra["said"] == extra["expected"] + 1
