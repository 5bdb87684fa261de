import json

import pytest

from signaling import events
from signaling.events import EventError, InputText, OutputAudioPlayed, SessionUpdate


def test_known_events_parse() -> None:
    assert events.parse_client_event('{"type":"input_text","text":"hi"}') == InputText("hi")
    assert events.parse_client_event(
        '{"type":"session.update","instructions":"be brief"}'
    ) == SessionUpdate("be brief")
    assert events.parse_client_event(
        '{"type":"output_audio.played","microturn":3,"played_ms":120}'
    ) == OutputAudioPlayed(3, 120)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "invalid_json"),
        ("[1,2]", "invalid_event"),
        ('{"text":"no type"}', "invalid_event"),
        ('{"type":"input_text"}', "invalid_event"),
        ('{"type":"input_text","text":""}', "invalid_event"),
        ('{"type":"input_text","text":5}', "invalid_event"),
        ('{"type":"output_audio.played","microturn":true,"played_ms":1}', "invalid_event"),
        ('{"type":"output_audio.played","microturn":-1,"played_ms":1}', "invalid_event"),
        ('{"type":"explode"}', "unknown_event"),
        (b'{"type":"input_text","text":"bytes"}', "invalid_event"),
        (json.dumps({"type": "input_text", "text": "x" * 20000}), "message_too_large"),
        ("[" * 100000 + "]" * 100000, "message_too_large"),
    ],
)
def test_bad_messages_raise_event_errors_with_codes(message: str | bytes, code: str) -> None:
    with pytest.raises(EventError) as info:
        events.parse_client_event(message)
    assert info.value.code == code
    assert info.value.message


def test_deeply_nested_json_within_the_size_limit_is_an_error_not_a_crash() -> None:
    with pytest.raises(EventError):
        events.parse_client_event("[" * 5000 + "]" * 5000)


def test_encode_is_compact_json_with_type() -> None:
    assert json.loads(events.encode("error", code="x", message="y")) == {
        "type": "error",
        "code": "x",
        "message": "y",
    }
