"""`make train`'s stages: each one it names exists, and its last stages (the ones after the voice
tape, which the shipped model comes from) resume one from the other into a servable checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from inference.checkpoint import SHIPPED_DIR
from lab.stages import STAGES
from lab.train import main as train

ROOT = Path(__file__).resolve().parents[2]


def _make_train_stages() -> list[tuple[str, int, str]]:
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("\ntrain:", 1)[1].split("\n\n", 1)[0]
    return [
        (name, int(steps), out)
        for name, steps, out in re.findall(r"train_stage,(\w+),(\d+),([^)\s]+)\)", recipe)
    ]


def test_make_train_names_known_stages_and_ends_in_the_shipped_checkpoint() -> None:
    stages = _make_train_stages()
    assert len(stages) >= 20 and all(name in STAGES for name, _, _ in stages)
    assert [out for _, _, out in stages].count("inference/checkpoints/small") == 1
    assert stages[-1][2] == "inference/checkpoints/small"
    shipped = json.loads((SHIPPED_DIR / "training.json").read_text())
    assert stages[-1][0] == shipped["stage"]  # the shipped model's last stage ends the recipe


def test_the_stages_after_the_voice_tape_resume_one_from_the_other(tmp_path: Path) -> None:
    stages = _make_train_stages()
    names = [name for name, _, _ in stages]
    tail = stages[names.index("voice") :]
    assert tail[-1][0] == "keyed" and tail[-1][1] == 0 and len(tail) >= 3
    run, threads = tmp_path / "run", torch.get_num_threads()
    try:
        for name, steps, _ in tail:  # one step each; keyed's none: the widening alone
            argv = ["--preset", "small", "--stage", name, "--steps", str(min(steps, 1))]
            argv += ["--run", str(run)]
            argv += ["--resume", "--batch-size", "1", "--workers", "0", "--episode-mt", "30,34"]
            argv += ["--no-progress", "--bf16", "off", "--export", str(tmp_path / name)]
            assert train(argv) == 0
    finally:
        torch.set_num_threads(threads)  # train() sets its own
    done = json.loads((tmp_path / tail[-1][0] / "training.json").read_text())
    assert [h["stage"] for h in done["history"]] == [name for name, _, _ in tail]
    config = json.loads((tmp_path / tail[-1][0] / "config.json").read_text())["config"]
    assert config["clock_ahead"] == 1 and config["phase_clock"] and config["number_clock"]
    assert config["said_number"] and config["copy_context"] == 4
