"""Checkpoints: round trip, refusals, the untrained `small` and the shipped trained one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.checkpoint import (
    SHIPPED_DIR,
    CheckpointError,
    init_model,
    load,
    read_config,
    save,
    widen,
)
from inference.config import DMEL_BINS, preset
from inference.engine import Engine, EngineConfig
from inference.reference import ReferenceModel
from tests.inference.conftest import make_inputs, random_tiny


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = init_model(preset("tiny"), seed=3)
    save(model, tmp_path, dtype="float32", preset_name="tiny")
    loaded = load(tmp_path / "model.safetensors")  # either file or the directory
    assert loaded.cfg == model.cfg
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b), k
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["format"] == "microturn-interaction-model" and doc["version"] == 1
    assert doc["preset"] == "tiny" and doc["config"]["d_model"] == model.cfg.d_model
    # same weights, same outputs through the engine
    inps = make_inputs(3, seed=5)
    outs = []
    for m in (model, loaded):
        engine = Engine(ReferenceModel(m), EngineConfig(max_sessions=1, num_threads=1))
        slot = engine.open("rt")
        outs.append([engine.step_sync({slot: i})[slot].audio for i in inps])
    assert all(np.array_equal(a, b) for a, b in zip(*outs, strict=True))


def test_widen_adds_the_pitch_channel_at_zero_and_keeps_the_function(tmp_path: Path) -> None:
    model = random_tiny()
    wide = widen(model, preset("tiny", pitch_in=True), seed=3).eval()
    bag = wide.audio_in.bag.weight
    assert bag.shape[0] == model.audio_in.bag.weight.shape[0] + DMEL_BINS
    assert not bag[-DMEL_BINS:].any()
    inps = make_inputs(6, seed=4)
    outs = []
    for m in (model, wide):
        engine = Engine(ReferenceModel(m), EngineConfig(max_sessions=1, num_threads=1))
        slot = engine.open("w")
        outs.append([engine.step_sync({slot: i})[slot] for i in inps])
    for a, b in zip(*outs, strict=True):
        assert a.text == b.text and np.allclose(a.audio, b.audio, atol=1e-5)
    save(wide, tmp_path, dtype="float32")
    assert load(tmp_path).cfg.pitch_in
    with pytest.raises(ValueError, match="widen: token_type"):  # not a widening: refused
        widen(model, preset("tiny", d_model=32))


def _edit_config(path: Path, **changes: object) -> None:
    doc = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if key in doc["config"]:
            doc["config"][key] = value
        else:
            doc[key] = value
    (path / "config.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"d_model": 96}, "d_model"),  # the weights were saved with another width
        ({"window_microturns": 99}, "window_microturns"),  # same shapes, different model: refused
        ({"format": "something-else"}, "format"),
        ({"version": 2}, "version"),
        ({"frobnicate": 1, "config_extra": None}, None),  # unknown top-level keys are ignored
    ],
)
def test_load_refuses_a_config_that_does_not_match(
    tmp_path: Path, changes: dict[str, object], message: str | None
) -> None:
    save(init_model(preset("tiny")), tmp_path)
    _edit_config(tmp_path, **changes)
    if message is None:
        load(tmp_path)
        return
    with pytest.raises(CheckpointError, match=message):
        load(tmp_path)


def test_load_refuses_unknown_config_fields_interface_and_tensors(tmp_path: Path) -> None:
    save(init_model(preset("tiny")), tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["config"]["mystery"] = 1
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="mystery"):
        load(tmp_path)
    save(init_model(preset("tiny")), tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["interface"]["frame_size"] = 80
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="interface"):
        load(tmp_path)
    save(init_model(preset("tiny")), tmp_path)
    weights = tmp_path / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(weights))
    del tensors["control_head.bias"]
    save_file(tensors, str(weights), metadata=meta)
    with pytest.raises(CheckpointError, match=r"control_head\.bias"):
        load(tmp_path)
    with pytest.raises(CheckpointError, match="expected a directory"):
        load(tmp_path / "nowhere")


def test_sampling_settings_may_be_edited(tmp_path: Path) -> None:
    save(init_model(preset("tiny")), tmp_path)
    _edit_config(tmp_path, flow_steps=3, griffin_lim_iters=2)
    cfg, _ = read_config(tmp_path)
    assert load(tmp_path).cfg.flow_steps == 3 and cfg.griffin_lim_iters == 2


def test_untrained_small_is_silent_in_text_but_audible(untrained_checkpoint: Path) -> None:
    """The seed-0 initialisation the plumbing tests serve: moderate audio, never text."""
    engine = Engine.from_checkpoint(
        untrained_checkpoint, EngineConfig(max_sessions=1, num_threads=1)
    )
    assert isinstance(engine.model, ReferenceModel)
    assert engine.model.net.cfg.d_model == preset("small").d_model
    slot = engine.open("listen")
    outs = [engine.step_sync({slot: inp})[slot] for inp in make_inputs(6, seed=7)]
    audio = np.concatenate([o.audio for o in outs[1:]])
    rms = float(np.sqrt(np.mean(audio**2)))
    assert 0.02 < rms < 0.2, rms  # moderate: about -26 dBFS
    assert np.abs(audio).max() < 0.9  # not clipping
    assert all(o.speaking for o in outs)
    assert all(o.text == "" and o.delegate is None for o in outs)


def test_shipped_small_checkpoint_is_the_trained_small() -> None:
    engine = Engine.from_checkpoint(None, EngineConfig(max_sessions=1, num_threads=1))
    assert engine.model_name == "microturn-small-v10"
    assert isinstance(engine.model, ReferenceModel)
    assert engine.model.net.cfg == preset("small")
    doc = json.loads((SHIPPED_DIR / "training.json").read_text())
    assert doc["history"], "the shipped checkpoint says how it was trained"
    # trained: differs from the initialisation it started from
    shipped = load_file(str(SHIPPED_DIR / "model.safetensors"))
    fresh = init_model(preset("small"), seed=0).state_dict()
    assert not torch.equal(
        shipped["text_head.out.weight"], fresh["text_head.out.weight"].bfloat16()
    )
