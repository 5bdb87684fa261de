"""The tools every background model gets, with no network: calculator, units, clock, timers, notes.

Each tool is a plain function (easy to test; calculator.py, units.py, clock.py, notes.py) plus an
entry in `Toolbox`, which gives the OpenAI function-calling schema and one calling convention for
both backends:

    async for event in toolbox.invoke(name, args):   # ToolProgress..., then one ToolResult
        ...

`Toolbox.invoke` runs the calculator and the unit converter in the `Sandbox` (child processes
with a hard time limit), never on the event loop: a bound that was missed costs a killed child,
not stalled media."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.backends.tool_types import ToolError, ToolEvent, ToolProgress, ToolResult
from agent.sandbox import Sandbox

if TYPE_CHECKING:
    from agent.backends.notes import NotesIndex

__all__ = [
    "MAX_TIMER_S",
    "ToolError",
    "ToolEvent",
    "ToolProgress",
    "ToolResult",
    "Toolbox",
    "calculate",
    "convert_units",
    "current_time",
    "extract_expression",
    "format_number",
    "parse_conversion",
    "parse_timer",
    "run_timer",
]

from agent.backends.calculator import (
    MAX_EXPRESSION_CHARS,
    Number,
    calculate,
    extract_expression,
    format_number,
)
from agent.backends.clock import MAX_TIMER_S, current_time, parse_timer, run_timer
from agent.backends.units import convert_units, parse_conversion


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


_SPECS = [
    ToolSpec(
        "calculate",
        "Evaluate an arithmetic expression exactly. Supports + - * / // % ** and sqrt, sin, cos, "
        "tan, log, ln, exp, abs, round, floor, ceil, min, max, factorial, pi, e.",
        {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "e.g. 12*7"}},
            "required": ["expression"],
        },
    ),
    ToolSpec(
        "convert_units",
        "Convert a quantity between units of length, mass, time, volume, speed, area, data, "
        "energy or temperature.",
        {
            "type": "object",
            "properties": {
                "value": {"type": "number"},
                "from_unit": {"type": "string", "description": "e.g. km, lb, F"},
                "to_unit": {"type": "string", "description": "e.g. mi, kg, C"},
            },
            "required": ["value", "from_unit", "to_unit"],
        },
    ),
    ToolSpec(
        "current_time",
        "The current date and time, optionally in a time zone (IANA name or a major city).",
        {"type": "object", "properties": {"timezone": {"type": "string"}}},
    ),
    ToolSpec(
        "set_timer",
        "Start a timer; progress is streamed and the tool returns when it fires.",
        {
            "type": "object",
            "properties": {
                "seconds": {"type": "number", "description": f"1 to {MAX_TIMER_S:g}"},
                "label": {"type": "string"},
            },
            "required": ["seconds"],
        },
    ),
]
_NOTES_SPEC = ToolSpec(
    "search_notes",
    "Search the operator's notes (text and markdown files) by meaning; returns the best passages.",
    {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "k": {"type": "integer", "description": "how many passages (default 3)"},
        },
        "required": ["query"],
    },
)


def calculate_tool(expression: str) -> tuple[str, dict[str, Any]]:
    """The calculator as a tool: (text, data). Runs in the sandbox."""
    expr, value = calculate(expression)
    return f"{expr} = {format_number(value)}", {"expression": expr, "value": value}


def convert_tool(value: float, from_unit: str, to_unit: str) -> tuple[str, dict[str, Any]]:
    """The unit converter as a tool: (text, data). Runs in the sandbox."""
    out, src, dst = convert_units(value, from_unit, to_unit)
    return (
        f"{format_number(value)} {src} = {format_number(out)} {dst}",
        {"input": value, "from": src, "to": dst, "value": out},
    )


class Toolbox:
    """The tools a backend may call. Notes search is offered only when a notes folder is set.

    CPU-bound tools run in `sandbox` (child processes, hard time limit), never on the loop."""

    def __init__(self, notes: NotesIndex | None = None, sandbox: Sandbox | None = None) -> None:
        self.notes = notes
        self.sandbox = sandbox or Sandbox()

    @property
    def specs(self) -> list[ToolSpec]:
        return [*_SPECS, _NOTES_SPEC] if self.notes is not None else list(_SPECS)

    def openai_tools(self) -> list[dict[str, Any]]:
        return [spec.openai_schema() for spec in self.specs]

    async def aclose(self) -> None:
        await self.sandbox.aclose()

    async def invoke(
        self, name: str, args: Mapping[str, Any], *, started_at: float | None = None
    ) -> AsyncIterator[ToolEvent]:
        """Run one tool: ToolProgress events, then exactly one ToolResult; ToolError on failure."""
        if name == "calculate":
            expression = _arg(args, "expression", str)
            if len(expression) > MAX_EXPRESSION_CHARS:  # refused here, without a process hop
                raise ToolError(f"expressions are limited to {MAX_EXPRESSION_CHARS} characters")
            text, data = await self.sandbox.call(calculate_tool, expression)
            yield ToolResult(text, data)
        elif name == "convert_units":
            value = _finite(_arg(args, "value", (int, float)))
            text, data = await self.sandbox.call(
                convert_tool,
                value,
                _arg(args, "from_unit", str)[:100],
                _arg(args, "to_unit", str)[:100],
            )
            yield ToolResult(text, data)
        elif name == "current_time":
            zone = args.get("timezone")
            text, data = current_time(zone if isinstance(zone, str) and zone else None)
            yield ToolResult(text, data)
        elif name == "set_timer":
            label = args.get("label")
            async for event in run_timer(
                _finite(_arg(args, "seconds", (int, float))),
                label if isinstance(label, str) and label else None,
                started_at=started_at,
            ):
                yield event
        elif name == "search_notes" and self.notes is not None:
            k = args.get("k", 3)
            async for event in self.notes.search_events(
                _arg(args, "query", str), k if isinstance(k, int) and 0 < k <= 20 else 3
            ):
                yield event
        else:
            raise ToolError(f"unknown tool {name!r}")


def _finite(value: Number) -> float:
    try:
        number = float(value)
    except OverflowError:
        raise ToolError("the value is too large") from None
    if not math.isfinite(number):
        raise ToolError("the value must be a finite number")
    return number


def _arg(args: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = args.get(name)
    if value is None or not isinstance(value, kind) or isinstance(value, bool):
        raise ToolError(f"missing or invalid argument {name!r}")
    return value
