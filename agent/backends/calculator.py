"""The calculator: arithmetic by walking a Python `ast` with a whitelist of nodes and functions.

Nothing is ever `eval`ed; exponents, integer sizes, factorials, `round`'s digits and the
expression's length are bounded, so no request can pin a CPU (and it runs in the sandbox anyway).
`extract_expression` reads the arithmetic out of a request like "what is 12 x 7?", linearly."""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any

from agent.backends.tool_types import ToolError

MAX_EXPRESSION_CHARS = 300
MAX_AST_NODES = 200
MAX_INT_BITS = 4096  # about 1233 decimal digits
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 1000
MAX_ROUND_DIGITS = 1000  # round(x, -n) computes 10**n

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
