"""`microturn eval` / `python -m lab.eval`: run the suites, write and print the report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from inference.config import ModelConfig
from lab.eval.report import markdown_table, seeds_table
from lab.eval.suites import SUITES, evaluate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="microturn eval", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--suite", default="all", help=f"comma-separated of {', '.join(SUITES)}, or all"
    )
    ap.add_argument("--episodes", type=int, default=32, help="episodes per suite")
    ap.add_argument("--seed", type=int, default=1, help="held-out seed (training never uses these)")
    ap.add_argument(
        "--checkpoint", default=None, help="checkpoint directory (default: the shipped small)"
    )
    ap.add_argument("--sessions", type=int, default=8, help="calls stepped together in the engine")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--baseline", action="store_true", help="also run the VAD baseline on the turn suite"
    )
    ap.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        help="write the JSON report (to a file, or stdout)",
    )
    ap.add_argument(
        "--length",
        type=int,
        default=None,
        help="micro-turns per episode (default: per suite, 60-250)",
    )
    ap.add_argument(
        "--codec-bitrate",
        type=int,
        default=None,
        metavar="BPS",
        help="pass the microphone audio through Opus at this bitrate first (e.g. 32000: a "
        "browser's), to measure what the live path's codec costs",
    )
    ap.add_argument(
        "--live-path",
        type=float,
        default=0.0,
        metavar="STRENGTH",
        help="pass the microphone through training's live path first (lab/tasks/room.py: own "
        "echo, room, noise, level, Opus) at this strength (1: as training draws it)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a model setting that has no weights of its own (sampling settings such as "
        "flow_temperature, or pins=0: the window alone), e.g. --set pins=0",
    )
    ap.add_argument("--progress", action="store_true")
    ap.add_argument(
        "--table",
        metavar="REPORT",
        nargs="+",
        help="print the markdown table of a JSON report and stop; of several reports (one per "
        "seed), their numbers side by side against the targets",
    )
    args = ap.parse_args(argv)
    if args.table:
        reports = [json.loads(Path(f).read_text()) for f in args.table]
        print(markdown_table(reports[0]) if len(reports) == 1 else seeds_table(reports))
        return 0
    torch.set_num_threads(args.threads)
    suites = list(SUITES) if args.suite == "all" else [s.strip() for s in args.suite.split(",")]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        ap.error(f"unknown suite(s) {unknown}; choose from {', '.join(SUITES)}")
    from inference.checkpoint import SHIPPED_DIR, load, read_config

    path = args.checkpoint or str(SHIPPED_DIR)
    model = load(path)
    if args.set:
        model.cfg = with_settings(model.cfg, args.set)
    _, doc = read_config(path)
    t = time.time()
    report = evaluate(
        model,
        suites,
        args.episodes,
        args.seed,
        args.sessions,
        args.baseline,
        args.progress,
        args.length,
        args.codec_bitrate,
        args.live_path,
    )
    report["checkpoint"] = {"name": doc["name"], "n_params": doc["n_params"], "dtype": doc["dtype"]}
    print(f"evaluated in {time.time() - t:.0f} s", file=sys.stderr)
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.json == "-":
        print(text)
    elif args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    else:
        print(text)
    return 0


SETTABLE = frozenset(
    {"pins", "flow_temperature", "flow_steps", "griffin_lim_iters", "onset_survival"}
)


def with_settings(cfg: ModelConfig, settings: list[str]) -> ModelConfig:
    """`FIELD=VALUE` overrides of the settings that own no weights (see --set)."""
    changes: dict[str, Any] = {}
    for item in settings:
        field, _, value = item.partition("=")
        if field not in SETTABLE:
            raise SystemExit(f"--set {field}: one of {', '.join(sorted(SETTABLE))}")
        changes[field] = type(getattr(cfg, field))(value)
    return replace(cfg, **changes)
