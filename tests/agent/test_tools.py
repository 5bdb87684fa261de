"""The builtin tools and routing: calculator (never eval), units, clock, timers."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from agent.backends import BackendEvent
from agent.backends.builtin import BuiltinBackend, route
from agent.backends.tools import (
    Toolbox,
    ToolError,
    ToolProgress,
    ToolResult,
    calculate,
    convert_units,
    current_time,
    extract_expression,
    parse_conversion,
    parse_timer,
    run_timer,
)
from agent.types import ContextPackage


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("12*7", 84),
        ("2**10", 1024),
        ("(1+2)*3 - 4/2", 7),
        ("7 // 2 + 7 % 2", 4),
        ("sqrt(16) + abs(-2)", 6),
        ("round(pi, 3)", 3.142),
        ("max(1, 5, 3)", 5),
        ("0.1 + 0.2", 0.3),
        ("-3 ** 2", -9),
        ("factorial(10)", 3628800),
        ("log(8, 2)", 3),
    ],
)
def test_calculator(expression: str, value: float) -> None:
    assert calculate(expression)[1] == pytest.approx(value)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('echo pwned')",
        "().__class__.__bases__",
        "open('/etc/passwd')",
        "x + 1",
        "'a' * 3",
        "[1, 2]",
        "lambda: 1",
        "9 ** 9 ** 9",
        "10 ** 100000",
        "factorial(100000)",
        "1 / 0",
        "sqrt(-1)",
        "1e308 * 10",
        "True + 1",
        "",
        "1 +",
        "(" * 200 + "1" + ")" * 200,
    ],
)
def test_calculator_refuses(expression: str) -> None:
    with pytest.raises(ToolError):
        calculate(expression)


def test_calculator_is_fast_on_hostile_input() -> None:
    started = time.monotonic()
    for expression in ["2 ** 10000 ** 2", "9**9**9**9", "factorial(1001)", "2**4096 * 2**4096"]:
        with pytest.raises(ToolError):
            calculate(expression)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("text", "expression"),
    [
        ("what is 12*7", "12*7"),
        ("What's 12 x 7?", "12*7"),
        ("calculate 3 plus 4 times 2", "3 + 4 * 2"),
        ("15% of 80", "15/100*80"),
        ("how much is 1,000,000 / 4", "1000000 / 4"),
        ("square root of 81", "sqrt(81)"),
        ("5 squared", "5 **2"),
        ("tell me a joke", None),
        ("what is the capital of France", None),
    ],
)
def test_extract_expression(text: str, expression: str | None) -> None:
    assert extract_expression(text) == expression


def test_unit_conversion() -> None:
    assert convert_units(5, "km", "miles")[0] == pytest.approx(3.10685596)
    assert convert_units(100, "F", "C")[0] == pytest.approx(37.7777778)
    assert convert_units(0, "celsius", "kelvin")[0] == pytest.approx(273.15)
    assert convert_units(1, "GiB", "MB")[0] == pytest.approx(1073.741824)
    assert convert_units(60, "mph", "km/h")[0] == pytest.approx(96.56064)
    with pytest.raises(ToolError, match="cannot convert"):
        convert_units(1, "kg", "m")
    with pytest.raises(ToolError, match="unknown unit"):
        convert_units(1, "furlongs", "m")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("convert 5 km to miles", (5.0, "km", "miles")),
        ("10 lb in kg", (10.0, "lb", "kg")),
        ("what is 20 degrees c in f?", (20.0, "degrees c", "f")),
        ("how many feet in a mile", (1.0, "mile", "feet")),
        ("convert 5 apples to pears", None),
    ],
)
def test_parse_conversion(text: str, parsed: tuple[float, str, str] | None) -> None:
    assert parse_conversion(text) == parsed


def test_clock() -> None:
    text, data = current_time("Tokyo", now=0.0)
    assert text == "It is 09:00 (Asia/Tokyo) on Thursday 01 January 1970."
    assert data["unix_s"] == 0.0
    assert "It is" in current_time()[0]
    with pytest.raises(ToolError):
        current_time("Atlantis")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("set a timer for 10 seconds", (10.0, None)),
        ("timer 2 min", (120.0, None)),
        ("remind me in 5 minutes to stretch", (300.0, "stretch")),
        ("start a 30 s timer", (30.0, None)),
        ("what is 12*7", None),
    ],
)
def test_parse_timer(text: str, parsed: tuple[float, str | None] | None) -> None:
    assert parse_timer(text) == parsed


async def test_timer_streams_progress_then_fires() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = [e async for e in run_timer(2.0, "tea")]
    elapsed = loop.time() - started
    assert isinstance(events[0], ToolProgress) and "Timer set for 2 s (tea)" in events[0].text
    assert [e.data["remaining_s"] for e in events[1:-1]] == [1.0]
    assert isinstance(events[-1], ToolResult) and events[-1].data["timer_s"] == 2.0
    assert elapsed >= 1.99  # never fires early (a loaded machine may make it late)


async def test_timer_is_anchored_to_when_it_was_asked() -> None:
    """A worker that takes over a timer from a dead one fires it at the original time."""
    events = [e async for e in run_timer(5.0, started_at=time.time() - 4.9)]
    assert isinstance(events[-1], ToolResult)
    assert len(events) == 2  # set, then done: the 4.9 s already passed are not waited again


def test_routing() -> None:
    assert route("set a timer for 10 seconds", notes=False) == (
        "set_timer",
        {"seconds": 10.0, "label": None},
    )
    assert route("what time is it in London?", notes=False) == (
        "current_time",
        {"timezone": "London"},
    )
    assert route("what's the date", notes=False) == ("current_time", {"timezone": None})
    assert route("convert 3 lb to kg", notes=False) == (
        "convert_units",
        {"value": 3.0, "from_unit": "lb", "to_unit": "kg"},
    )
    assert route("what is 12*7", notes=False) == ("calculate", {"expression": "12*7"})
    assert route("search my notes for the wifi password", notes=True) == (
        "search_notes",
        {"query": "the wifi password"},
    )
    assert route("tell me about the garden", notes=True) == (
        "search_notes",
        {"query": "tell me about the garden"},
    )
    assert route("tell me about the garden", notes=False) is None


async def run_builtin(text: str, backend: BuiltinBackend | None = None) -> list[BackendEvent]:
    package = ContextPackage.new("call-x", text, [], 0)
    return [e async for e in (backend or BuiltinBackend()).run(package)]


async def test_builtin_ask_calculator() -> None:
    events = await run_builtin("/ask what is 12*7")
    assert len(events) == 1
    final = events[0]
    assert final.kind == "final" and "84" in final.text
    assert final.data == {"tool": "calculate", "expression": "12*7", "value": 84}


async def test_builtin_timer_streams_partials_then_final() -> None:
    events = await run_builtin("set a timer for 2 seconds")
    assert [e.kind for e in events] == ["partial", "partial", "final"]
    assert events[-1].data is not None and events[-1].data["timer_s"] == 2.0


async def test_builtin_errors_and_help() -> None:
    err = await run_builtin("what is 1/0")
    assert [e.kind for e in err] == ["error"] and "division by zero" in err[0].text
    help_ = await run_builtin("sing me a song")
    assert help_[0].kind == "final" and "arithmetic" in help_[0].text
    assert "notes" not in help_[0].text


async def test_toolbox_schema_and_invoke() -> None:
    box = Toolbox()
    names = [t["function"]["name"] for t in box.openai_tools()]
    assert names == ["calculate", "convert_units", "current_time", "set_timer"]
    out: list[Any] = [
        e
        async for e in box.invoke("convert_units", {"value": 1, "from_unit": "in", "to_unit": "cm"})
    ]
    assert out[-1].data["value"] == pytest.approx(2.54)
    with pytest.raises(ToolError):
        [e async for e in box.invoke("rm_rf", {})]
    with pytest.raises(ToolError):
        [e async for e in box.invoke("calculate", {"expression": 5})]
    assert math.isclose(calculate("e")[1], math.e)
