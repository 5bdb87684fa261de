"""OpenAI's Realtime WebRTC shape, side by side with Microturn's own (docs/api.md, "OpenAI Realtime").

    POST /v1/realtime/calls (SDP in, SDP out)      routes.py: the same call as POST /v1/calls
    data channel `oai-events`                      RealtimeDialect: OpenAI's events <-> micro-turns

Client events, mapped onto what a Microturn client can do:

    session.update {session: {instructions}}        SessionUpdate      -> session.updated
    conversation.item.create {item: message,        InputText (user),  -> conversation.item.added,
        content: [{type: input_text, text}]}        SessionUpdate (system)  conversation.item.done
    conversation.item.truncate {item_id,            TruncateItem: the   -> conversation.item.truncated
        content_index, audio_end_ms}                transcript cut to what was heard
    anything else                                   error `unsupported_event`, the call goes on

Server events, from the call's own (one utterance of the model = one response with one assistant
audio item `item_<micro-turn it started at>`; text while silent = a text response):

    session.created              session.created {session}
    output_audio.started         response.created, response.output_item.added,
                                 response.content_part.added, output_audio_buffer.started
    output_text.delta (speech)   response.output_audio_transcript.delta
    output_text.delta (silent)   response.output_text.delta (then .done and response.done at the
                                 end of its utterance)
    output_audio.stopped         response.output_audio_transcript.done (what was heard),
                                 response.content_part.done, response.output_item.done,
                                 response.done (`cancelled` when the user cut in),
                                 output_audio_buffer.stopped
    error                        error {error: {type, code, message, event_id}}
    agent.task, session.ended    as they are: Microturn's own, beyond OpenAI's
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from signaling import events
from signaling.events import MAX_COUNTER, MAX_TEXT_CHARS, EventError, check_text, shown

REALTIME_LABEL = "oai-events"
MAX_ID_CHARS = 64
MAX_CONTENT_PARTS = 16
SUPPORTED = ("session.update", "conversation.item.create", "conversation.item.truncate")
PASSED_THROUGH = frozenset({"agent.task", "session.ended", "session.restarted"})
SERVER_ERRORS = frozenset({"step_failed", "internal_error", "agent_unavailable"})
_SPEECH_ITEM = re.compile(r"^item_([0-9]{1,12})$")


@dataclass(frozen=True)
class TruncateItem:
    """The client heard `audio_end_ms` of the model's utterance that started at `utterance`."""

    item_id: str
    utterance: int
    content_index: int
    audio_end_ms: int


def speech_item(utterance: int) -> str:
    return f"item_{utterance}"


