"""`make eval-live` / `python -m lab.live`: the model scored through Chromium, WebRTC and the codec.

    python -m lab.live [--suite turn_open,echo,...] [--episodes 8] [--seed 10] [--calls 2]
                       [--checkpoint DIR] [--url http://host:port] [--json PATH] [--markdown PATH]

Starts `microturn serve` with the checkpoint (or uses --url), plays each suite's episodes as real
calls from headless Chromium, scores what the page heard, runs the same episodes offline through
the engine for the side-by-side column, and writes the report (JSON and a markdown table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lab.eval.runner import Run, run_episodes
from lab.live.report import intervals, markdown_table
from lab.live.score import (
    barge_parts,
    latency_parts,
    score_heard,
    timing_parts,
    typed_entries,
    typed_late,
)
from lab.live.suites import DEV_SEEDS, SUITES, TEST_SEEDS, live_episodes

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def scored(suite: str, runs: list[Run]) -> dict[str, Any]:
    score = SUITES[suite].score
    return {**score(runs), "ci": intervals(suite, runs, score), **score_heard(runs, score)}


def seed_range(seed: int) -> str:
    return "test (frozen)" if seed in TEST_SEEDS else "dev" if seed in DEV_SEEDS else "other"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.live", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--suite",
        default=",".join(s for s, spec in SUITES.items() if spec.default),
        help=f"comma-separated of {', '.join(SUITES)} (default: all but long_timespeak, whose "
        "calls last 10 minutes)",
    )
    ap.add_argument("--episodes", type=int, default=8, help="episodes per suite")
    ap.add_argument(
        "--seed",
        type=int,
        default=DEV_SEEDS[0],
        help=f"dev seeds {DEV_SEEDS.start}-{DEV_SEEDS.stop - 1}; "
        f"test seeds {TEST_SEEDS.start}-{TEST_SEEDS.stop - 1} are frozen (report, never tune)",
    )
    ap.add_argument("--length", type=int, default=None, help="micro-turns per episode")
    ap.add_argument("--calls", type=int, default=2, help="calls at once")
    ap.add_argument("--checkpoint", default=None, help="checkpoint directory (default: shipped)")
    ap.add_argument("--url", default=None, help="a running server instead of starting one")
    ap.add_argument("--no-offline", action="store_true", help="skip the offline column")
    ap.add_argument("--json", default=str(RESULTS / "eval-live.json"))
    ap.add_argument("--markdown", default=str(RESULTS / "eval-live.md"))
    args = ap.parse_args(argv)
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        ap.error(f"unknown suite(s) {unknown}; choose from {', '.join(SUITES)}")
    torch.set_num_threads(1)
    report = asyncio.run(evaluate_live(args, suites))
    text = json.dumps(report, indent=2, sort_keys=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(text + "\n")
    table = markdown_table(report)
    Path(args.markdown).write_text(table + "\n")
    print(table)
    print(f"wrote {args.json} and {args.markdown}", file=sys.stderr)
    return 0


async def evaluate_live(args: argparse.Namespace, suites: list[str]) -> dict[str, Any]:
    from inference.checkpoint import SHIPPED_DIR, load, read_config
    from infra.embedded_redis import free_port
    from infra.ice import enable_loopback_candidates
    from lab.live.runner import run_live
    from tests.browser.harness import ServerProcess

    enable_loopback_candidates()
    checkpoint = args.checkpoint or str(SHIPPED_DIR)
    _, doc = read_config(checkpoint)
    report: dict[str, Any] = {
        "suites": {},
        "seed": args.seed,
        "seed_range": seed_range(args.seed),
        "episodes_per_suite": args.episodes,
        "calls_at_once": args.calls,
        "checkpoint": {"name": doc["name"], "n_params": doc["n_params"]},
        "date": time.strftime("%Y-%m-%d"),
    }
    plan = {s: live_episodes(s, args.episodes, args.seed, args.length) for s in suites}
    server = None
    if args.url is None:
        server = ServerProcess(
            free_port(),
            args=["--model", checkpoint, "--calls-per-minute", "1000"],
            log_path=RESULTS / "eval-live-server.log",
        )
        server.start()
    url = args.url or (server.url if server else "")
    try:
        for suite in suites:
            eps, echoes = plan[suite]
            t = time.time()
            print(f"{suite}: {len(eps)} live calls ...", file=sys.stderr, flush=True)
            live = await run_live(url, eps, args.calls, echoes)
            got: dict[str, Any] = {
                "live": scored(suite, list(live)),
                "errors": [r.error for r in live if r.error],
                "live_s": round(time.time() - t, 1),
            }
            held = [r.jitter_buffer_ms for r in live if r.jitter_buffer_ms is not None]
            if held:  # part of every path's last part: the page's jitter buffer
                got["jitter_buffer_ms"] = round(sum(held) / len(held), 1)
            if SUITES[suite].turns:
                got["latency_parts"] = latency_parts(live)
                got["barge_parts"] = barge_parts(live)
            elif any(ep.say for ep in eps):  # timed speech: where its lateness went
                got["timing_parts"] = timing_parts(live)
            if any(ep.typed for ep in eps):  # did the typed text enter the model on time?
                got["typed_late"] = typed_late(live)
                got["typed_late_per_call"] = [[k for _, k in typed_entries(r)] for r in live]
            got["said"] = [[s.mt, s.text] for s in live[0].utterances()][:12] if live else []
            report["suites"][suite] = got
            print(f"{suite} live: {json.dumps(got['live'])}", file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.stop()
    if not args.no_offline:
        model = load(checkpoint)
        for suite in suites:
            offline = run_episodes(model, plan[suite][0])
            report["suites"][suite]["offline"] = scored(suite, offline)
    return report
