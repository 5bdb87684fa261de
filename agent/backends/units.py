"""Unit conversion: length, mass, time, volume, speed, area, data, energy, temperature."""

from __future__ import annotations

import re
from typing import Any

from agent.backends.tool_types import ToolError

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