def _object(obj: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = obj.get(name)
    if not isinstance(value, dict):
        raise EventError("invalid_event", f"{where}: '{name}' must be an object")
    return value


def _int(obj: dict[str, Any], name: str, where: str, default: int | None = None) -> int:
    value = obj.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNTER:
        raise EventError("invalid_event", f"{where}: '{name}' must be an integer >= 0")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise EventError("invalid_event", f"{where} must be a string")
    check_text(value, where)
    if len(value) > MAX_TEXT_CHARS:
        raise EventError("invalid_event", f"{where} exceeds {MAX_TEXT_CHARS} characters")
    return value


def _client_id(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise EventError("invalid_event", f"{where} must be a string of 1 to {MAX_ID_CHARS} chars")
    check_text(value, where)
    return value


class RealtimeDialect:
    """One `oai-events` channel: parses OpenAI's client events and words the call's events as
    OpenAI's server events (state: the open response, ids, what the client's last event was)."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.model = ""
        self.instructions = ""
        self._ids = itertools.count(1)
        self._items = itertools.count(1)
        self._client_event_id: str | None = None
        self._ack: list[tuple[str, dict[str, Any]]] = []  # answers to the last parsed event
        self._truncate: TruncateItem | None = None
        self._speech: int | None = None  # the utterance whose response is open
        self._transcript = ""
        self._text: tuple[str, str] | None = None  # an open text response: (response, item)
        self._text_so_far = ""

    # -- client events --------------------------------------------------------------------------
    def parse(self, message: str | bytes) -> events.ClientEvent | TruncateItem:
        self._ack, self._truncate, self._client_event_id = [], None, None
        obj = events.load_message(message)
        event_id = obj.get("event_id")
        if isinstance(event_id, str) and len(event_id) <= MAX_ID_CHARS:
            self._client_event_id = shown(event_id)
        kind = obj["type"]
        if kind == "session.update":
            return self._session_update(obj)
        if kind == "conversation.item.create":
            return self._item_create(obj)
        if kind == "conversation.item.truncate":
            return self._item_truncate(obj)
        raise EventError(
            "unsupported_event",
            f"{shown(kind)!r} is not supported by Microturn's Realtime endpoint; it takes "
            f"{', '.join(SUPPORTED)} (the model takes turns itself every 200 ms: no "
            "response.create or input_audio_buffer events are needed)",
        )

    def _session_update(self, obj: dict[str, Any]) -> events.SessionUpdate:
        session = _object(obj, "session", "session.update")
        instructions = None
        if "instructions" in session:
            instructions = _text(session["instructions"], "session.update: session.instructions")
            self.instructions = instructions
        self._ack = [("session.updated", {"session": self.session()})]
        return events.SessionUpdate(instructions)

    def _item_create(self, obj: dict[str, Any]) -> events.InputText | events.SessionUpdate:
        where = "conversation.item.create"
        item = _object(obj, "item", where)
        if item.get("type", "message") != "message":
            raise EventError(
                "unsupported_item",
                f"{where}: items of type {shown(str(item.get('type')))!r} are not supported; "
                "only messages with input_text",
            )
        role = item.get("role")
        if role not in ("user", "system"):
            raise EventError(
                "unsupported_item",
                f"{where}: only 'user' and 'system' messages are supported (the assistant's "
                "turns are the model's own speech)",
            )
        content = item.get("content")
        if not isinstance(content, list) or not 0 < len(content) <= MAX_CONTENT_PARTS:
            raise EventError("invalid_event", f"{where}: item.content must be a list of parts")
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "text"):
                kind = part.get("type") if isinstance(part, dict) else None
                raise EventError(
                    "unsupported_content",
                    f"{where}: content of type {shown(str(kind))!r} is not supported; "
                    "send text as input_text (audio goes in the microphone track)",
                )
            texts.append(_text(part.get("text"), f"{where}: item.content[].text"))
        text = "\n".join(texts)
        if not text.strip():
            raise EventError("invalid_event", f"{where}: the message has no text")
        if len(text) > MAX_TEXT_CHARS:
            raise EventError("invalid_event", f"{where}: text exceeds {MAX_TEXT_CHARS} chars")
        item_id = _client_id(item.get("id"), f"{where}: item.id") or f"item_c{next(self._items)}"
        added = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": role,
            "status": "completed",
            "content": [{"type": "input_text", "text": text}],
        }
        self._ack = [
            ("conversation.item.added", {"previous_item_id": None, "item": added}),
            ("conversation.item.done", {"previous_item_id": None, "item": added}),
        ]
        if role == "system":
            self.instructions = text
            return events.SessionUpdate(text)
        return events.InputText(text)

    def _item_truncate(self, obj: dict[str, Any]) -> TruncateItem:
        where = "conversation.item.truncate"
        item_id = obj.get("item_id")
        if not isinstance(item_id, str):
            raise EventError("invalid_event", f"{where}: 'item_id' must be a string")
        content_index = _int(obj, "content_index", where, default=0)
        audio_end_ms = _int(obj, "audio_end_ms", where)
        match = _SPEECH_ITEM.match(item_id)
        if match is None or content_index != 0:
            raise EventError(
                "item_not_found",
                f"{where}: no assistant audio item {shown(item_id)!r} (content {content_index})",
            )
        self._truncate = TruncateItem(item_id, int(match.group(1)), content_index, audio_end_ms)
        return self._truncate

    def acknowledge(self, ok: bool = True) -> list[str]:
        truncate, self._truncate = self._truncate, None
        if truncate is not None:
            if not ok:
                return self.encode(
                    "error",
                    {
                        "code": "item_not_found",
                        "message": f"{truncate.item_id!r} is not the latest assistant audio "
                        "item; only that one can be truncated",
                    },
                )
            fields = {
                "item_id": truncate.item_id,
                "content_index": truncate.content_index,
                "audio_end_ms": truncate.audio_end_ms,
            }
            return [self._event("conversation.item.truncated", fields)]
        ack, self._ack = self._ack, []
        return [self._event(type_, fields) for type_, fields in ack]

    # -- server events --------------------------------------------------------------------------
    def session(self) -> dict[str, Any]:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": f"sess_{self.call_id}",
            "model": self.model,
            "output_modalities": ["audio"],
            "instructions": self.instructions,
        }

    def _event(self, type_: str, fields: dict[str, Any]) -> str:
        return events.encode(type_, event_id=f"event_{next(self._ids)}", **fields)

    def encode(self, type_: str, fields: dict[str, Any]) -> list[str]:
        public = {k: v for k, v in fields.items() if not k.startswith("_")}
        if type_ == "session.created":
            self.model = str(fields.get("model", ""))
            self.instructions = str(fields.get("_instructions") or "")
            return [self._event("session.created", {"session": self.session()})]
        if type_ == "output_audio.started":
            return self._close_text() + self._speech_started(int(fields["microturn"]))
        if type_ == "output_text.delta":
            return self._text_delta(str(fields["text"]), str(fields.get("_part", "text")), fields)
        if type_ == "_text.ended":
            return self._close_text()
        if type_ == "output_audio.stopped":
            return self._speech_stopped(fields)
        if type_ == "error":
            kind = (
                "server_error" if fields.get("code") in SERVER_ERRORS else "invalid_request_error"
            )
            error = {
                "type": kind,
                "code": fields.get("code"),
                "message": fields.get("message"),
                "param": None,
                "event_id": self._client_event_id,
            }
            return [self._event("error", {"error": error})]
        if type_ in PASSED_THROUGH:
            return [self._event(type_, public)]
        return []

    # One response holds one assistant message item with one content part (audio or text).
    def _opened(self, response_id: str, item_id: str, part: dict[str, Any]) -> list[str]:
        return [
            self._event("response.created", {"response": _response(response_id, "in_progress")}),
            self._event(
                "response.output_item.added",
                {"response_id": response_id, "output_index": 0, "item": _item(item_id)},
            ),
            self._event("response.content_part.added", {**_at(response_id, item_id), "part": part}),
        ]

    def _closed(
        self, response_id: str, item_id: str, part: dict[str, Any], cut: bool = False
    ) -> list[str]:
        item = _item(item_id, "incomplete" if cut else "completed", [part])
        response = _response(response_id, "cancelled" if cut else "completed", [item])
        if cut:
            response["status_details"] = {"type": "cancelled", "reason": "turn_detected"}
        return [
            self._event("response.content_part.done", {**_at(response_id, item_id), "part": part}),
            self._event(
                "response.output_item.done",
                {"response_id": response_id, "output_index": 0, "item": item},
            ),
            self._event("response.done", {"response": response}),
        ]

    def _speech_started(self, utterance: int) -> list[str]:
        self._speech, self._transcript = utterance, ""
        response_id = f"resp_{utterance}"
        opened = self._opened(
            response_id, speech_item(utterance), {"type": "audio", "transcript": ""}
        )
        return [*opened, self._event("output_audio_buffer.started", {"response_id": response_id})]

    def _speech_stopped(self, fields: dict[str, Any]) -> list[str]:
        utterance = fields.get("_utterance", self._speech)
        if utterance is None:
            return []
        self._speech = None
        heard = str(fields.get("_heard", self._transcript))
        response_id, item_id = f"resp_{utterance}", speech_item(int(utterance))
        done = self._event(
            "response.output_audio_transcript.done",
            {**_at(response_id, item_id), "transcript": heard},
        )
        part = {"type": "audio", "transcript": heard}
        closed = self._closed(response_id, item_id, part, cut=bool(fields.get("_truncated")))
        stopped = self._event("output_audio_buffer.stopped", {"response_id": response_id})
        return [done, *closed, stopped]

    def _text_delta(self, text: str, part: str, fields: dict[str, Any]) -> list[str]:
        if part == "rest":  # the unheard rest of an utterance the user cut off: not said
            return []
        if part == "speech" and self._speech is not None:
            self._transcript += text
            at = _at(f"resp_{self._speech}", speech_item(self._speech))
            return [self._event("response.output_audio_transcript.delta", {**at, "delta": text})]
        out: list[str] = []
        if self._text is None:
            k = int(fields.get("microturn", 0))
            self._text, self._text_so_far = (f"resp_t{k}", f"item_t{k}"), ""
            out += self._opened(*self._text, {"type": "text", "text": ""})
        self._text_so_far += text
        delta = {**_at(*self._text), "delta": text}
        out.append(self._event("response.output_text.delta", delta))
        if fields.get("_end"):
            out += self._close_text()
        return out

    def _close_text(self) -> list[str]:
        if self._text is None:
            return []
        (response_id, item_id), text = self._text, self._text_so_far
        self._text, self._text_so_far = None, ""
        done = self._event("response.output_text.done", {**_at(response_id, item_id), "text": text})
        return [done, *self._closed(response_id, item_id, {"type": "text", "text": text})]


def _response(response_id: str, status: str, output: list[Any] | None = None) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "output": output or [],
    }


def _item(
    item_id: str, status: str = "in_progress", content: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content or [],
    }


def _at(response_id: str, item_id: str) -> dict[str, Any]:
    """Where a content part is: its response, item, and indices (one of each here)."""
    return {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
