"""`make eval` reproduces the committed report: the shipped checkpoint, run again on the report's
held-out episodes through the serving engine, scores what bench/results/eval.json says.

On the machine that made the report the numbers are identical; another CPU may round bf16 sums
differently and flip an episode or two, hence the tolerance (a flipped episode of 32 moves a
percentage by about 3 points)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from inference.checkpoint import load
from inference.evaluate import evaluate

REPORT = Path(__file__).resolve().parents[2] / "bench" / "results" / "eval.json"
TOLERANCE = 10.0  # percentage points


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The report is made with one torch thread (bf16 sums depend on how work is split)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def numbers(section: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            out.update(numbers(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[prefix + key] = float(value)
    return out


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("suite", ["timespeak", "repcount"])
def test_the_committed_report_is_what_the_shipped_model_scores(suite: str) -> None:
    committed = json.loads(REPORT.read_text())
    model = load()
    assert committed["checkpoint"]["name"] == model.cfg.name
    report = evaluate(
        model,
        [suite],
        committed["episodes_per_suite"],
        committed["seed"],
        sessions=committed["sessions"],
    )
    got, want = numbers(report["suites"][suite]), numbers(committed["suites"][suite])
    assert got.keys() == want.keys()
    off = {k: (got[k], want[k]) for k in want if abs(got[k] - want[k]) > TOLERANCE}
    assert not off, f"re-run vs committed: {off}"
