"""The live report: each suite's scores live and offline (the same episodes), with bootstrap
confidence intervals over episodes, and the markdown table against issues 25's and 30's targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lab.eval.runner import Run
from lab.live.score import BARGE_PARTS, LATENCY_PARTS, TIMING_PARTS

# (suite, metric, label, target, direction): the table's rows
TARGETS: list[tuple[str, str, str, float, str]] = [
    ("turn_open", "took_floor", "turns where the model takes the floor (%)", 90, ">="),
    ("turn_open", "latency_median_s", "end of speech -> first model audio, median (s)", 0.50, "<="),
    ("turn_open", "latency_p90_s", "end of speech -> first model audio, p90 (s)", 0.70, "<="),
    ("turn_open", "false_interruption_rate", "false interruptions (% of turns)", 10, "<="),
    ("turn_open", "barge_in_success", "barge-in: stops within 400 ms (%)", 90, ">="),
    ("echo", "spoke_unprompted", "own echo only: speaks unprompted (%)", 5, "<="),
    ("noise", "false_speech_episodes", "noise only: false speech (% of 30 s stretches)", 5, "<="),
    ("cuespeak", "macro_accuracy", "spoken cues, macro-accuracy (%)", 70, ">="),
    ("timespeak", "macro_accuracy", "typed timing instructions, macro-accuracy (%)", 60, ">="),
    ("turn", "took_floor", "lab voices and sentences: takes the floor (%)", 90, ">="),
    ("turn", "latency_median_s", "lab voices and sentences: latency median (s)", 0.50, "<="),
    ("turn", "barge_in_success", "lab voices and sentences: barge-in within 400 ms (%)", 90, ">="),
    (
        "long_timespeak",
        "on_time",
        "10-minute calls: say W every N s, utterances on time (%)",
        90,
        ">=",
    ),
    (
        "long_timespeak",
        "change_obeyed",
        "10-minute calls: a later stop or period obeyed (%)",
        90,
        ">=",
    ),
]
BOOTSTRAP = 400


def bootstrap_ci(
    runs: list[Run], score: Callable[[list[Run]], dict[str, Any]], key: str, seed: int = 0
) -> list[float] | None:
    """95 % interval of a score over episodes resampled with replacement (None: too few)."""
    if len(runs) < 2:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(BOOTSTRAP):
        pick = [runs[i] for i in rng.integers(0, len(runs), len(runs))]
        v = score(pick).get(key)
        if v is not None:
            values.append(float(v))
    if len(values) < BOOTSTRAP // 2:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    digits = 3 if key.endswith("_s") else 1  # seconds to the ms, percentages to a tenth
    return [round(float(lo), digits), round(float(hi), digits)]


def intervals(
    suite: str, runs: list[Run], score: Callable[[list[Run]], dict[str, Any]]
) -> dict[str, list[float] | None]:
    keys = [metric for s, metric, *_ in TARGETS if s == suite]
    return {k: bootstrap_ci(runs, score, k) for k in keys}


def _cell(block: dict[str, Any] | None, metric: str) -> str:
    if not block:
        return "n/a"
    v = block.get(metric)
    if v is None:
        return "never" if "latency" in metric and block.get("turns") else "n/a"
    ci = block.get("ci", {}).get(metric)
    return f"{v} [{ci[0]}, {ci[1]}]" if ci else f"{v}"


def met(v: Any, target: float, direction: str) -> str:
    if v is None:
        return ""
    return "yes" if (v >= target if direction == ">=" else v <= target) else "no"


def markdown_table(report: dict[str, Any]) -> str:
    lines = [
        "| measure | target | offline | live | live met |",
        "|---|---|---|---|---|",
    ]
    for suite, metric, label, target, direction in TARGETS:
        got = report["suites"].get(suite)
        if got is None:
            continue
        live = got.get("live")
        lines.append(
            f"| {label} | {direction} {target} | {_cell(got.get('offline'), metric)} | "
            f"{_cell(live, metric)} | {met((live or {}).get(metric), target, direction)} |"
        )
    lines += heard_lines(report)
    for suite in ("turn_open", "turn"):
        got = report["suites"].get(suite, {})
        parts = got.get("latency_parts")
        lines += parts_lines(
            parts, LATENCY_PARTS, "turns", f"Live latency of `{suite}`", "turns taken"
        )
        held = got.get("jitter_buffer_ms")
        if parts and parts.get("turns") and held is not None:
            lines.append(
                f"Of the last part, Chromium's jitter buffer held the received audio {held} ms "
                "on average (inbound-rtp jitterBufferDelay / jitterBufferEmittedCount)."
            )
        lines += parts_lines(
            got.get("barge_parts"),
            BARGE_PARTS,
            "barge_ins",
            f"Live barge-in stop of `{suite}`",
            "barge-ins while it talked",
        )
    for suite, got in report["suites"].items():
        lines += parts_lines(
            got.get("timing_parts"),
            TIMING_PARTS,
            "utterances",
            f"Heard minus due in `{suite}`",
            "due utterances heard within 3 micro-turns",
        )
        typed = got.get("typed_late") or {}
        if typed.get("messages"):
            lines += [
                "",
                f"Typed text in `{suite}` (input_text.committed on the page's grid): "
                f"{typed['on_time']} % of {typed['messages']} messages entered the model in "
                f"the micro-turn they were typed in; {typed['late_mt_mean']} micro-turns late on "
                f"average, at most {typed['late_mt_max']}.",
            ]
    return "\n".join(lines)


def parts_lines(
    parts: dict[str, Any] | None, keys: tuple[str, ...], count: str, title: str, counted: str
) -> list[str]:
    """A blank line and the sentence that adds `parts` up (score.summarized's), or nothing
    when none were counted."""
    if not parts or not parts.get(count):
        return []
    shown = " + ".join(f"{k} {parts[k]}" for k in keys)
    return [
        "",
        f"{title}, ms ({parts[count]} {counted}, means): {shown} = {parts['total']} "
        f"(median {parts['total_median']}).",
    ]


def _heard_cell(block: dict[str, Any] | None) -> str:
    heard = (block or {}).get("heard")
    if not heard or not heard.get("utterances"):
        return "n/a"
    top = heard["ceiling"]
    text = (
        f"{heard['key_accuracy']} / {heard['wer']} of {heard['utterances']} "
        f"(ceiling {top['key_accuracy']} / {top['wer']})"
    )
    done = [
        f"{k} {v['text_and_heard']} (text {v['text']})" for k, v in heard.get("done", {}).items()
    ]
    return text + (f"; done: {', '.join(done)}" if done else "")


def heard_lines(report: dict[str, Any]) -> list[str]:
    """What was heard of the model's phrases (lab/eval/metrics/heard.py): key content right
    and WER, %, of the phrases said with the right text near the right time; the ceiling is the
    teacher's voice through the vocoder; done: the suite's word scores with the words heard
    right too, beside the text stream's on the same episodes."""
    rows = []
    for suite, got in report["suites"].items():
        live, offline = _heard_cell(got.get("live")), _heard_cell(got.get("offline"))
        if live != "n/a" or offline != "n/a":
            rows.append(f"| {suite} | {offline} | {live} |")
    if not rows:
        return []
    head = [
        "",
        "Words heard (pocketsphinx): key content right / WER, % of phrases (ceiling: the "
        "teacher's voice through the vocoder); done: word scores with the words heard right too",
        "",
        "| suite | offline | live |",
        "|---|---|---|",
    ]
    return head + rows
