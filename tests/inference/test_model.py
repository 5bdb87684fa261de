"""The model: streaming equals offline, rows of any age in one batch, a bounded window."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import numpy as np
import pytest
import torch

from inference.config import TOKENS_PER_MICROTURN
from inference.kvcache import SINK_POS, Rows
from inference.model import MEL_DIM, InteractionModel, Sequence, StepInput, StepOutput
from inference.numbers import read_said_sequence
from inference.protocol import MicroTurnInput
from inference.text import EOU, PAD, SIL
from tests.inference.conftest import make_inputs, random_tiny


def step_input(
    model: InteractionModel, inps: list[MicroTurnInput], noise: torch.Tensor
) -> StepInput:
    k_in = model.cfg.text_in_slots
    # a message ends in its micro-turn (EOU), so the relative and number clocks see it
    text = [
        ([*inp.text.encode()][: k_in - 1] + [EOU] * bool(inp.text) + [PAD] * k_in)[:k_in]
        for inp in inps
    ]
    blank = np.zeros((40, 40, 3), np.uint8)
    return StepInput(
        audio=torch.from_numpy(np.stack([i.audio for i in inps])),
        frames=torch.from_numpy(np.stack([blank if i.frame is None else i.frame for i in inps])),
        has_frame=torch.tensor([i.frame is not None for i in inps]),
        text_in=torch.tensor(text),
        index=torch.tensor([i.index for i in inps]),
        noise=noise,
    )


@pytest.mark.parametrize(
    ("pitch_in", "pins", "motion_in", "copy_memory", "voice_window", "phase_clock"),
    [
        (False, 0, False, 0, 0, False),
        (True, 0, False, 0, 0, False),
        (False, 3, True, 0, 0, True),
        (False, 0, False, 10, 0, False),
        (False, 0, False, -10, 0, False),  # the pointer keyed by the last 4 bytes said
        (False, 0, False, 0, 6, False),
    ],
)  # phase_clock True: the number clock too
def test_streaming_equals_offline_full_sequence(
    pitch_in: bool,
    pins: int,
    motion_in: bool,
    copy_memory: int,
    voice_window: int,
    phase_clock: bool,
) -> None:
    """pins 3: typed text every 4th micro-turn, so the ring of pins wraps too, and pinned
    micro-turns leave the window while others are still in it. motion_in: every third
    micro-turn has no frame, so the last frame seen is older than the last micro-turn.
    copy_memory 10: the copy pointer's memory holds under two messages, so it wraps; its gate
    is opened so that copying decides bytes (-10: the same, keyed by the last 4 bytes said). voice_window 6: the offline forward, given the
    advances the stream chose, conditions the flow head as the stream did. phase_clock: the
    typed text every 4th micro-turn restarts the phase, in both paths alike (and the register of
    the last number said reads the model's own bytes in both)."""
    model = random_tiny(
        pitch_in=pitch_in,
        pins=pins,
        motion_in=motion_in,
        copy_memory=abs(copy_memory),
        copy_context=4 if copy_memory < 0 else 2,
        voice_window=voice_window,
        phase_clock=phase_clock,
        number_clock=phase_clock,
        said_number=phase_clock,
    )
    if phase_clock:  # numbers said, so that the register of the last one changes
        with torch.no_grad():
            model.text_head.out.bias[ord("0") : ord("9") + 1] += 6.0
            model.text_head.out.bias[EOU] += 6.0
    if model.text_head.copy is not None:
        with torch.no_grad():
            model.text_head.copy.gate.bias.fill_(-1.0)
            model.text_head.copy.age_slope.fill_(-1.0)
    n = 3 * model.cfg.window_microturns + 3  # well past the window: the ring buffer wraps
    calls = [make_inputs(n, seed=1, start=7), make_inputs(n, seed=2, start=0)]
    noise = torch.randn(2, n, MEL_DIM, generator=torch.Generator().manual_seed(0))
    state = model.new_state(4, "cpu", torch.float32)
    rows = Rows.of([3, 1], "cpu")  # non-contiguous rows: the gather path
    outs: list[StepOutput] = []
    text_in = []
    with torch.inference_mode():
        for t in range(n):
            inp = step_input(model, [calls[0][t], calls[1][t]], noise[:, t])
            text_in.append(inp.text_in)
            outs.append(model.step(state, rows, inp))
        seq = Sequence(
            audio=torch.from_numpy(np.stack([np.concatenate([i.audio for i in c]) for c in calls])),
            frames=torch.stack(
                [step_input(model, [c[t] for c in calls], noise[:, t]).frames for t in range(n)], 1
            ),
            has_frame=torch.tensor([[i.frame is not None for i in c] for c in calls]),
            text_in=torch.stack(text_in, 1),
            index=torch.tensor([[i.index for i in c] for c in calls]),
            text_out=torch.stack([o.text_ids for o in outs], 1),
            logmel_out=torch.stack([o.logmel for o in outs], 1),
            voice_advance=(
                torch.stack([cast(torch.Tensor, o.voice_advance) for o in outs], 1)
                if voice_window
                else None
            ),
        )
        offline = model(seq)
        if voice_window:
            assert offline.voice_logits is not None and seq.voice_advance is not None
            assert torch.equal(offline.voice_logits.argmax(-1), seq.voice_advance)
            assert len(set(seq.voice_advance.flatten().tolist())) > 2, "advances should vary"
        hidden = torch.stack([o.hidden for o in outs], 1)
        assert torch.allclose(hidden, offline.hidden, atol=1e-4), (
            (hidden - offline.hidden).abs().max()
        )
        control = torch.stack([o.control_logits for o in outs], 1)
        assert torch.allclose(control, offline.control_logits, atol=1e-4)
        # the greedy bytes streamed are the argmax of the teacher-forced logits up to the first stop
        said = seq.text_out  # [B, N, K]
        argmax = offline.text_logits.argmax(-1)
        going = torch.ones_like(said[..., 0], dtype=torch.bool)
        for k in range(said.shape[-1]):
            assert torch.equal(said[..., k][going], argmax[..., k][going]), k
            going &= said[..., k] < 256
        assert (said[..., 0] < 256).any(), "the random model should say some bytes"
        if phase_clock:
            assert (read_said_sequence(said) >= 0).any(), "the model should say some numbers"
        mel = model.flow.sample(
            offline.flow_cond.flatten(0, 1), noise.flatten(0, 1), model.cfg.flow_steps
        )
        mel = model.denormalize_mel(mel.view(2, n, 16, 80))
        assert torch.allclose(mel, seq.logmel_out, atol=1e-3), (mel - seq.logmel_out).abs().max()


def test_rows_of_different_ages_in_one_batch_equal_each_row_alone(
    tiny_random: InteractionModel,
) -> None:
    model = tiny_random
    n = 12
    inps = {name: make_inputs(n, seed=s) for name, s in (("a", 3), ("b", 4), ("c", 5))}
    noise = {
        name: torch.randn(n, MEL_DIM, generator=torch.Generator().manual_seed(s))
        for name, s in (("a", 3), ("b", 4), ("c", 5))
    }

    def alone(name: str) -> list[StepOutput]:
        state = model.new_state(1, "cpu", torch.float32)
        with torch.inference_mode():
            return [
                model.step(
                    state,
                    Rows.of([0], "cpu"),
                    step_input(model, [inps[name][t]], noise[name][t][None]),
                )
                for t in range(n)
            ]

    # a starts at tick 0 in slot 1, b at tick 4 in slot 0, c at tick 2 in slot 2: ages differ,
    # the batch is sometimes contiguous slots (a view of the cache) and sometimes not (a gather)
    starts = {"a": 0, "b": 4, "c": 2}
    slots = {"a": 1, "b": 0, "c": 2}
    state = model.new_state(3, "cpu", torch.float32)
    got: dict[str, list[StepOutput]] = {k: [] for k in starts}
    with torch.inference_mode():
        for tick in range(n + 4):
            due = [
                k
                for k in ("b", "a", "c")
                if 0 <= tick - starts[k] < n and not (k == "c" and tick == 5)
            ]
            if tick == 5:  # c skips a tick (no input this time): it must simply wait
                starts["c"] += 1
            if not due:
                continue
            due.sort(key=lambda k: slots[k])
            rows = Rows.of([slots[k] for k in due], "cpu")
            batch = step_input(
                model,
                [inps[k][tick - starts[k]] for k in due],
                torch.stack([noise[k][tick - starts[k]] for k in due]),
            )
            out = model.step(state, rows, batch)
            for i, k in enumerate(due):
                got[k].append(
                    StepOutput(
                        out.text_ids[i],
                        out.control_logits[i],
                        out.logmel[i],
                        out.audio[i],
                        out.hidden[i],
                    )
                )
    for k in starts:
        ref = alone(k)
        assert len(got[k]) == n
        for t in range(n):
            assert torch.allclose(got[k][t].hidden, ref[t].hidden[0], atol=1e-4), (k, t)
            assert torch.equal(got[k][t].text_ids, ref[t].text_ids[0]), (k, t)
            assert torch.allclose(got[k][t].audio, ref[t].audio[0], atol=1e-4), (k, t)


def test_cache_holds_sinks_and_exactly_the_last_window(tiny: InteractionModel) -> None:
    model = tiny
    w = model.cfg.window_microturns
    state = model.new_state(2, "cpu", torch.float32)
    k_ptr = state.cache.k.data_ptr()
    inps = make_inputs(3 * w + 1, seed=0)
    with torch.inference_mode():
        for t, inp in enumerate(inps):
            model.step(
                state, Rows.of([1], "cpu"), step_input(model, [inp], torch.zeros(1, MEL_DIM))
            )
            kpos = state.cache.kpos[1]
            held = sorted(int(p) for p in kpos if p >= 0)
            first = max(0, t + 1 - w) * TOKENS_PER_MICROTURN
            assert held == list(range(first, (t + 1) * TOKENS_PER_MICROTURN)), t
            assert int((kpos == SINK_POS).sum()) == model.cfg.n_sinks
    assert state.cache.k.data_ptr() == k_ptr, "the cache was reallocated"
    assert (state.cache.kpos[0] < 0).all(), "an idle slot was written"


def test_onset_decoding_starts_a_spread_out_utterance() -> None:
    """p(speak) = 0.2 every micro-turn: greedy never speaks; onset decoding (median of the onset
    distribution) starts at the 4th micro-turn (0.8^4 < 0.5), and again 4 after the micro-turn
    that followed it (the utterance only ends with a silent micro-turn)."""
    import dataclasses

    from inference.checkpoint import init_model
    from inference.config import preset
    from inference.text import SIL

    def run(onset: float) -> list[int]:
        model = init_model(dataclasses.replace(preset("tiny"), onset_survival=onset), seed=0)
        with torch.no_grad():
            out = model.text_head.out
            out.weight.zero_()
            out.bias.fill_(-30.0)
            out.bias[SIL] = float(np.log(0.8))
            out.bias[ord("a")] = float(np.log(0.2))  # "a" then SIL: one byte said
        state = model.new_state(1, "cpu", torch.float32)
        firsts = []
        with torch.inference_mode():
            for inp in make_inputs(10, seed=0, text_every=100):
                o = model.step(
                    state, Rows.of([0], "cpu"), step_input(model, [inp], torch.zeros(1, MEL_DIM))
                )
                firsts.append(int(o.text_ids[0, 0]))
        return firsts

    assert run(0.0) == [SIL] * 10
    spoke = [i for i, t in enumerate(run(0.5)) if t == ord("a")]
    assert spoke == [3, 8]


@pytest.mark.parametrize("feedback", [True, False])
def test_mel_feedback_decides_whether_the_self_token_hears_the_played_mel(feedback: bool) -> None:
    """Two calls with the same inputs but different flow noise play different mel. With feedback
    the next micro-turns' hidden states differ; without it (the shipped `small`), they do not."""
    import dataclasses

    from inference.checkpoint import init_model
    from inference.config import preset

    model = init_model(dataclasses.replace(preset("tiny"), mel_feedback=feedback), seed=1)
    inps = make_inputs(4, seed=3)
    state = model.new_state(2, "cpu", torch.float32)
    noise = torch.randn(2, MEL_DIM, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        for inp in inps:
            out = model.step(state, Rows.of([0, 1], "cpu"), step_input(model, [inp, inp], noise))
            played_differently = not torch.equal(out.logmel[0], out.logmel[1])
    assert played_differently
    assert torch.equal(out.hidden[0], out.hidden[1]) is not feedback


@pytest.mark.parametrize("pins", [0, 3])
def test_a_skipped_stretch_leaves_only_pins_in_view(pins: int) -> None:
    """A long call shown in little (a jump of the clock past the window, lab/tasks/families/
    long.py): what came before the jump is out of view, except the pinned micro-turns. Without
    pins the second stretch computes what it computes alone, at the same clock."""
    model = random_tiny(pins=pins, rel_clock=False, mel_feedback=False)
    w = model.cfg.window_microturns
    a, b, jump = 5, 2 * w, 3 * w
    first = make_inputs(a, seed=1, start=0, text_every=2)  # typed text: pinned micro-turns
    second = make_inputs(b, seed=2, start=a + jump, text_every=10**6)

    def seq(calls: list[MicroTurnInput], bins: torch.Tensor | None = None) -> Sequence:
        k_in = model.cfg.text_in_slots
        return Sequence(
            bins=bins,
            audio=torch.from_numpy(np.concatenate([i.audio for i in calls]))[None],
            frames=torch.zeros(1, len(calls), 40, 40, 3, dtype=torch.uint8),
            has_frame=torch.zeros(1, len(calls), dtype=torch.bool),
            text_in=torch.tensor([[([*i.text.encode()] + [PAD] * k_in)[:k_in] for i in calls]]),
            index=torch.tensor([[i.index for i in calls]]),
            text_out=torch.full((1, len(calls), model.cfg.text_out_slots), PAD),
            logmel_out=torch.zeros(1, len(calls), 16, 80),
        )

    with torch.inference_mode():
        bins = torch.cat([model.dmel.offline(seq(c).audio) for c in (first, second)], 1)
        joined = model(seq(first + second, bins)).hidden[:, a:]
        alone = model(seq(second)).hidden
    assert torch.allclose(joined, alone, atol=1e-5) == (pins == 0)


def streamed_hidden(model: InteractionModel, call: list[MicroTurnInput]) -> list[torch.Tensor]:
    """One call stepped through a fresh state in slot 0, zero flow noise -> each step's hidden."""
    state = model.new_state(1, "cpu", torch.float32)
    noise = torch.zeros(1, MEL_DIM)
    with torch.inference_mode():
        return [
            model.step(state, Rows.of([0], "cpu"), step_input(model, [inp], noise)).hidden
            for inp in call
        ]


def test_a_warm_start_with_the_motion_input_computes_what_the_model_did() -> None:
    """The motion input's gate starts at zero: a trained model warm-started with it (the polish
    stage) gives the same outputs until training moves the gate."""
    from inference.checkpoint import init_model
    from inference.config import preset

    before = random_tiny()
    after = init_model(preset("tiny", motion_in=True), seed=5)
    missing, unexpected = after.load_state_dict(before.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("motion_in.") for k in missing) and missing
    calls = make_inputs(8, seed=3)
    outs = [streamed_hidden(model, calls) for model in (before, after.eval())]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*outs, strict=True))


