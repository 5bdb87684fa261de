"""The `events` data channel protocol: one JSON object per message, each with a `type`.

Client -> server messages are parsed into small frozen dataclasses here, so the call object never
sees raw JSON; anything malformed becomes an `EventError` whose code and message go back to the
client as an `error` event. The call stays up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

EVENTS_LABEL = "events"
MAX_MESSAGE_BYTES = 16 * 1024
MAX_TEXT_CHARS = 4000


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


def _field(obj: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
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
    return value


def parse_client_event(message: str | bytes) -> ClientEvent:
    """Parse one client message or raise EventError."""
    if isinstance(message, bytes):
        raise EventError("invalid_event", "events are JSON text messages, not binary")
    if len(message.encode()) > MAX_MESSAGE_BYTES:
        raise EventError("message_too_large", f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
    try:
        obj = json.loads(message)
    except (json.JSONDecodeError, RecursionError):
        raise EventError("invalid_json", "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise EventError("invalid_event", "message must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise EventError("invalid_event", "message has no string 'type'")
    if kind == "input_text":
        text = _field(obj, "text", str)
        if not text.strip():
            raise EventError("invalid_event", "input_text: 'text' is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise EventError("invalid_event", f"input_text: 'text' exceeds {MAX_TEXT_CHARS} chars")
        return InputText(text)
    if kind == "session.update":
        instructions = _field(obj, "instructions", str, required=False)
        if instructions is not None and len(instructions) > MAX_TEXT_CHARS:
            raise EventError(
                "invalid_event", f"session.update: instructions exceed {MAX_TEXT_CHARS}"
            )
        return SessionUpdate(instructions)
    if kind == "output_audio.played":
        microturn = _field(obj, "microturn", int)
        played_ms = _field(obj, "played_ms", int)
        if microturn < 0 or played_ms < 0:
            raise EventError("invalid_event", "output_audio.played: values must be >= 0")
        return OutputAudioPlayed(microturn, played_ms)
    raise EventError("unknown_event", f"unknown event type {kind[:64]!r}")


def encode(type_: str, **fields: Any) -> str:
    """One server -> client event as JSON text."""
    return json.dumps({"type": type_, **fields}, separators=(",", ":"))
