"""A call's data channels and the dialect each one speaks.

    label `events`      MicroturnDialect   Microturn's own events (signaling/events.py)
    label `oai-events`  RealtimeDialect    OpenAI's Realtime events (signaling/realtime.py)

The call speaks one language internally: it parses each client message through the dialect of
the channel it came on, into the same small events (`InputText`, `SessionUpdate`, ...), and it
sends its own events (`output_text.delta`, `output_audio.started`, ...) to every channel, each
dialect turning them into what its clients expect. Fields whose name starts with `_` are hints
for dialects that need more than Microturn's events say (which utterance a text delta belongs to,
what was heard of it); types that start with `_` are such hints alone. Microturn's dialect drops
both, so its clients see exactly the documented events.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from aiortc import RTCDataChannel

from signaling import events

log = logging.getLogger(__name__)


class Dialect(Protocol):
    def parse(self, message: str | bytes) -> object:
        """One client message as an event (events.ClientEvent, or one of the dialect's own, e.g.
        realtime.TruncateItem), or EventError."""
        ...

    def encode(self, type_: str, fields: dict[str, Any]) -> list[str]:
        """The messages one of the call's events becomes (maybe none)."""
        ...

    def acknowledge(self, ok: bool = True) -> list[str]:
        """The answers to the event `parse` returned last, once the call handled it (`ok`: the
        call could do it)."""
        ...


class MicroturnDialect:
    def parse(self, message: str | bytes) -> events.ClientEvent:
        return events.parse_client_event(message)

    def encode(self, type_: str, fields: dict[str, Any]) -> list[str]:
        if type_.startswith("_"):
            return []
        return [events.encode(type_, **{k: v for k, v in fields.items() if not k.startswith("_")})]

    def acknowledge(self, ok: bool = True) -> list[str]:
        return []


class EventChannel:
    """One open data channel of a call and its dialect."""

    def __init__(self, channel: RTCDataChannel, dialect: Dialect, call_id: str) -> None:
        self.channel = channel
        self.dialect = dialect
        self.call_id = call_id

    @property
    def label(self) -> str:
        return str(self.channel.label)

    @property
    def open(self) -> bool:
        return bool(self.channel.readyState == "open")

    def send(self, type_: str, **fields: Any) -> None:
        self.send_messages(self.dialect.encode(type_, fields))

    def send_messages(self, messages: list[str]) -> None:
        if not messages or not self.open:
            return
        try:
            for message in messages:
                self.channel.send(message)
        except Exception as exc:  # a channel closing under us is not the call's failure
            log.debug("call %s: could not send on %s: %s", self.call_id, self.label, exc)
