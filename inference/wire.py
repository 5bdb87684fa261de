"""The session protocol on the wire: `microturn infer` workers and the media processes that use them.

One WebSocket per (media process, worker) carries every session the media process holds there,
as binary frames: one kind byte, a fixed little-endian header (`struct`), then the payload.

    worker -> media   HELLO    JSON {protocol, worker_id, model, frame_size, capacity}, once
    media  -> worker  OPEN     req u32 | call_id utf-8
    worker -> media   OPENED   req u32, session u32          (or REFUSED req u32 | reason utf-8)
    media  -> worker  APPEND   session u32, index i64, played_ms i32 (-1: none), frame side u16
                               (0: no frame), text bytes u32 | audio float32 [3200] | frame uint8
                               [side, side, 3] | text utf-8
    worker -> media   OUTPUT   session u32, index i64, flags u8, step_ms, wait_ms, worker_ms f32,
                               batch u16, text bytes u32, delegate bytes u32 | audio float32
                               [3200] | text | delegate
    worker -> media   FAILED   session u32, index i64 | message utf-8   (the model step raised)
    media  -> worker  CLOSE    session u32
    worker -> media   CLOSED   session u32 | reason utf-8   (the worker ended it: shutting down)

Session ids belong to one connection: a stale APPEND can never reach another connection's call.
An append is 12.8 KB of audio plus the frame (40 x 40 x 3 for the shipped model): no codec, no
copy beyond one `bytes` join; decoding is `np.frombuffer`. Anything malformed raises `WireError`
and the receiver drops the connection (its sessions then move, docs/api.md).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.protocol import MICROTURN_SAMPLES, MicroTurnInput, MicroTurnOutput

PROTOCOL = 1
PATH = "/v1/sessions"  # the worker's WebSocket route
MAX_TEXT_BYTES = 64 * 1024  # typed text or a delegation in one micro-turn
MAX_FRAME_SIDE = 512
MAX_MESSAGE_BYTES = 1024 * 1024

HELLO, OPEN, OPENED, REFUSED, APPEND, OUTPUT, FAILED, CLOSE, CLOSED = range(1, 10)

_AUDIO_BYTES = MICROTURN_SAMPLES * 4
_AUDIO = np.dtype("<f4")
_ID = struct.Struct("<BI")  # OPEN, REFUSED, CLOSE, CLOSED: kind, req or session
_OPENED = struct.Struct("<BII")
_APPEND = struct.Struct("<BIqiHI")
_OUTPUT = struct.Struct("<BIqBfffHII")
_FAILED = struct.Struct("<BIq")

SPEAKING, END_OF_UTTERANCE, LATE, DROPPED, DELEGATE = 1, 2, 4, 8, 16


class WireError(ValueError):
    """A frame that does not parse: the connection is dropped."""


def kind_of(data: bytes) -> int:
    if not data:
        raise WireError("empty frame")
    return data[0]


def _text(data: bytes, start: int, length: int) -> str:
    if length > MAX_TEXT_BYTES or start + length > len(data):
        raise WireError("text out of bounds")
    try:
        return data[start : start + length].decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("text is not UTF-8") from None


def _utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > MAX_TEXT_BYTES:
        raise WireError(f"text over {MAX_TEXT_BYTES} bytes")
    return raw


# ---- control ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hello:
    worker_id: str
    model: str
    frame_size: int
    capacity: int
    protocol: int = PROTOCOL

    def encode(self) -> bytes:
        doc = {
            "protocol": self.protocol,
            "worker_id": self.worker_id,
            "model": self.model,
            "frame_size": self.frame_size,
            "capacity": self.capacity,
        }
        return bytes([HELLO]) + json.dumps(doc).encode()

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        if kind_of(data) != HELLO:
            raise WireError("expected HELLO")
        try:
            doc: Any = json.loads(data[1:])
            return cls(
                worker_id=str(doc["worker_id"]),
                model=str(doc["model"]),
                frame_size=int(doc["frame_size"]),
                capacity=int(doc["capacity"]),
                protocol=int(doc["protocol"]),
            )
        except (ValueError, KeyError, TypeError):
            raise WireError("bad HELLO") from None


def encode_id(kind: int, number: int, text: str = "") -> bytes:
    """OPEN (req, call id), REFUSED (req, reason), CLOSE (session), CLOSED (session, reason)."""
    return _ID.pack(kind, number) + _utf8(text)


def decode_id(data: bytes) -> tuple[int, str]:
    """-> (req or session, text) of an OPEN, REFUSED, CLOSE or CLOSED frame."""
    if len(data) < _ID.size:
        raise WireError("short frame")
    _, number = _ID.unpack_from(data)
    return number, _text(data, _ID.size, len(data) - _ID.size)


def encode_opened(req: int, session: int) -> bytes:
    return _OPENED.pack(OPENED, req, session)


def decode_opened(data: bytes) -> tuple[int, int]:
    if len(data) != _OPENED.size:
        raise WireError("bad OPENED")
    _, req, session = _OPENED.unpack(data)
    return req, session


def encode_failed(session: int, index: int, message: str) -> bytes:
    return _FAILED.pack(FAILED, session, index) + _utf8(message[:1000])


def decode_failed(data: bytes) -> tuple[int, int, str]:
    if len(data) < _FAILED.size:
        raise WireError("short FAILED")
    _, session, index = _FAILED.unpack_from(data)
    return session, index, _text(data, _FAILED.size, len(data) - _FAILED.size)


# ---- micro-turns --------------------------------------------------------------------------------
def encode_append(session: int, inp: MicroTurnInput) -> bytes:
    text = _utf8(inp.text)
    frame = b"" if inp.frame is None else np.ascontiguousarray(inp.frame).tobytes()
    side = 0 if inp.frame is None else int(inp.frame.shape[0])
    played = -1 if inp.played_ms is None else min(int(inp.played_ms), 2**31 - 1)
    header = _APPEND.pack(APPEND, session, inp.index, played, side, len(text))
    return b"".join((header, inp.audio.astype(_AUDIO, copy=False).tobytes(), frame, text))


def decode_append(data: bytes) -> tuple[int, MicroTurnInput]:
    """-> (session, the micro-turn). The arrays are copies: the model may keep or change them."""
    if len(data) < _APPEND.size:
        raise WireError("short APPEND")
    _, session, index, played, side, text_len = _APPEND.unpack_from(data)
    if side > MAX_FRAME_SIDE or index < 0:
        raise WireError("bad APPEND header")
    at = _APPEND.size
    frame_bytes = side * side * 3
    if len(data) != at + _AUDIO_BYTES + frame_bytes + text_len:
        raise WireError("APPEND length does not match its header")
    audio = np.frombuffer(data, _AUDIO, MICROTURN_SAMPLES, at).astype(np.float32)
    at += _AUDIO_BYTES
    frame = None
    if side:
        frame = np.frombuffer(data, np.uint8, frame_bytes, at).reshape(side, side, 3).copy()
        at += frame_bytes
    inp = MicroTurnInput(
        index=index,
        audio=audio,
        frame=frame,
        text=_text(data, at, text_len),
        played_ms=None if played < 0 else played,
    )
    return session, inp


@dataclass(frozen=True)
class Output:
    """An OUTPUT frame: the micro-turn's answer, and how long the worker held it (`worker_ms`,
    from the APPEND's arrival to the OUTPUT's departure: the rest of a round trip is the wire)."""

    session: int
    out: MicroTurnOutput
    worker_ms: float


def encode_output(session: int, out: MicroTurnOutput, worker_ms: float) -> bytes:
    text = _utf8(out.text)
    delegate = b"" if out.delegate is None else _utf8(out.delegate)
    flags = (
        SPEAKING * out.speaking
        | END_OF_UTTERANCE * out.end_of_utterance
        | LATE * out.late
        | DROPPED * out.dropped
        | DELEGATE * (out.delegate is not None)
    )
    header = _OUTPUT.pack(
        OUTPUT,
        session,
        out.index,
        flags,
        out.step_ms,
        out.wait_ms,
        worker_ms,
        min(out.batch, 65535),
        len(text),
        len(delegate),
    )
    return b"".join((header, out.audio.astype(_AUDIO, copy=False).tobytes(), text, delegate))


def decode_output(data: bytes) -> Output:
    if len(data) < _OUTPUT.size:
        raise WireError("short OUTPUT")
    _, session, index, flags, step_ms, wait_ms, worker_ms, batch, text_len, delegate_len = (
        _OUTPUT.unpack_from(data)
    )
    at = _OUTPUT.size
    if len(data) != at + _AUDIO_BYTES + text_len + delegate_len:
        raise WireError("OUTPUT length does not match its header")
    audio = np.frombuffer(data, _AUDIO, MICROTURN_SAMPLES, at).astype(np.float32)
    at += _AUDIO_BYTES
    text = _text(data, at, text_len)
    delegate = _text(data, at + text_len, delegate_len) if flags & DELEGATE else None
    out = MicroTurnOutput(
        index=index,
        text=text,
        audio=audio,
        speaking=bool(flags & SPEAKING),
        delegate=delegate,
        end_of_utterance=bool(flags & END_OF_UTTERANCE),
        step_ms=float(step_ms),
        late=bool(flags & LATE),
        dropped=bool(flags & DROPPED),
        batch=int(batch),
        wait_ms=float(wait_ms),
    )
    return Output(session, out, float(worker_ms))
