"""OpenAI Realtime client events (signaling/realtime.py): what maps onto micro-turns, clear errors
for the rest, and a total parser (any message: an event or an EventError, nothing else)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling import events
from signaling.realtime import RealtimeDialect, TruncateItem
from tests.signaling.test_fuzz import json_values


def parse(event: dict[str, Any]) -> tuple[object, list[dict[str, Any]]]:
    dialect = RealtimeDialect("c1")
    parsed = dialect.parse(json.dumps(event))
    return parsed, [json.loads(m) for m in dialect.acknowledge(True)]


def message(role: str, *parts: dict[str, Any], **item: Any) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": role, "content": list(parts), **item},
    }


def test_the_supported_events_map_onto_microturn_events_and_are_acknowledged() -> None:
    parsed, acks = parse({"type": "session.update", "session": {"instructions": "be brief"}})
    assert parsed == events.SessionUpdate("be brief")
    assert acks[0]["type"] == "session.updated" and acks[0]["session"]["instructions"] == "be brief"
    parsed, acks = parse({"type": "session.update", "session": {"voice": "marin"}})
    assert parsed == events.SessionUpdate(None), "other session fields are accepted, not used"

    text = {"type": "input_text", "text": "hello"}
    parsed, acks = parse(message("user", text, id="mine"))
    assert parsed == events.InputText("hello")
    assert [a["type"] for a in acks] == ["conversation.item.added", "conversation.item.done"]
    assert acks[0]["item"]["id"] == "mine"
    parsed, _ = parse(message("system", {"type": "input_text", "text": "be kind"}))
    assert parsed == events.SessionUpdate("be kind")

    parsed, acks = parse(
        {"type": "conversation.item.truncate", "item_id": "item_40", "content_index": 0, "audio_end_ms": 900}
    )  # fmt: skip
    assert parsed == TruncateItem("item_40", 40, 0, 900)
    assert acks == [{**acks[0], "type": "conversation.item.truncated", "audio_end_ms": 900}]


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"type": "response.create"}, "unsupported_event"),
        ({"type": "input_audio_buffer.append", "audio": "AAAA"}, "unsupported_event"),
        ({"type": "session.update"}, "invalid_event"),
        ({"type": "session.update", "session": {"instructions": 5}}, "invalid_event"),
        (message("assistant", {"type": "text", "text": "x"}), "unsupported_item"),
        (message("user", {"type": "input_audio", "audio": "AAAA"}), "unsupported_content"),
        (message("user", {"type": "input_text", "text": "  "}), "invalid_event"),
        (message("user", {"type": "input_text", "text": "x" * 5000}), "invalid_event"),
        ({"type": "conversation.item.create", "item": {"type": "function_call_output"}}, "unsupported_item"),
        ({"type": "conversation.item.truncate", "item_id": "item_c1", "audio_end_ms": 1}, "item_not_found"),
        ({"type": "conversation.item.truncate", "item_id": "item_4", "audio_end_ms": -1}, "invalid_event"),
    ],
)  # fmt: skip
def test_everything_else_is_a_clear_error(event: dict[str, Any], code: str) -> None:
    dialect = RealtimeDialect("c1")
    with pytest.raises(events.EventError) as info:
        dialect.parse(json.dumps({"event_id": "e9", **event}))
    assert info.value.code == code and info.value.message
    (error,) = [json.loads(m) for m in dialect.encode("error", {"code": code, "message": "m"})]
    assert error["type"] == "error" and error["error"]["event_id"] == "e9"
    assert error["error"]["type"] == "invalid_request_error" and error["error"]["code"] == code


def test_a_truncate_of_an_item_that_is_not_the_latest_is_refused() -> None:
    dialect = RealtimeDialect("c1")
    dialect.parse(
        json.dumps({"type": "conversation.item.truncate", "item_id": "item_3", "audio_end_ms": 1})
    )
    (error,) = [json.loads(m) for m in dialect.acknowledge(False)]
    assert error["error"]["code"] == "item_not_found"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["type", "session", "item", "item_id", "audio_end_ms", "content_index", "event_id"]),
        json_values
        | st.sampled_from(["session.update", "conversation.item.create", "conversation.item.truncate"]),
        max_size=5,
    ).map(json.dumps)
    | st.text(max_size=100)
)  # fmt: skip
def test_the_realtime_parser_only_ever_raises_event_errors(message: str) -> None:
    dialect = RealtimeDialect("c1")
    try:
        dialect.parse(message)
    except events.EventError as exc:
        assert exc.code and exc.message
        dialect.encode("error", {"code": exc.code, "message": exc.message})
    else:
        dialect.acknowledge(True)
