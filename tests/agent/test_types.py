"""The wire types: encode/decode round trips and clear errors on anything off-contract."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.types import AgentResult, ContextPackage, PackageError, Turn, encode_result_parts
from agent.weave import model_text, parse_ask, queued_event, strip_ask, task_event


def sample() -> ContextPackage:
    return ContextPackage.new(
        "call-1",
        "what is 12*7",
        [
            Turn(0, "user", "speech", "hi"),
            {"microturn": 2, "role": "model", "kind": "text", "text": "hé"},
        ],
        microturn=4,
        frame_jpeg=b"\xff\xd8jpeg",
    )


def test_package_round_trip() -> None:
    package = sample()
    wire = package.encode()
    assert ContextPackage.decode(wire) == package
    assert ContextPackage.decode(wire.encode()) == package
    obj = json.loads(wire)
    assert obj["v"] == 1 and obj["request"] == {"text": "what is 12*7"}
    assert obj["conversation"][1]["text"] == "hé"


def test_package_tolerates_extra_fields() -> None:
    obj = sample().to_wire()
    obj["future_field"] = {"x": 1}
    obj["conversation"][0]["confidence"] = 0.9
    assert ContextPackage.decode(json.dumps(obj)).package_id == obj["package_id"]


def mutate(**changes: Any) -> str:
    obj = sample().to_wire()
    for key, value in changes.items():
        if value is ...:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{nope", "bad_json"),
        ("[]", "not_object"),
        (mutate(v=2), "unsupported_version"),
        (mutate(v="1"), "unsupported_version"),
        (mutate(v=True), "unsupported_version"),
        (mutate(v=...), "missing_field"),
        (mutate(package_id=...), "missing_field"),
        (mutate(package_id=""), "bad_field"),
        (mutate(call_id=7), "bad_field"),
        (mutate(created_at="yesterday"), "bad_field"),
        (mutate(microturn=-1), "bad_field"),
        (mutate(microturn=1.5), "bad_field"),
        (mutate(request={}), "missing_field"),
        (mutate(request="what"), "bad_field"),
        (mutate(conversation={}), "bad_field"),
        (
            mutate(conversation=[{"microturn": 0, "role": "user", "kind": "smell", "text": ""}]),
            "bad_field",
        ),
        (mutate(conversation=["hi"]), "bad_field"),
        (mutate(frame_jpeg_b64="***"), "bad_field"),
        ("x" * (5 * 1024 * 1024), "too_large"),
    ],
)
def test_package_errors(raw: str, code: str) -> None:
    with pytest.raises(PackageError) as info:
        ContextPackage.decode(raw)
    assert info.value.code == code
    assert str(info.value).startswith(code)


def test_result_round_trip_and_errors() -> None:
    result = AgentResult("p", 3, "final", "84", {"value": 84})
    assert AgentResult.decode(result.encode()) == result
    assert json.loads(result.encode()) == {
        "package_id": "p",
        "seq": 3,
        "kind": "final",
        "text": "84",
        "data": {"value": 84},
    }
    assert "data" not in json.loads(AgentResult("p", 0, "started").encode())
    for bad in ['{"package_id": "p", "seq": 0, "kind": "done", "text": ""}', '{"seq": 0}', "[]"]:
        with pytest.raises(PackageError):
            AgentResult.decode(bad)


def test_result_parts_splice_any_seq() -> None:
    head, tail = encode_result_parts('p"seq":0,', "partial", 'say "seq":0, ok', {"seq": 0})
    for seq in (0, 7, 12345):
        decoded = AgentResult.decode(head + str(seq) + tail)
        assert decoded.seq == seq and decoded.text == 'say "seq":0, ok'
        assert decoded.package_id == 'p"seq":0,' and decoded.data == {"seq": 0}


def test_weave_helpers() -> None:
    assert parse_ask("/ask what is 12*7") == "what is 12*7"
    assert parse_ask("  /ASK  time ") == "time"
    assert parse_ask("/ask ") is None and parse_ask("ask me") is None
    assert strip_ask("/ask x") == "x" and strip_ask("x") == "x"
    assert queued_event("p", "x") == {"task_id": "p", "status": "queued", "text": "x"}
    final = AgentResult("p", 1, "final", "12*7 = 84", {"value": 84})
    assert task_event(final) == {
        "task_id": "p",
        "status": "done",
        "text": "12*7 = 84",
        "data": {"value": 84},
    }
    assert task_event(AgentResult("p", 0, "started")) == {"task_id": "p", "status": "running"}
    assert task_event(AgentResult("p", 2, "error", "boom"))["status"] == "failed"
    assert task_event(AgentResult("p", 2, "partial", "x"))["status"] == "partial"
    assert model_text(final) == "[agent] 12*7 = 84\n"
    assert model_text(AgentResult("p", 0, "started")) is None
    assert model_text(AgentResult("p", 1, "partial", "x")) is None
    assert model_text(AgentResult("p", 1, "partial", "x"), partials=True) == "[agent…] x\n"
    assert model_text(AgentResult("p", 1, "error", "boom")) == "[agent error] boom\n"


def test_a_cut_turn_says_so_on_the_wire_and_other_turns_are_unchanged() -> None:
    package = ContextPackage.new(
        "call-1",
        "what did you say",
        [Turn(0, "model", "speech", "let me", truncated=True), Turn(5, "user", "text", "stop")],
    )
    wire = json.loads(package.encode())["conversation"]
    assert wire == [
        {"microturn": 0, "role": "model", "kind": "speech", "text": "let me", "truncated": True},
        {"microturn": 5, "role": "user", "kind": "text", "text": "stop"},
    ]
    assert ContextPackage.decode(package.encode()) == package
    bad = package.to_wire()
    bad["conversation"][0]["truncated"] = "yes"
    with pytest.raises(PackageError) as info:
        ContextPackage.decode(json.dumps(bad))
    assert info.value.code == "bad_field"
