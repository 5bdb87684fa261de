"""The tools every background model gets, with no network: calculator, units, clock, timers, notes.

Each tool is a plain function (easy to test) plus an entry in `Toolbox`, which gives the OpenAI
function-calling schema and one calling convention for both backends:

    async for event in toolbox.invoke(name, args):   # ToolProgress..., then one ToolResult
        ...

The calculator walks a Python `ast` with a whitelist of nodes and functions; nothing is ever
`eval`ed, and exponents, integer sizes, `round`'s digits and the expression length are bounded so
a request cannot pin a CPU. Even so, `Toolbox.invoke` runs the calculator and the unit converter
in the `Sandbox` (child processes with a hard time limit), never on the event loop: a bound that
was missed costs a killed child, not stalled media. The parsers here are linear in their input.
"""

from __future__ import annotations

import ast
import asyncio
import math
import operator
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent import slots
from agent.backends.tool_types import ToolError, ToolEvent, ToolProgress, ToolResult
from agent.sandbox import Sandbox

if TYPE_CHECKING:
    from agent.backends.notes import NotesIndex

__all__ = ["ToolError", "ToolEvent", "ToolProgress", "ToolResult", "Toolbox"]

MAX_EXPRESSION_CHARS = 300
MAX_AST_NODES = 200
MAX_INT_BITS = 4096  # about 1233 decimal digits
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 1000
MAX_ROUND_DIGITS = 1000  # round(x, -n) computes 10**n
MAX_TIMER_S = 3600.0


# -- calculator ------------------------------------------------------------------------------------
Number = int | float

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def _log(x: Number, base: Number | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


def _factorial(n: Number) -> int:
    if not isinstance(n, int) and not (isinstance(n, float) and n.is_integer()):
        raise ToolError("factorial needs a whole number")
    if not 0 <= n <= MAX_FACTORIAL:
        raise ToolError(f"factorial is limited to 0..{MAX_FACTORIAL}")
    return math.factorial(int(n))


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int):
        raise ToolError("round's digits must be a whole number")
    if abs(ndigits) > MAX_ROUND_DIGITS:
        raise ToolError(f"round's digits are limited to -{MAX_ROUND_DIGITS}..{MAX_ROUND_DIGITS}")
    return round(x, ndigits)


