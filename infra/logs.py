"""Logging setup: human-readable lines by default, one JSON object per line for log pipelines.

Every message about a call starts with `call <id>:` (the project's convention); the JSON format
lifts that id into its own `call_id` field so logs can be filtered by call.

Errors that a client can cause at will (a malformed HTTP request, a request that hits a bug) are
rate-limited per logger and message (`RepeatFilter`): a flood of bad requests costs one line every
few seconds with a count of what was held back, not a line (and a traceback) per request.
"""

from __future__ import annotations

import json
import logging
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REPEAT_EVERY_S = 5.0
# Loggers that log what any client can trigger: aiohttp's "Error handling request" (bad HTTP),
# our own unhandled-error line, aiohttp's access errors.
CLIENT_FACING_LOGGERS = ("aiohttp.server", "aiohttp.web", "signaling.errors")


class RepeatFilter(logging.Filter):
    """Lets one record per (logger, message template) through every `every_s`; the next one that
    passes says how many were held back. Bounded: at most `max_keys` templates are tracked."""

    def __init__(self, every_s: float = REPEAT_EVERY_S, max_keys: int = 256) -> None:
        super().__init__()
        self.every_s = every_s
        self.max_keys = max_keys
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # key -> (last passed, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last, held = self._seen.get(key, (-self.every_s, 0))
        if now - last < self.every_s:
            self._seen[key] = (last, held + 1)
            return False
        if len(self._seen) >= self.max_keys and key not in self._seen:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {now - last:.0f} s)"
        return True


def limit_client_facing_errors() -> None:
    """Install a RepeatFilter on the loggers any client can drive. Idempotent."""
    for name in CLIENT_FACING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if isinstance(record.msg, str) and record.msg.startswith("call %s") and record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            entry["call_id"] = str(args[0])
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
