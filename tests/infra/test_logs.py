import json
import logging

from infra.logs import JsonFormatter


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("signaling.call", logging.INFO, __file__, 1, msg, args, exc_info)


def test_json_lines_carry_the_call_id() -> None:
    line = JsonFormatter().format(record("call %s: connection %s", "abc123", "connected"))
    entry = json.loads(line)
    assert entry["call_id"] == "abc123"
    assert entry["msg"] == "call abc123: connection connected"
    assert entry["level"] == "INFO" and entry["logger"] == "signaling.call"
    assert entry["ts"].endswith("Z")


def test_json_lines_without_a_call_and_with_an_exception() -> None:
    entry = json.loads(JsonFormatter().format(record("model %s ready", "m", exc=True)))
    assert "call_id" not in entry
    assert "ValueError: boom" in entry["exc"]