_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "log": _log,
    "ln": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "abs": abs,
    "round": _round,
    "floor": math.floor,
    "ceil": math.ceil,
    "min": min,
    "max": max,
    "factorial": _factorial,
    "hypot": math.hypot,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _check_int(value: Number) -> Number:
    if not isinstance(value, int | float):  # (-8) ** 0.5 is complex
        raise ToolError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError("the result is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    return value


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ToolError("only numbers are allowed")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise ToolError(f"exponents are limited to {MAX_EXPONENT}")
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if max(1, abs(left).bit_length()) * right > MAX_INT_BITS * 2:
                    raise ToolError("the result is too large")
        try:
            return _check_int(_BINOPS[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError("the result is too large") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check_int(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(f"unknown name {node.id!r}")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        fn = _FUNCTIONS.get(node.func.id)
        if fn is None:
            raise ToolError(f"unknown function {node.func.id!r}")
        args = [_eval(a) for a in node.args]
        try:
            return _check_int(fn(*args))
        except (ValueError, TypeError) as exc:
            raise ToolError(f"{node.func.id}: {exc}") from None
        except OverflowError:
            raise ToolError("the result is too large") from None
    raise ToolError(f"not allowed in an expression: {type(node).__name__}")


def calculate(expression: str) -> tuple[str, Number]:
    """Evaluate arithmetic safely; returns (normalized expression, value)."""
    expr = expression.strip()
    if not expr:
        raise ToolError("empty expression")
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expressions are limited to {MAX_EXPRESSION_CHARS} characters")
    expr = expr.replace("×", "*").replace("÷", "/").replace("^", "**").replace("−", "-")
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError):
        raise ToolError(f"cannot parse {expression!r} as arithmetic") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_AST_NODES:
        raise ToolError("the expression is too long")
    value = _eval(tree)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            value = int(value)
        else:
            value = float(f"{value:.12g}")
    return expr, value


_WORD_OPS = [
    (r"\bsquare root of\s*", "sqrt "),
    (r"\bmultiplied by\b", "*"),
    (r"\bdivided by\b", "/"),
    (r"\bto the power of\b", "**"),
    (r"\btimes\b", "*"),
    (r"\bplus\b", "+"),
    (r"\bminus\b", "-"),
    (r"\bover\b", "/"),
    (r"\bmod\b", "%"),
    (r"\bsquared\b", "**2"),
    (r"\bcubed\b", "**3"),
]
_CALC_PREFIX = re.compile(
    r"^(please\s+)?(what\s+is|what's|whats|how\s+much\s+is|calculate|compute|evaluate|solve|calc)"
    r"\s*:?\s*",
    re.IGNORECASE,
)
_CALC_CHARS = re.compile(r"^[0-9a-z_+\-*/%().,\s]+$")


def extract_expression(text: str) -> str | None:
    """The arithmetic in a request like "what is 12 x 7?", or None if it is not arithmetic."""
    s = text.strip().lower()
    s = _CALC_PREFIX.sub("", s).strip().rstrip("?!.=").strip()
    if not s:
        return None
    s = s.replace("×", "*").replace("÷", "/").replace("^", "**").replace("−", "-")
    s = re.sub(r"(\d)\s*x\s*(?=[\d(])", r"\1*", s)  # 12 x 7
    s = re.sub(
        r"(?<![\d.])([\d.]+)\s*%\s*of\s*", r"\1/100*", s
    )  # 15% of 80 (linear: a run starts once)
    for pattern, repl in _WORD_OPS:
        s = re.sub(pattern, repl, s)
    s = re.sub(r"sqrt\s+([\d.]+)", r"sqrt(\1)", s)
    if "(" not in s:
        s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)  # 1,000,000
    s = s.strip()
    if not s or not _CALC_CHARS.match(s) or not re.search(r"\d|\bpi\b|\btau\b", s):
        return None
    # Words left over that are neither functions nor constants mean this is not arithmetic.
    for word in re.findall(r"[a-z_]+", s):
        if word not in _FUNCTIONS and word not in _CONSTANTS:
            return None
    return s


def format_number(value: Number) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.10g}"


# -- unit conversion -------------------------------------------------------------------------------
# unit -> (dimension, factor to the dimension's base unit)
_UNITS: dict[str, tuple[str, float]] = {}
_ALIASES: dict[str, str] = {}


def _unit(name: str, dimension: str, factor: float, *aliases: str) -> None:
    _UNITS[name] = (dimension, factor)
    _ALIASES[name] = name
    for alias in aliases:
        _ALIASES[alias] = name


_UNIT_TABLE: list[tuple[Any, ...]] = [
    ("m", "length", 1.0, "meter", "meters", "metre", "metres"),
    ("km", "length", 1000.0, "kilometer", "kilometers", "kilometre", "kilometres", "kms"),
    ("cm", "length", 0.01, "centimeter", "centimeters", "centimetre", "centimetres"),
    ("mm", "length", 0.001, "millimeter", "millimeters", "millimetre", "millimetres"),
    ("mi", "length", 1609.344, "mile", "miles"),
    ("yd", "length", 0.9144, "yard", "yards", "yds"),
    ("ft", "length", 0.3048, "foot", "feet"),
    ("in", "length", 0.0254, "inch", "inches"),
    ("nmi", "length", 1852.0, "nautical mile", "nautical miles"),
    ("kg", "mass", 1.0, "kilogram", "kilograms", "kilo", "kilos", "kgs"),
    ("g", "mass", 0.001, "gram", "grams"),
    ("mg", "mass", 1e-6, "milligram", "milligrams"),
    ("t", "mass", 1000.0, "tonne", "tonnes", "metric ton", "metric tons"),
    ("lb", "mass", 0.45359237, "lbs", "pound", "pounds"),
    ("oz", "mass", 0.028349523125, "ounce", "ounces"),
    ("st", "mass", 6.35029318, "stone", "stones"),
    ("s", "time", 1.0, "sec", "secs", "second", "seconds"),
    ("ms", "time", 0.001, "millisecond", "milliseconds"),
    ("min", "time", 60.0, "mins", "minute", "minutes"),
    ("h", "time", 3600.0, "hr", "hrs", "hour", "hours"),
    ("day", "time", 86400.0, "days", "d"),
    ("week", "time", 604800.0, "weeks", "wk"),
    ("l", "volume", 1.0, "liter", "liters", "litre", "litres"),
    ("ml", "volume", 0.001, "milliliter", "milliliters", "millilitre", "millilitres"),
    ("m3", "volume", 1000.0, "cubic meter", "cubic meters", "m³"),
    ("gal", "volume", 3.785411784, "gallon", "gallons", "us gallon", "us gallons"),
    ("qt", "volume", 0.946352946, "quart", "quarts"),
    ("pt", "volume", 0.473176473, "pint", "pints"),
    ("cup", "volume", 0.2365882365, "cups"),
    ("floz", "volume", 0.0295735295625, "fl oz", "fluid ounce", "fluid ounces"),
    ("m/s", "speed", 1.0, "meters per second", "metres per second", "mps"),
    ("km/h", "speed", 1 / 3.6, "kph", "kmh", "kilometers per hour", "kilometres per hour"),
    ("mph", "speed", 0.44704, "miles per hour", "mi/h"),
    ("kn", "speed", 0.514444, "knot", "knots", "kt"),
    ("ft/s", "speed", 0.3048, "feet per second", "fps"),
    ("m2", "area", 1.0, "square meter", "square meters", "sq m", "m²"),
    ("km2", "area", 1e6, "square kilometer", "square kilometers", "sq km", "km²"),
    ("ft2", "area", 0.09290304, "square foot", "square feet", "sq ft", "ft²"),
    ("acre", "area", 4046.8564224, "acres"),
    ("ha", "area", 10000.0, "hectare", "hectares"),
    ("B", "data", 1.0, "byte", "bytes"),
    ("bit", "data", 0.125, "bits"),
    ("kB", "data", 1e3, "kb", "kilobyte", "kilobytes"),
    ("MB", "data", 1e6, "mb", "megabyte", "megabytes"),
    ("GB", "data", 1e9, "gb", "gigabyte", "gigabytes"),
    ("TB", "data", 1e12, "tb", "terabyte", "terabytes"),
    ("KiB", "data", 1024.0, "kib", "kibibyte", "kibibytes"),
    ("MiB", "data", 1024.0**2, "mib", "mebibyte", "mebibytes"),
    ("GiB", "data", 1024.0**3, "gib", "gibibyte", "gibibytes"),
    ("J", "energy", 1.0, "j", "joule", "joules"),
    ("kJ", "energy", 1e3, "kj", "kilojoule", "kilojoules"),
    ("cal", "energy", 4.184, "calorie", "calories"),
    ("kcal", "energy", 4184.0, "kilocalorie", "kilocalories"),
    ("Wh", "energy", 3600.0, "wh", "watt hour", "watt hours"),
    ("kWh", "energy", 3.6e6, "kwh", "kilowatt hour", "kilowatt hours"),
    ("C", "temperature", 1.0, "c", "celsius", "centigrade"),
    ("F", "temperature", 1.0, "f", "fahrenheit"),
    ("K", "temperature", 1.0, "k", "kelvin", "kelvins"),
]
for _row in _UNIT_TABLE:
    _unit(*_row)


def _normalize_unit(unit: str) -> str:
    u = unit.strip()
    if u in _ALIASES:
        return _ALIASES[u]
    u = u.lower().replace("°", "").strip()
    u = re.sub(r"^(degrees?|deg)\s+", "", u)
    u = re.sub(r"\s+", " ", u)
    if u in _ALIASES:
        return _ALIASES[u]
    raise ToolError(f"unknown unit {unit!r}")


def _to_kelvin(value: float, unit: str) -> float:
    return {"C": value + 273.15, "F": (value - 32) * 5 / 9 + 273.15, "K": value}[unit]


def _from_kelvin(value: float, unit: str) -> float:
    return {"C": value - 273.15, "F": (value - 273.15) * 9 / 5 + 32, "K": value}[unit]


def convert_units(value: float, from_unit: str, to_unit: str) -> tuple[float, str, str]:
    """Convert; returns (value, canonical from unit, canonical to unit)."""
    src, dst = _normalize_unit(from_unit), _normalize_unit(to_unit)
    (dim_src, f_src), (dim_dst, f_dst) = _UNITS[src], _UNITS[dst]
    if dim_src != dim_dst:
        raise ToolError(f"cannot convert {dim_src} ({src}) to {dim_dst} ({dst})")
    if dim_src == "temperature":
        out = _from_kelvin(_to_kelvin(value, src), dst)
    else:
        out = value * f_src / f_dst
    return float(f"{out:.10g}"), src, dst


_UNIT_WORD = r"[a-z°/²³µ]+(?:\s(?:per\s)?[a-z°/²³]+)?"
_CONVERT = re.compile(
    rf"^(?:convert\s+|what\s+is\s+|what's\s+|how\s+much\s+is\s+)?(-?[\d.,]+)\s*({_UNIT_WORD})\s+"
    rf"(?:to|in|into|as)\s+({_UNIT_WORD})\s*\??$",
    re.IGNORECASE,
)
_HOW_MANY = re.compile(
    rf"^how\s+many\s+({_UNIT_WORD})\s+(?:are\s+)?(?:there\s+)?in\s+(?:a\s+|an\s+|one\s+)?"
    rf"(-?[\d.,]+\s*)?({_UNIT_WORD})\s*\??$",
    re.IGNORECASE,
)


def parse_conversion(text: str) -> tuple[float, str, str] | None:
    """(value, from, to) from "convert 5 km to miles" / "how many feet in a mile", else None."""
    s = text.strip().rstrip("?").strip()
    m = _CONVERT.match(s)
    if m:
        value_s, src, dst = m.group(1), m.group(2), m.group(3)
    else:
        m = _HOW_MANY.match(s)
        if not m:
            return None
        dst, value_s, src = m.group(1), (m.group(2) or "1"), m.group(3)
    try:
        value = float(value_s.replace(",", "").strip())
        _normalize_unit(src)
        _normalize_unit(dst)
    except (ValueError, ToolError):
        return None
    return value, src, dst


# -- clock and timers ------------------------------------------------------------------------------
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


# -- the toolbox -----------------------------------------------------------------------------------
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
