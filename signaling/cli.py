"""`microturn`: the command line.

microturn serve [--host H] [--port P] [--model PATH|echo] ...   the media + model server
microturn agent --redis URL [--concurrency N] ...               a background-model worker
microturn infer --redis-url URL [--model PATH|echo] ...          the engine in its own process
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Any

from infra.config import Config, _parse
from infra.logs import setup_logging


def _serve_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve calls over WebRTC",
        description="Serve calls: WebRTC in, 200 ms micro-turns through the model, audio back. "
        "Every flag also reads from its environment variable (shown in brackets).",
    )
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default not in (None, ()) else "unset"
        parser.add_argument(
            flag,
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata['help']} [{f.metadata['env']}; default: {default}]",
        )
    return parser


def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from signaling.app import create_app
    from signaling.siblings import Siblings

    overrides, given = {}, {}
    for f in fields(Config):
        raw = getattr(args, f.name)
        if raw is not None:
            overrides[f.name] = _parse(f.type, raw, f.name)
            given[f.name] = raw
    config = Config.from_env(**overrides)
    setup_logging(config.log_level, config.log_format)
    siblings = Siblings.from_env()  # set by a supervisor for each of its media processes
    if siblings is None and config.media_processes > 1:
        from infra.supervisor import supervise

        return supervise(config, given)
    redis = config.redis_url or "embedded"
    auth = "on" if config.auth_enabled else "off"
    inference = (
        f", inference: remote pool {config.inference_pool}" if config.inference == "remote" else ""
    )

    def announce(_: str) -> None:
        if siblings is not None:  # the supervisor announces the server
            print(f"media process {siblings.index} serving", flush=True)
            return
        print(
            f"Microturn is serving on {config.url}  (redis: {redis}, auth: {auth}, "
            f"max calls: {config.max_calls}{inference})\nOpen it in a browser; press Ctrl-C to stop.",
            flush=True,
        )

    web.run_app(
        create_app(config, siblings=siblings),
        host=config.host,
        port=config.port,
        # several media processes share the port; each has its private socket for its siblings
        path=siblings.socket if siblings is not None else None,
        reuse_port=True if siblings is not None else None,
        print=announce,
        shutdown_timeout=5.0,
        access_log=None,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="microturn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    # Subcommands owned by other packages parse their own flags.
    sub.add_parser("agent", help="run a background-model worker", add_help=False)
    sub.add_parser(
        "infer", help="serve the model's sessions to media processes (a worker)", add_help=False
    )
    sub.add_parser("train", help="train the reference interaction model", add_help=False)
    sub.add_parser(
        "eval", help="evaluate a checkpoint through the streaming engine", add_help=False
    )
    if argv[:1] == ["agent"]:
        from agent.cli import main as agent_main

        return agent_main(argv[1:])
    if argv[:1] == ["infer"]:
        from inference.worker import main as infer_main

        return infer_main(argv[1:])
    if argv[:1] == ["train"]:
        from lab.train import main as train_main

        return train_main(argv[1:])
    if argv[:1] == ["eval"]:
        from lab.eval.cli import main as eval_main

        return eval_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