def test_a_warm_start_with_the_said_number_register_computes_what_the_model_did() -> None:
    """The register of the last number said (config said_number) starts with a zero projection:
    a trained model warm-started with it (the `tally` stage) computes the same on a call where
    it says numbers, until training moves it; moved, the numbers change what it computes."""
    from inference.checkpoint import widen

    before = random_tiny()
    after = widen(before, replace(before.cfg, said_number=True)).eval()  # as `make train` does
    assert after.said_number.proj.weight.abs().sum() == 0
    calls = make_inputs(10, seed=3)
    k_out = before.cfg.text_out_slots
    spoken = [[*b"29", EOU], [SIL], [*b"30", EOU], [SIL], [SIL]] * 2
    text_out = torch.tensor([[(ids + [PAD] * k_out)[:k_out] for ids in spoken]])
    seq = Sequence(
        audio=torch.from_numpy(np.concatenate([i.audio for i in calls]))[None],
        frames=torch.zeros(1, len(calls), 40, 40, 3, dtype=torch.uint8),
        has_frame=torch.zeros(1, len(calls), dtype=torch.bool),
        text_in=torch.full((1, len(calls), before.cfg.text_in_slots), PAD),
        index=torch.tensor([[i.index for i in calls]]),
        text_out=text_out,
        logmel_out=torch.zeros(1, len(calls), 16, 80),
    )
    prev = torch.cat([torch.full_like(text_out[:, :1], PAD), text_out[:, :-1]], 1)
    assert read_said_sequence(prev)[0].tolist() == [-1, 29, 29, 30, 30, 30, 29, 29, 30, 30]
    with torch.inference_mode():
        assert torch.allclose(before(seq).hidden, after(seq).hidden, atol=1e-6)
        torch.nn.init.normal_(after.said_number.proj.weight)
        moved = after(seq).hidden
        assert torch.allclose(before(seq).hidden[:, :1], moved[:, :1], atol=1e-6)
        assert not torch.allclose(before(seq).hidden[:, 1:], moved[:, 1:], atol=1e-3)


