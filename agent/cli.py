"""`microturn agent`: one background worker process, until Ctrl-C or SIGTERM.

Every flag defaults to its environment variable; the backend's settings (including the OpenAI
key, which is never a flag) are read once, by `BackendSettings.from_env()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from agent.backends import BACKEND_NAMES, Backend, BackendSettings
from agent.bus import StreamKeys
from agent.consumer import (
    DEFAULT_CLAIM_IDLE_MS,
    DEFAULT_CONCURRENCY,
    DEFAULT_GRACE_S,
    DEFAULT_MAX_DELIVERIES,
    Worker,
)

log = logging.getLogger(__name__)


def build_parser(settings: BackendSettings) -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="microturn agent",
        description="Run a background-model worker: consume context packages from Redis, stream "
        "results back. Any number of workers may share one Redis.",
    )
    parser.add_argument(
        "--redis",
        default=env("REDIS_URL"),
        help="Redis URL, e.g. redis://host:6379/0 [REDIS_URL]",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(env("MICROTURN_AGENT_CONCURRENCY", DEFAULT_CONCURRENCY)),
        help=f"packages worked on at once [MICROTURN_AGENT_CONCURRENCY; default "
        f"{DEFAULT_CONCURRENCY}]; waiting ones (timers) do not count",
    )
    parser.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default=settings.name,
        help="background model [MICROTURN_AGENT_BACKEND; default builtin]",
    )
    parser.add_argument(
        "--notes",
        default=settings.notes_dir,
        help="folder of .md/.txt notes the tools search [MICROTURN_NOTES_DIR]",
    )
    parser.add_argument(
        "--openai-base-url",
        default=settings.openai_base_url,
        help="OpenAI-compatible API base, e.g. http://host:8000/v1 [MICROTURN_OPENAI_BASE_URL]",
    )
    parser.add_argument(
        "--openai-model",
        default=settings.openai_model or "gpt-4o-mini",
        help="model name [MICROTURN_OPENAI_MODEL]; the key comes from MICROTURN_OPENAI_API_KEY "
        "or OPENAI_API_KEY",
    )
    parser.add_argument("--consumer", default=None, help="consumer name (default host-pid-random)")
    parser.add_argument("--claim-idle-ms", type=int, default=DEFAULT_CLAIM_IDLE_MS)
    parser.add_argument("--max-deliveries", type=int, default=DEFAULT_MAX_DELIVERIES)
    parser.add_argument("--key-prefix", default="microturn", help="stream key prefix")
    parser.add_argument("--group", default="agents", help="consumer group")
    parser.add_argument("--grace-s", type=float, default=DEFAULT_GRACE_S)
    parser.add_argument("--log-level", default=env("MICROTURN_LOG_LEVEL", "info"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`microturn agent ...`: run one worker until Ctrl-C / SIGTERM. Returns the exit code."""
    settings = BackendSettings.from_env()
    parser = build_parser(settings)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.redis:
        parser.error("--redis URL (or REDIS_URL) is required")
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    chosen = BackendSettings(
        name=args.backend,
        notes_dir=args.notes,
        openai_base_url=args.openai_base_url,
        openai_api_key=settings.openai_api_key,
        openai_model=args.openai_model,
    )
    try:
        backend = chosen.make()
    except ValueError as exc:
        parser.error(str(exc))
    worker = Worker(
        args.redis,
        backend,
        concurrency=args.concurrency,
        consumer_name=args.consumer,
        claim_idle_ms=args.claim_idle_ms,
        max_deliveries=args.max_deliveries,
        keys=StreamKeys.with_prefix(args.key_prefix, group=args.group),
    )
    try:
        asyncio.run(_serve_worker(worker, backend, args.grace_s))
    except KeyboardInterrupt:
        return 130
    return 0


async def _serve_worker(worker: Worker, backend: Backend, grace_s: float) -> None:
    loop = asyncio.get_running_loop()
    run = asyncio.create_task(worker.run())
    signals = 0
    stopping: list[asyncio.Task[None]] = []

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info(
                "agent worker %s: %s received; finishing running tasks (again to force)",
                worker.consumer,
                signal.Signals(signum).name,
            )
            stopping.append(loop.create_task(worker.stop(grace_s)))
        else:
            run.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
    print(
        f"microturn agent {worker.consumer}: consuming {worker.keys.ctx} "
        f"(group {worker.keys.group}, concurrency {worker.concurrency}); Ctrl-C to stop",
        flush=True,
    )
    try:
        await run
    except asyncio.CancelledError:
        if not run.cancelled():
            raise
    finally:
        await backend.aclose()


if __name__ == "__main__":
    # Run the importable module's main, so loggers are named agent.cli, not __main__.
    from agent.cli import main as _main

    sys.exit(_main())
