"""The builtin background model: a tool-using worker with no network and no language model.

It routes the request to one tool by pattern (timer, clock, notes, unit conversion, arithmetic),
streams the tool's progress as `partial`s and ends with its answer as `final` (with structured
`data` for cards). Anything it cannot route becomes a notes search when a notes folder is set,
else a short `final` saying what it can do.

Routing is pattern matching over up to 4,000 characters of user text, so it runs in the toolbox's
sandbox like the tools themselves; every pattern is linear in its input (whitespace is collapsed
first, and the clock's time-zone tail is found by a scan rather than by backtracking).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from agent.backends.base import BackendEvent
from agent.backends.tools import (
    Toolbox,
    ToolError,
    ToolResult,
    extract_expression,
    parse_conversion,
    parse_timer,
)
from agent.types import ContextPackage
from agent.weave import strip_ask

_CLOCK = re.compile(
    r"\b(what\s+time|time\s+is\s+it|the\s+time|current\s+time|local\s+time|what\s+day|"
    r"the\s+date|today'?s\s+date|what\s+date)\b",
    re.IGNORECASE,
)
_CLOCK_AT_END = re.compile(_CLOCK.pattern + r"$", re.IGNORECASE)
_ZONE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_/ ")
_IN = re.compile(r"\bin\s+", re.IGNORECASE)
_NOTES = re.compile(
    r"^(?:please\s+)?(?:(?:search|find|look\s+up|check|look\s+in|look\s+through)\b.*?\bnotes?\b"
    r"(?:\s+(?:for|about|on|regarding))?|what\s+do\s+(?:my|the)\s+notes\s+say\s+(?:about|on)|"
    r"notes?\s*:)\s*(.+?)\s*[?.!]?$",
    re.IGNORECASE,
)

HELP_TEXT = (
    "I can do arithmetic (what is 12*7), unit conversions (5 km to miles), the time, "
    "timers (set a timer for 10 seconds){notes}."
)


def clock_request(text: str) -> tuple[bool, str | None]:
    """(is it a clock request, time zone): a clock phrase, then nothing but an optional
    "in ZONE" and one closing mark. Linear in the text (whitespace already collapsed)."""
    m = _CLOCK.search(text)
    if m is None:
        return False, None
    body = text.rstrip()
    if body[-1:] in {"?", ".", "!"}:
        body = body[:-1].rstrip()
    if _CLOCK_AT_END.search(body):
        return True, None
    allowed_from = len(body)  # body[allowed_from:] holds only time-zone characters
    while allowed_from > 0 and body[allowed_from - 1] in _ZONE_CHARS:
        allowed_from -= 1
    for found in _IN.finditer(body, m.end()):
        if allowed_from <= found.end() < len(body):
            return True, body[found.end() :].strip()
    return False, None


def route(request: str, notes: bool = False) -> tuple[str, dict[str, Any]] | None:
    """(tool name, arguments) for a request, or None when no tool fits."""
    text = " ".join(request.split())  # one space between words: no pattern backtracks on runs
    timer = parse_timer(text)
    if timer is not None:
        seconds, label = timer
        return "set_timer", {"seconds": seconds, "label": label}
    is_clock, zone = clock_request(text)
    if is_clock:
        return "current_time", {"timezone": zone}
    m = _NOTES.match(text)
    if m and notes:
        return "search_notes", {"query": m.group(1)}
    conversion = parse_conversion(text)
    if conversion is not None:
        value, src, dst = conversion
        return "convert_units", {"value": value, "from_unit": src, "to_unit": dst}
    expression = extract_expression(text)
    if expression is not None:
        return "calculate", {"expression": expression}
    if notes and text:
        return "search_notes", {"query": text}
    return None


class BuiltinBackend:
    name = "builtin"

    def __init__(self, toolbox: Toolbox | None = None) -> None:
        self.toolbox = toolbox or Toolbox()

    async def run(self, package: ContextPackage) -> AsyncIterator[BackendEvent]:
        request = strip_ask(package.request.text)
        try:
            routed = await self.toolbox.sandbox.call(route, request, self.toolbox.notes is not None)
        except ToolError as exc:
            yield BackendEvent("error", f"could not read the request: {exc}", {"tool": None})
            return
        if routed is None:
            notes = ", and searching your notes" if self.toolbox.notes is not None else ""
            yield BackendEvent("final", HELP_TEXT.format(notes=notes), {"tool": None})
            return
        tool, args = routed
        try:
            async for event in self.toolbox.invoke(tool, args, started_at=package.created_at):
                data = {"tool": tool, **event.data}
                if isinstance(event, ToolResult):
                    yield BackendEvent("final", event.text, data)
                    return
                yield BackendEvent("partial", event.text, data)
        except ToolError as exc:
            yield BackendEvent("error", str(exc), {"tool": tool})
            return
        yield BackendEvent("error", f"{tool} returned no result", {"tool": tool})

    async def aclose(self) -> None:
        await self.toolbox.aclose()