def test_the_phase_clock_reads_a_schedule_minutes_old_as_it_read_the_first_period() -> None:
    """A period N's phase features (model.PhaseClock) at N, 2N, ... 600 s on are those at N;
    a micro-turn off they differ; before any typed message they are zero."""
    from inference.model import NEVER, PhaseClock, elapsed_mt

    clock = PhaseClock(d_model=120)
    with torch.no_grad():
        clock.proj.weight.copy_(torch.eye(120))
        clock.proj.bias.zero_()
    last = torch.tensor(7)
    for seconds in (3, 7, 20):
        period = seconds * 5
        k = seconds - 1  # its sin feature; cos is 60 further
        due = clock(last + torch.arange(1, 600 // seconds) * period, last)
        assert due[:, k].abs().max() < 1e-5 and (due[:, k + 60] > 1 - 1e-5).all()
        off = clock(last + (600 // seconds) * period + torch.tensor([-1, 1]), last)
        assert (off[:, k].abs() > 0.05).all() and (off[:, k + 60] < 0.999).all()
    assert not clock(torch.tensor([5, 50_000]), torch.tensor(NEVER)).any()
    # beside it the relative clocks stop at a minute (never typed stays an hour ago)
    since = elapsed_mt(torch.tensor([200, 400, 3000, 9]), torch.tensor([0, 0, 0, NEVER]), cap=300)
    assert since.tolist() == [200, 300, 300, 18_000]


def test_a_warm_start_with_the_phase_clock_computes_what_the_model_did() -> None:
    """widen() gives the phase clock a zero projection: the `phase` stage starts from the
    trained model's outputs exactly (while the relative clocks read under their cap)."""
    from inference.checkpoint import widen

    before = random_tiny()
    after = widen(before, before.cfg.__class__(**{**before.cfg.to_dict(), "phase_clock": True}))
    calls = make_inputs(10, seed=4, text_every=3)
    hidden = [streamed_hidden(model, calls) for model in (before, after.eval())]
    assert all(torch.equal(a, b) for a, b in zip(*hidden, strict=True))
    assert after.clock_phase.proj.weight.abs().sum() == 0


def test_clock_ahead_moves_only_the_schedule_clocks_a_micro_turn_on() -> None:
    """config clock_ahead: the phase and number clocks read the time this micro-turn's output
    is heard (a micro-turn on), the clocks since the last message and the last W read now."""
    from inference.checkpoint import init_model
    from inference.config import preset
    from inference.model import NEVER, elapsed_mt

    cfg = preset("tiny", phase_clock=True, number_clock=True)
    now_model = init_model(cfg, seed=3)
    ahead_model = init_model(cfg.__class__(**{**cfg.to_dict(), "clock_ahead": 1}), seed=3)
    ahead_model.load_state_dict(now_model.state_dict())
    for m in (now_model, ahead_model):  # warm-started clocks are zero; give them a reading
        for clock in (m.clock_phase, m.clock_number):
            torch.manual_seed(0)
            torch.nn.init.normal_(clock.proj.weight)
    now, last_text = torch.tensor([10, 29, 30, 77]), torch.tensor([5, 5, 5, 5])
    last_said, number = torch.tensor([NEVER, 8, 8, 70]), torch.tensor([5, 5, 0, 5])

    def rel(m: InteractionModel, at: torch.Tensor) -> torch.Tensor:
        return m.clock_text(elapsed_mt(at, last_text)) + m.clock_said(elapsed_mt(at, last_said))

    with torch.no_grad():
        ahead = ahead_model._clocks(now, last_text, last_said, number) - rel(ahead_model, now)
        later = now_model._clocks(now + 1, last_text, last_said, number) - rel(now_model, now + 1)
        same_now = now_model._clocks(now, last_text, last_said, number) - rel(now_model, now)
    assert torch.allclose(ahead, later, atol=1e-5) and not torch.allclose(ahead, same_now)
