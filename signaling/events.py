"""The `events` data channel protocol: one JSON object per message, each with a `type`.

Client -> server messages are parsed into small frozen dataclasses here, so the call object never
sees raw JSON; anything malformed becomes an `EventError` whose code and message go back to the
client as an `error` event. The call stays up.

The parser is total: whatever a peer sends (integers past Python's 4300-digit string limit, floats
that overflow, NaN and Infinity, lone surrogates in escapes, nesting deeper than the recursion
limit, non-UTF-8 bytes) it returns an event or raises `EventError`, and costs at most a linear pass
over the (size-capped) message. Numbers are parsed by bounded hooks, so no huge integer is built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

EVENTS_LABEL = "events"
MAX_MESSAGE_BYTES = 16 * 1024
MAX_TEXT_CHARS = 4000
MAX_NUMBER_CHARS = 24  # a JSON number literal longer than this is refused before it is built
MAX_COUNTER = 10**12  # micro-turns and milliseconds: ~6,000 years of call, still an int64


class EventError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class InputText:
    text: str


@dataclass(frozen=True)
class SessionUpdate:
    instructions: str | None


@dataclass(frozen=True)
class OutputAudioPlayed:
    microturn: int
    played_ms: int


ClientEvent = InputText | SessionUpdate | OutputAudioPlayed


def field_of(obj: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    if name not in obj:
        if required:
            raise EventError("invalid_event", f"{obj.get('type')}: missing field {name!r}")
        return None
    value = obj[name]
    # bool is an int in Python; a JSON true is not a micro-turn number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise EventError(
            "invalid_event", f"{obj.get('type')}: field {name!r} must be {kind.__name__}"
        )
    if isinstance(value, str):
        check_text(value, f"{obj.get('type')}: field {name!r}")
    return value


def check_text(text: str, where: str) -> None:
    """Refuse text that cannot be UTF-8 encoded (a lone surrogate from a JSON escape): it would
    poison everything that later serialises it (the transcript, every context package)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise EventError("invalid_text", f"{where} is not valid Unicode (lone surrogate)") from None


def _bounded_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise EventError("invalid_number", f"numbers are limited to {MAX_NUMBER_CHARS} characters")
    return int(literal)


def _finite_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise EventError("invalid_number", f"numbers are limited to {MAX_NUMBER_CHARS} characters")
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise EventError("invalid_number", "numbers must be finite")
    return value


def _no_constants(name: str) -> float:
    raise EventError("invalid_number", f"{name} is not a JSON number")


def load_message(message: str | bytes) -> dict[str, Any]:
    """One client message as a JSON object with a string `type`, or EventError: the size cap
    and the total parser every dialect of the channel shares (this one, signaling/realtime.py)."""
    if isinstance(message, bytes):
        raise EventError("invalid_event", "events are JSON text messages, not binary")
    if not isinstance(message, str):
        raise EventError("invalid_event", "events are JSON text messages")
    # A str from the channel is valid UTF-8; "surrogatepass" only keeps the size check total.
    if len(message) > MAX_MESSAGE_BYTES or (
        len(message.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES
    ):
        raise EventError("message_too_large", f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
    try:
        obj = json.loads(
            message,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            parse_constant=_no_constants,
        )
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise EventError("invalid_json", "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise EventError("invalid_event", "message must be a JSON object")
    if not isinstance(obj.get("type"), str):
        raise EventError("invalid_event", "message has no string 'type'")
    return obj


def shown(kind: str) -> str:
    """An event type fit to quote back in an error (cut, no lone surrogate)."""
    return kind[:64].encode("utf-8", "replace").decode("utf-8")


def parse_client_event(message: str | bytes) -> ClientEvent:
    """Parse one client message or raise EventError."""
    obj = load_message(message)
    kind = obj["type"]
    if kind == "input_text":
        text = field_of(obj, "text", str)
        if not text.strip():
            raise EventError("invalid_event", "input_text: 'text' is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise EventError("invalid_event", f"input_text: 'text' exceeds {MAX_TEXT_CHARS} chars")
        return InputText(text)
    if kind == "session.update":
        instructions = field_of(obj, "instructions", str, required=False)
        if instructions is not None and len(instructions) > MAX_TEXT_CHARS:
            raise EventError(
                "invalid_event", f"session.update: instructions exceed {MAX_TEXT_CHARS}"
            )
        return SessionUpdate(instructions)
    if kind == "output_audio.played":
        microturn = field_of(obj, "microturn", int)
        played_ms = field_of(obj, "played_ms", int)
        if not (0 <= microturn <= MAX_COUNTER and 0 <= played_ms <= MAX_COUNTER):
            raise EventError(
                "invalid_event", f"output_audio.played: values must be in 0..{MAX_COUNTER}"
            )
        return OutputAudioPlayed(microturn, played_ms)
    raise EventError("unknown_event", f"unknown event type {shown(kind)!r}")


def encode(type_: str, **fields: Any) -> str:
    """One server -> client event as JSON text."""
    return json.dumps({"type": type_, **fields}, separators=(",", ":"))
