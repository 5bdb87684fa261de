"""Timing metrics: what was said when, against when it was due (TimeSpeak, CueSpeak, RepCount, the demo)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lab.eval.runner import Run, Said

ON_TIME_MT = 1  # an utterance within this many micro-turns of when it is due is on time


# ---- metrics ---------------------------------------------------------------------------------------
def match(
    expected: list[tuple[int, str]], said: list[Said], tol: int = ON_TIME_MT
) -> tuple[int, list[int]]:
    """Greedy one-to-one matching of expected (mt, text) to said utterances with equal text and
    |dt| <= tol. -> (hits, timing errors of the hits)."""
    used: set[int] = set()
    hits, errs = 0, []
    for mt, text in expected:
        best = None
        for j, s in enumerate(said):
            if j in used or norm(s.text) != norm(text) or abs(s.mt - mt) > tol:
                continue
            if best is None or abs(s.mt - mt) < abs(said[best].mt - mt):
                best = j
        if best is not None:
            used.add(best)
            hits += 1
            errs.append(said[best].mt - mt)
    return hits, errs


def norm(text: str) -> str:
    return " ".join(text.lower().strip(" .!?,").split())


def timing_accuracy(expected: list[tuple[int, str]], said: list[Said]) -> float:
    if not expected and not said:
        return 1.0
    hits, _ = match(expected, said)
    return hits / max(len(expected), len(said))


def in_call(r: Run, expected: list[tuple[int, str]], said: list[Said]) -> list[Said]:
    """`said` less the words begun for a schedule due after the call ends: the expected list has
    only what is due inside the call, and a word said ahead at its end is the schedule kept."""
    end = r.schedule_end()
    return [s for s in said if s.mt < end or any(abs(s.mt - m) <= ON_TIME_MT for m, _ in expected)]


def pct(x: float) -> float:
    return round(100.0 * x, 1)


def eval_timespeak(runs: list[Run]) -> dict[str, Any]:
    by: dict[str, list[float]] = {}
    success = []
    for r in runs:
        exp = r.expected()
        said = in_call(r, exp, r.utterances())
        acc = timing_accuracy(exp, said)
        by.setdefault(r.ep.task.split("/")[1], []).append(acc)
        success.append(acc == 1.0)
    per = {k: pct(float(np.mean(v))) for k, v in sorted(by.items())}
    return {
        "macro_accuracy": pct(float(np.mean([np.mean(v) for v in by.values()]))) if by else None,
        "per_subtype": per,
        "episode_success": pct(float(np.mean(success))) if success else None,
        "episodes": len(runs),
    }


def eval_cuespeak(runs: list[Run]) -> dict[str, Any]:
    accs, fa = [], 0
    for r in runs:
        exp = r.expected()
        said = r.utterances()
        accs.append(timing_accuracy(exp, said))
        hits, _ = match(exp, said)
        fa += len(said) - hits
    return {
        "macro_accuracy": pct(float(np.mean(accs))) if accs else None,
        "false_responses_per_episode": round(fa / max(1, len(runs)), 2),
        "episodes": len(runs),
    }


def _number(text: str) -> int | None:
    digits = "".join(c for c in text if c.isdigit())
    return int(digits) if digits and len(digits) < 4 else None


def eval_repcount(runs: list[Run]) -> dict[str, Any]:
    errs, timing, harness_ok = [], [], []
    for r in runs:
        said = r.utterances()
        q0 = r.ep.info.get("q0")
        final = None
        if q0 is not None:
            after = [s for s in said if s.mt >= q0 - 1 and _number(s.text) is not None]
            if after:
                final = _number(after[0].text)
        if final is None:
            nums = [n for s in said if (n := _number(s.text)) is not None]
            final = nums[-1] if nums else 0
        err = abs(int(final) - int(r.ep.info["total"]))
        errs.append(err)
        exp = r.expected(("count",))
        counts = [s for s in said if q0 is None or s.mt < q0 - 1]
        timing.append(timing_accuracy(exp, counts))
        if r.ep.info.get("harness"):
            harness_ok.append(err <= 1)
    e = np.array(errs)
    return {
        "off_by_one_accuracy": pct(float(np.mean(e <= 1))) if len(e) else None,
        "exact_accuracy": pct(float(np.mean(e == 0))) if len(e) else None,
        "mae": round(float(e.mean()), 2) if len(e) else None,
        "count_timing_accuracy": pct(float(np.mean(timing))) if timing else None,
        "harness_video_off_by_one": pct(float(np.mean(harness_ok))) if harness_ok else None,
        "harness_episodes": len(harness_ok),
        "episodes": len(runs),
    }


def eval_demo(runs: list[Run]) -> dict[str, Any]:
    """The demo page's acceptance as the page test drives it (the QA harness's circling square on
    the camera, a quiet room on the mic): hellos on time, counts on time, the right total."""
    hello, counts, errs, said_log = [], [], [], []
    for r in runs:
        said = r.utterances()
        exp_hello = r.expected(("say",))
        c0 = r.ep.info["c0"]
        q0 = r.ep.info["q0"]
        hello.append(timing_accuracy(exp_hello, [s for s in said if s.mt < c0]))
        exp_counts = r.expected(("count",))
        counts.append(timing_accuracy(exp_counts, [s for s in said if c0 <= s.mt < q0 - 1]))
        answer = next(
            (_number(s.text) for s in said if s.mt >= q0 - 1 and _number(s.text) is not None), None
        )
        errs.append(abs((answer if answer is not None else -100) - r.ep.info["total"]))
        said_log.append([(s.mt, s.text) for s in said][:40])
    return {
        "hello_timing_accuracy": pct(float(np.mean(hello))),
        "count_timing_accuracy": pct(float(np.mean(counts))),
        "answer_off_by_one": pct(float(np.mean(np.array(errs) <= 1))),
        "episodes": len(runs),
        "first_episode_said": said_log[0] if said_log else [],
    }


def eval_long_timespeak(runs: list[Run]) -> dict[str, Any]:
    """Long calls (issue 30): the share of expected utterances said on time (+-1 micro-turn, each
    said one matched once) over the whole call, by minute; of the calls with a later "stop" or a
    new period, the share whose expected utterances after it were all on time with none extra.
    Extra utterances count against the first number too (hits / max(expected, said))."""
    hits = expected = said_n = 0
    by_minute: dict[int, list[int]] = {}
    obeyed = []
    for r in runs:
        exp = r.expected()
        said = in_call(r, exp, r.utterances())
        h, _ = match(exp, said)
        hits, expected, said_n = hits + h, expected + len(exp), said_n + len(said)
        for mt, text in exp:
            got, _ = match([(mt, text)], said)
            by_minute.setdefault(mt // 300, [0, 0])
            by_minute[mt // 300][0] += got
            by_minute[mt // 300][1] += 1
        change = r.ep.info.get("change")
        if change is not None:
            start = change["from"]
            exp_after = [e for e in exp if e[0] >= start]
            said_after = [s for s in said if s.mt >= start + 1]
            obeyed.append(timing_accuracy(exp_after, said_after) == 1.0)
    return {
        "on_time": pct(hits / max(1, expected, said_n)),
        "expected": expected,
        "said": said_n,
        "on_time_by_minute": {
            str(k): pct(a / max(1, b)) for k, (a, b) in sorted(by_minute.items())
        },
        "change_obeyed": pct(float(np.mean(obeyed))) if obeyed else None,
        "changes": len(obeyed),
        "episodes": len(runs),
    }


def eval_recall(runs: list[Run]) -> dict[str, Any]:
    """Long calls: the number asked about minutes after it was told, said within 3 micro-turns
    of the question's end (the first number said then)."""
    right = []
    for r in runs:
        q0 = r.ep.info["q0"]
        said = [s for s in r.utterances() if q0 - 1 <= s.mt <= q0 + 3]
        nums = [x for s in said if (x := _number(s.text)) is not None]
        right.append(bool(nums) and nums[0] == r.ep.info["number"])
    return {"answer_accuracy": pct(float(np.mean(right))) if right else None, "episodes": len(runs)}
