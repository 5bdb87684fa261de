"""The report as markdown: one seed's table (the README's), several seeds against the targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

LAB = {  # the lab's published figures (TML-Interaction-Small), for context only
    "timespeak": "64.7",
    "cuespeak": "81.7",
    "repcount": "35.4",
    "latency": "0.40 s",
}


def markdown_table(report: dict[str, Any]) -> str:
    """The README's table from a report (`--table bench/results/eval.json`)."""
    s = report["suites"]

    def get(suite: str, key: str, fmt: str = "{}") -> str:
        v = s.get(suite, {}).get(key)
        return "n/a" if v is None else fmt.format(v)

    base = s.get("turn", {}).get("vad_baseline", {})
    b500 = base.get("silence_500ms", {})

    def latency(res: dict[str, Any]) -> str:
        if not res.get("turns"):
            return "n/a / n/a"
        med, p90 = res.get("latency_median_s"), res.get("latency_p90_s")
        shown = ["never" if v is None else str(v) for v in (med, p90)]
        return f"{shown[0]} / {shown[1]} (took {res.get('took_floor')} % of turns)"

    def bget(key: str, fmt: str = "{}") -> str:
        v = b500.get(key)
        return "n/a" if v is None else fmt.format(v)

    rows = [
        (
            "TimeSpeak macro-accuracy (+-1 micro-turn), %",
            get("timespeak", "macro_accuracy"),
            "n/a (turn logic only)",
            LAB["timespeak"],
        ),
        ("CueSpeak macro-accuracy, %", get("cuespeak", "macro_accuracy"), "n/a", LAB["cuespeak"]),
        (
            "RepCount off-by-one accuracy, %",
            get("repcount", "off_by_one_accuracy"),
            "n/a",
            LAB["repcount"],
        ),
        ("RepCount mean absolute error", get("repcount", "mae"), "", ""),
        (
            "RepCount off-by-one on the QA harness video, %",
            get("repcount", "harness_video_off_by_one"),
            "",
            "",
        ),
        (
            "Turn-taking latency median / p90, s",
            latency(s.get("turn", {})),
            latency(b500),
            LAB["latency"],
        ),
        (
            "False interruptions, % of turns",
            get("turn", "false_interruption_rate"),
            bget("false_interruption_rate"),
            "",
        ),
        (
            "Barge-in: stopped within 400 ms, % (median stop, s)",
            f"{get('turn', 'barge_in_success')} ({get('turn', 'barge_in_stop_median_s')})",
            f"{bget('barge_in_success')} ({bget('barge_in_stop_median_s')})",
            "",
        ),
        (
            "Backchannels in long tellings: on time, % (misplaced per episode; false interruptions, % of tellings)",
            f"{get('monologue', 'backchannel_rate')} ({get('monologue', 'misplaced_backchannels_per_episode')}; "
            f"{get('monologue', 'false_interruption_rate')})",
            "",
            "",
        ),
        ("Delegation success, %", get("delegate", "success"), "", ""),
        (
            'Results with held-out values (any digits, held-out words) said right / "say W every N '
            'seconds" with a held-out W, macro-accuracy, %',
            f"{get('delegate_heldout', 'result_spoken')} / "
            f"{get('timespeak_newword', 'macro_accuracy')}",
            "",
            "",
        ),
        ("Small-talk reply accuracy, %", get("chat", "reply_accuracy"), "", ""),
        ("Idle episodes with false speech, %", get("idle", "false_speech_episodes"), "", ""),
        (
            "Spoken instead of typed: TimeSpeak macro-accuracy / small-talk reply accuracy, %",
            f"{get('timespeak_spoken', 'macro_accuracy')} / {get('chat_spoken', 'reply_accuracy')}",
            "",
            "",
        ),
    ]
    rows += world_rows(s, latency, get)
    sp = report.get("speech", {})
    rows.append(
        (
            "STOI of the model's phrases (vocoder alone)",
            f"{sp.get('stoi')} ({sp.get('vocoder_ceiling')})",
            "",
            "",
        )
    )
    rows += heard_rows(report)
    demo = s.get("demo")
    if demo:
        rows.append(
            (
                "Demo page episode (harness camera): hello timing / count timing / answer off-by-one, %",
                f"{demo['hello_timing_accuracy']} / {demo['count_timing_accuracy']} / {demo['answer_off_by_one']}",
                "",
                "",
            )
        )
    lines = [
        "| metric | reference model (ours) | VAD harness baseline (500 ms) | lab's TML-Interaction-Small |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def world_rows(
    s: dict[str, Any], latency: Callable[[dict[str, Any]], str], get: Callable[..., str]
) -> list[tuple[str, str, str, str]]:
    """Rows of the suites beyond the lab's benchmarks, where a report has them: open speech
    (held-in, held-out sentences, the held-out engine), noisy rooms, exercise video against the
    baselines, long calls."""
    rows: list[tuple[str, str, str, str]] = []
    for suite, name in (
        ("turn_corpus", "Open speech, training sentences and speakers"),
        (
            "turn_heldout",
            "Open speech, held-out sentences, unseen speakers of the training engines",
        ),
        ("turn_flite", "Open speech, held-out sentences, held-out engine (flite)"),
    ):
        if suite in s:
            rows.append(
                (
                    f"{name}: latency median / p90, s; false interruptions, %; barge-in within 400 ms, %",
                    f"{latency(s[suite])}; {get(suite, 'false_interruption_rate')}; "
                    f"{get(suite, 'barge_in_success')}",
                    "",
                    "",
                )
            )
    if "noisy_room" in s:
        rows.append(
            (
                "Noisy rooms nobody talks in (fan, music, babble, TV): episodes with false speech, %",
                get("noisy_room", "false_speech_episodes"),
                "",
                "",
            )
        )
    for suite, name in (
        ("repcount_figure", "RepCount on exercise video, training kinds and scenes"),
        ("repcount_figure_heldout", "RepCount on exercise video, held-out kinds, scenes, figures"),
    ):
        if suite in s:
            base = s[suite].get("centroid_baseline", {})
            energy = s[suite].get("energy_baseline", {})
            rows.append(
                (
                    f"{name}: off-by-one, % (centroid tracker; frame-difference counter)",
                    f"{get(suite, 'off_by_one_accuracy')} ({base.get('off_by_one_accuracy')}; "
                    f"{energy.get('off_by_one_accuracy')})",
                    "",
                    "",
                )
            )
    for suite, name in (
        ("startstop", "Start/stop, training actions and scenes"),
        ("startstop_heldout", "Start/stop, held-out scenes and motions"),
    ):
        if suite in s:
            rows.append(
                (
                    f"{name}: mIoU, % (energy threshold; targets said exactly)",
                    f"{get(suite, 'miou')} ({s[suite].get('energy_baseline', {}).get('miou')}; "
                    f"{get(suite, 'target_miou')})",
                    "",
                    "32.4 (real Charades)" if suite == "startstop_heldout" else "",
                )
            )
    if "long_timespeak" in s:
        rows.append(
            (
                "10-minute calls, say W every N s: on time over the call, %; a later stop or "
                "new period obeyed, %",
                f"{get('long_timespeak', 'on_time')}; {get('long_timespeak', 'change_obeyed')}",
                "",
                "",
            )
        )
    if "long_recall" in s:
        rows.append(
            (
                "5-minute calls: a number told at the start, asked for at the end: answered right, %",
                get("long_recall", "answer_accuracy"),
                "",
                "",
            )
        )
    if "long_delegate" in s:
        rows.append(
            (
                "4-minute calls: a background result that arrives 1-4 minutes after the "
                "request: its value said on arrival, %",
                get("long_delegate", "result_spoken"),
                "",
                "",
            )
        )
    if "delegate_talking" in s:
        rows.append(
            (
                "A held-out result that arrives while the user is talking: said over the user, % "
                "of results said (said at all between its arrival and 3 s after the sentence, % "
                "of results delivered)",
                f"{get('delegate_talking', 'result_over_user')} "
                f"({get('delegate_talking', 'result_after_arrival')})",
                "",
                "",
            )
        )
    if "long_repcount" in s:
        rows.append(
            (
                "3 minutes of reps: final count off by at most one, %",
                get("long_repcount", "off_by_one_accuracy"),
                "",
                "",
            )
        )
    return rows


