"""The clock and timers: the current time in a zone or city, and timers that stream progress.

A timer waits inside `slots.waiting()`: while it sleeps, its worker slot runs other packages."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent import slots
from agent.backends.tool_types import ToolError, ToolEvent, ToolProgress, ToolResult

MAX_TIMER_S = 3600.0

_CITY_ZONES = {
    "utc": "UTC",
    "gmt": "UTC",
    "london": "Europe/London",
    "paris": "Europe/Paris",
    "berlin": "Europe/Berlin",
    "madrid": "Europe/Madrid",
    "rome": "Europe/Rome",
    "moscow": "Europe/Moscow",
    "new york": "America/New_York",
    "chicago": "America/Chicago",
    "denver": "America/Denver",
    "los angeles": "America/Los_Angeles",
    "san francisco": "America/Los_Angeles",
    "seattle": "America/Los_Angeles",
    "toronto": "America/Toronto",
    "sao paulo": "America/Sao_Paulo",
    "tokyo": "Asia/Tokyo",
    "seoul": "Asia/Seoul",
    "beijing": "Asia/Shanghai",
    "shanghai": "Asia/Shanghai",
    "hong kong": "Asia/Hong_Kong",
    "singapore": "Asia/Singapore",
    "delhi": "Asia/Kolkata",
    "mumbai": "Asia/Kolkata",
    "dubai": "Asia/Dubai",
    "sydney": "Australia/Sydney",
}


def current_time(
    zone: str | None = None, *, now: float | None = None
) -> tuple[str, dict[str, Any]]:
    """A sentence and data for the current time, in `zone` (IANA name or a big city) or local."""
    ts = time.time() if now is None else now
    if zone:
        key = _CITY_ZONES.get(zone.strip().lower(), zone.strip())
        try:
            tz: Any = ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(f"unknown time zone {zone!r}") from None
        dt = datetime.fromtimestamp(ts, tz)
        label = key
    else:
        dt = datetime.fromtimestamp(ts, UTC).astimezone()
        label = dt.tzname() or "local time"
    text = f"It is {dt:%H:%M} ({label}) on {dt:%A %d %B %Y}."
    return text, {
        "now_iso": dt.isoformat(timespec="seconds"),
        "unix_s": round(ts, 3),
        "zone": label,
    }


_DURATION_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
_TIMER_WORD = re.compile(r"\b(?:timer|remind\s+me|alarm|countdown|wake\s+me)\b", re.IGNORECASE)
_TIMER_LENGTH = re.compile(
    r"\b(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\b"
    r"(?:\s+(?:to|about|for)\s+(.+))?",
    re.IGNORECASE,
)
_TIMER_ALT = re.compile(
    r"\b(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\s+timer\b",
    re.IGNORECASE,
)


def parse_timer(text: str) -> tuple[float, str | None] | None:
    """(seconds, label) from "set a timer for 10 seconds" / "remind me in 5 min to ...", else None.

    The first timer word, then the first length after it: two linear searches (one regex with a
    lazy gap between them backtracks once per timer word, quadratic in the input)."""
    m: re.Match[str] | None = None
    word = _TIMER_WORD.search(text)
    if word is not None:
        m = _TIMER_LENGTH.search(text, word.end())
    if m is None:
        m = _TIMER_ALT.search(text)
        if m is None:
            return None
    try:
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    except (OverflowError, ValueError):
        return None
    label = m.group(3).strip().rstrip(".?!") if m.lastindex and m.lastindex >= 3 else None
    return seconds, label or None


def _tick_s(total_s: float) -> float:
    for tick in (1.0, 5.0, 10.0, 30.0, 60.0, 300.0):
        if total_s / tick <= 12:
            return tick
    return 600.0


def _fmt_s(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:g} s"
    if seconds < 5400:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


async def run_timer(
    seconds: float, label: str | None = None, *, started_at: float | None = None
) -> AsyncIterator[ToolEvent]:
    """Progress every few seconds, then the result when it fires.

    `started_at` (unix s) anchors the timer to when the user asked, so a worker that takes over a
    package from a dead one fires at the original time, not later.
    """
    if not 0 < seconds <= MAX_TIMER_S:
        raise ToolError(f"timers are limited to 0..{MAX_TIMER_S:g} s")
    now = time.time()
    start = now if started_at is None else min(started_at, now)
    fire_at = start + seconds
    what = f" ({label})" if label else ""
    timer_s: float = int(seconds) if float(seconds).is_integer() else seconds  # 10, not 10.0
    base = {"timer_s": timer_s, "label": label, "fires_at": round(fire_at, 3)}
    yield ToolProgress(f"Timer set for {_fmt_s(seconds)}{what}.", {**base, "remaining_s": timer_s})
    loop = asyncio.get_running_loop()
    fire_loop = loop.time() + max(0.0, fire_at - now)
    tick = _tick_s(seconds)
    while True:
        remaining = fire_loop - loop.time()
        if remaining <= 0:
            break
        # Sleep to the next whole tick of remaining time (or to the end), on the loop clock.
        step = remaining - (math.ceil(remaining / tick) - 1) * tick
        async with slots.waiting():  # only waiting: the worker may run other packages meanwhile
            await asyncio.sleep(step if step > 0.01 else tick)
        left = round(fire_loop - loop.time())
        if left > 0 and left % tick == 0:
            yield ToolProgress(f"Timer{what}: {_fmt_s(left)} left.", {**base, "remaining_s": left})
    yield ToolResult(
        f"Time's up: the {_fmt_s(seconds)} timer{what} is done.",
        {**base, "remaining_s": 0, "fired_at": round(time.time(), 3)},
    )