# word metrics done with the words heard right too (lab/eval/metrics/heard.py): (suite, key, name)
HEARD_DONE = [
    ("timespeak", "macro_accuracy", "TimeSpeak"),
    ("cuespeak", "macro_accuracy", "CueSpeak"),
    ("repcount", "off_by_one_accuracy", "RepCount"),
    ("delegate", "success", "delegation"),
    ("chat", "reply_accuracy", "small talk"),
]


def heard_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The speech judge's rows: what a listener heard of the model's phrases beside the
    teacher's voice through the vocoder, and the word tasks done with the words heard right
    (the text stream alone on the same episodes in brackets)."""
    heard = report.get("speech", {}).get("heard")
    if not heard or not heard.get("utterances"):
        return []
    top = heard["ceiling"]
    rows = [
        (
            "Words heard in the model's phrases (pocketsphinx): key content / word accuracy, % "
            "(teacher's voice through the vocoder; model's share of it)",
            f"{heard['key_accuracy']} / {heard['word_accuracy']} ({top['key_accuracy']} / "
            f"{top['word_accuracy']}; {heard['key_accuracy_of_ceiling']} / "
            f"{heard['word_accuracy_of_ceiling']})",
            "",
            "",
        )
    ]
    names, cells = [], []
    for suite, key, name in HEARD_DONE:
        got = heard.get("suites", {}).get(suite, {}).get("done", {}).get(key)
        if got is not None:
            names.append(name)
            cells.append(f"{got['text_and_heard']} ({got['text']})")
    if names:
        rows.append(
            (
                f"Done with the words heard right too (text stream alone): {' / '.join(names)}, %",
                " / ".join(cells),
                "",
                "",
            )
        )
    return rows


# The targets: (suite, key, label, bound, whether higher is better)
TARGETS = [
    ("timespeak", "macro_accuracy", "TimeSpeak macro-accuracy, %", 80.0, True),
    ("cuespeak", "macro_accuracy", "CueSpeak macro-accuracy, %", 80.0, True),
    ("repcount", "off_by_one_accuracy", "RepCount off-by-one accuracy, %", 60.0, True),
    ("turn", "latency_median_s", "Turn-taking latency median, s", 0.40, False),
    ("turn", "false_interruption_rate", "False interruptions, % of turns", 5.0, False),
    ("turn", "barge_in_success", "Barge-in stopped within 400 ms, %", 90.0, True),
]


def seeds_table(reports: list[dict[str, Any]]) -> str:
    """Several held-out seeds side by side against the issue's targets (`make validate`): a
    suite a report did not run shows n/a, a latency of turns never taken "never"; the mean is
    over the seeds with a number."""
    head = [f"seed {r['seed']} ({r['episodes_per_suite']} ep)" for r in reports]
    lines = [
        "| metric | target | " + " | ".join(head) + " | mean |",
        "|---|---|" + "---|" * (len(reports) + 1),
    ]
    for suite, key, label, bound, higher in TARGETS:
        shown, have = [], []
        for r in reports:
            res = r["suites"].get(suite, {})
            v = res.get(key)
            if v is not None:
                have.append(float(v))
            shown.append(str(v) if v is not None else "never" if key in res else "n/a")
        mean = f"{round(float(np.mean(have)), 3 if bound < 1 else 1)}" if have else "n/a"
        target = f"{'>=' if higher else '<='} {bound:g}"
        lines.append(f"| {label} | {target} | " + " | ".join(shown) + f" | {mean} |")
    return "\n".join(lines)
