"""What crosses the Redis boundary between a call and the background workers.

    interaction side                                   background workers
    ContextPackage --encode()--> XADD microturn:ctx  --> XREADGROUP agents --> decode_package()
    AgentResult   <--decode_result()-- XREAD microturn:results:{call_id} <-- encode() <-- backend

Both are versioned JSON (api.md, "Redis Streams"). Decoding is strict about what the contract
requires (types, enums, the version) and tolerant of extra fields, so a v1 reader keeps working when
a writer adds something. Anything else raises `PackageError` with a short machine-readable `code`,
which the worker writes into the dead-letter stream as the reason; decoding never raises anything
else, whatever the bytes (huge integers, NaN, lone surrogates, deep nesting).

Both are bounded: a package's conversation keeps its newest turns within MAX_CONVERSATION_CHARS
(the text, not only the number of turns), a package is at most MAX_PACKAGE_BYTES, and a result
that would pass MAX_RESULT_BYTES has its text cut (and its data dropped) by the writer.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, cast, get_args

WIRE_VERSION = 1
MAX_CONVERSATION_CHARS = 32_000  # newest turns first; ~8k tokens of context for the background
MAX_PACKAGE_BYTES = 256 * 1024  # the conversation (<= 4 bytes a char) plus one small camera frame
MAX_RESULT_BYTES = 64 * 1024

Role = Literal["user", "model", "agent"]
TurnKind = Literal["text", "speech", "event"]
ResultKind = Literal["started", "partial", "final", "error"]

ROLES: frozenset[str] = frozenset(get_args(Role))
TURN_KINDS: frozenset[str] = frozenset(get_args(TurnKind))
RESULT_KINDS: frozenset[str] = frozenset(get_args(ResultKind))
TERMINAL_KINDS: frozenset[str] = frozenset({"final", "error"})


class PackageError(ValueError):
    """A context package or result that does not follow the v1 wire contract.

    `code` is one of: bad_json, not_object, unsupported_version, missing_field, bad_field, too_large.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TurnLike(Protocol):
    """Anything with the four fields of a conversation turn (e.g. the call's transcript turns)."""

    microturn: int
    role: str
    kind: str
    text: str


@dataclass(frozen=True)
class Turn:
    """One entry of the conversation the background model sees."""

    microturn: int
    role: Role
    kind: TurnKind
    text: str
    # the model's speech cut to what the user heard (a barge-in): `text` is the heard part only
    truncated: bool = False

    def __post_init__(self) -> None:
        _check_turn(self.microturn, self.role, self.kind, self.text)
        if not isinstance(self.truncated, bool):
            raise PackageError("bad_field", "turn truncated must be a boolean")

    @classmethod
    def coerce(cls, turn: Turn | TurnLike | Mapping[str, Any]) -> Turn:
        """A Turn from a Turn, a mapping with the wire keys, or an object with the same attributes."""
        if isinstance(turn, Turn):
            return turn
        if isinstance(turn, Mapping):
            return _decode_turn(turn, 0)
        return cls(
            microturn=turn.microturn,
            role=cast(Role, turn.role),
            kind=cast(TurnKind, turn.kind),
            text=turn.text,
            truncated=getattr(turn, "truncated", False),
        )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "microturn": self.microturn,
            "role": self.role,
            "kind": self.kind,
            "text": self.text,
        }
        if self.truncated:  # only when cut, so every other turn is as it always was
            wire["truncated"] = True
        return wire


@dataclass(frozen=True)
class AgentRequest:
    """What the background model is asked to do (the `request` object of the package)."""

    text: str


@dataclass(frozen=True)
class ContextPackage:
    """The whole context a background worker needs for one task (api.md, "Context package")."""

    package_id: str
    call_id: str
    created_at: float  # unix seconds on the interaction side's clock
    microturn: int  # the micro-turn at which the work was delegated
    request: AgentRequest
    conversation: tuple[Turn, ...] = ()
    frame_jpeg_b64: str | None = None  # latest camera frame, base64 JPEG
    v: int = WIRE_VERSION

    def __post_init__(self) -> None:
        if self.v != WIRE_VERSION:
            raise PackageError("unsupported_version", f"v must be {WIRE_VERSION}, got {self.v!r}")
        _require_id(self.package_id, "package_id")
        _require_id(self.call_id, "call_id")
        if not isinstance(self.microturn, int) or isinstance(self.microturn, bool):
            raise PackageError("bad_field", "microturn must be an integer")
        if self.microturn < 0:
            raise PackageError("bad_field", "microturn must be >= 0")

    @classmethod
    def new(
        cls,
        call_id: str,
        request_text: str,
        conversation: Iterable[Turn | TurnLike | Mapping[str, Any]] = (),
        microturn: int = 0,
        frame_jpeg: bytes | None = None,
        *,
        package_id: str | None = None,
        created_at: float | None = None,
        max_conversation_chars: int = MAX_CONVERSATION_CHARS,
    ) -> ContextPackage:
        """A fresh package with a new id, stamped now; the conversation keeps its newest turns
        within `max_conversation_chars`."""
        _check_text(request_text, "request.text")
        turns = newest_within([Turn.coerce(t) for t in conversation], max_conversation_chars)
        return cls(
            package_id=package_id or uuid.uuid4().hex,
            call_id=call_id,
            created_at=time.time() if created_at is None else created_at,
            microturn=microturn,
            request=AgentRequest(request_text),
            conversation=turns,
            frame_jpeg_b64=base64.b64encode(frame_jpeg).decode("ascii") if frame_jpeg else None,
        )

    @property
    def frame_jpeg(self) -> bytes | None:
        if self.frame_jpeg_b64 is None:
            return None
        return base64.b64decode(self.frame_jpeg_b64)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "v": self.v,
            "package_id": self.package_id,
            "call_id": self.call_id,
            "created_at": self.created_at,
            "microturn": self.microturn,
            "request": {"text": self.request.text},
            "conversation": [t.to_wire() for t in self.conversation],
        }
        if self.frame_jpeg_b64 is not None:
            wire["frame_jpeg_b64"] = self.frame_jpeg_b64
        return wire

    def encode(self) -> str:
        """The JSON text that goes into the `package` field of `microturn:ctx`."""
        text = json.dumps(self.to_wire(), ensure_ascii=False, separators=(",", ":"))
        if len(text) > MAX_PACKAGE_BYTES:  # chars <= bytes; the exact check is in decode
            raise PackageError("too_large", f"package is larger than {MAX_PACKAGE_BYTES} bytes")
        return text

    @classmethod
    def decode(cls, raw: str | bytes) -> ContextPackage:
        """Parse and validate one package, or raise PackageError (never anything else)."""
        try:
            return cls._decode(raw)
        except PackageError:
            raise
        except Exception as exc:  # ValueError, OverflowError, TypeError, RecursionError, ...
            raise PackageError("bad_json", f"undecodable ({type(exc).__name__})") from None

    @classmethod
    def _decode(cls, raw: str | bytes) -> ContextPackage:
        if len(raw) > MAX_PACKAGE_BYTES:
            raise PackageError("too_large", f"package is larger than {MAX_PACKAGE_BYTES} bytes")
        obj = _load_object(raw)
        if "v" not in obj:
            raise PackageError("missing_field", "missing field 'v'")
        v = obj["v"]
        if v != WIRE_VERSION or isinstance(v, bool):
            raise PackageError("unsupported_version", f"v must be {WIRE_VERSION}, got {v!r}")
        request = _get(obj, "request", dict)
        conversation = _get(obj, "conversation", list)
        frame = _get(obj, "frame_jpeg_b64", str, required=False)
        if frame is not None:
            try:
                base64.b64decode(frame, validate=True)
            except (binascii.Error, ValueError):
                raise PackageError("bad_field", "frame_jpeg_b64 is not base64") from None
        created_at = _get(obj, "created_at", (int, float))
        if not math.isfinite(created_at):
            raise PackageError("bad_field", "created_at must be a finite number")
        return cls(
            package_id=_get(obj, "package_id", str),
            call_id=_get(obj, "call_id", str),
            created_at=float(created_at),
            microturn=_get(obj, "microturn", int),
            request=AgentRequest(_get(request, "text", str, where="request.")),
            conversation=tuple(_decode_turn(t, i) for i, t in enumerate(conversation)),
            frame_jpeg_b64=frame,
        )


@dataclass(frozen=True)
class AgentResult:
    """One entry of `microturn:results:{call_id}`.

    Per package: `started` (seq 0 of an attempt), then any `partial`s, then exactly one `final` or
    `error`. `seq` increases strictly per package across attempts, so (package_id, seq) identifies a
    result and a reader can drop anything it has already seen.
    """

    package_id: str
    seq: int
    kind: ResultKind
    text: str = ""
    data: Mapping[str, Any] | None = field(default=None, hash=False, compare=True)

    def __post_init__(self) -> None:
        _require_id(self.package_id, "package_id")
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) or self.seq < 0:
            raise PackageError("bad_field", "seq must be an integer >= 0")
        if self.kind not in RESULT_KINDS:
            raise PackageError("bad_field", f"kind must be one of {sorted(RESULT_KINDS)}")
        if not isinstance(self.text, str):
            raise PackageError("bad_field", "text must be a string")

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "package_id": self.package_id,
            "seq": self.seq,
            "kind": self.kind,
            "text": self.text,
        }
        if self.data is not None:
            wire["data"] = dict(self.data)
        return wire

    def encode(self) -> str:
        """The JSON text that goes into the `result` field of the results stream."""
        return json.dumps(self.to_wire(), ensure_ascii=False, separators=(",", ":"), default=str)

    @classmethod
    def decode(cls, raw: str | bytes) -> AgentResult:
        """Parse one result, or raise PackageError (never anything else). Text that is not valid
        Unicode (a lone surrogate) is repaired rather than refused: a result must reach its call."""
        try:
            result = cls._decode(raw)
        except PackageError:
            raise
        except Exception as exc:
            raise PackageError("bad_json", f"undecodable ({type(exc).__name__})") from None
        text = clean_text(result.text)
        return result if text == result.text else replace(result, text=text)

    @classmethod
    def _decode(cls, raw: str | bytes) -> AgentResult:
        if len(raw) > MAX_RESULT_BYTES:
            raise PackageError("too_large", f"result is larger than {MAX_RESULT_BYTES} bytes")
        obj = _load_object(raw)
        kind = _get(obj, "kind", str)
        if kind not in RESULT_KINDS:
            raise PackageError("bad_field", f"kind must be one of {sorted(RESULT_KINDS)}")
        return cls(
            package_id=_get(obj, "package_id", str),
            seq=_get(obj, "seq", int),
            kind=cast(ResultKind, kind),
            text=_get(obj, "text", str),
            data=_get(obj, "data", dict, required=False),
        )


def encode_result_parts(
    package_id: str, kind: ResultKind, text: str, data: Mapping[str, Any] | None
) -> tuple[str, str]:
    """The JSON of a result split around its seq value: `head + str(seq) + tail` is the result.

    The worker's emit script fills in seq on the Redis side, so a result is encoded once per
    attempt-independent content and the script never parses JSON. A result that would pass
    MAX_RESULT_BYTES loses its data and has its text cut, so every reader can decode it.
    """
    full = AgentResult(package_id, 0, kind, clean_text(text), data).encode()
    if len(full.encode("utf-8")) > MAX_RESULT_BYTES - 32:  # room for the seq digits
        cut = clean_text(text)[: MAX_RESULT_BYTES // 8] + " […]"
        full = AgentResult(package_id, 0, kind, cut, {"truncated": True}).encode()
    marker = '"seq":0,'
    at = full.index(marker) + len('"seq":')
    return full[:at], full[at + 1 :]


def clean_text(text: str) -> str:
    """`text` with any lone surrogate replaced by U+FFFD, so it can always be UTF-8 encoded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def newest_within(turns: list[Turn], max_chars: int) -> tuple[Turn, ...]:
    """The newest turns whose texts add up to at most `max_chars` (the newest one cut if alone
    it is longer)."""
    kept: list[Turn] = []
    budget = max_chars
    for turn in reversed(turns):
        if len(turn.text) > budget:
            if not kept and budget > 0:
                kept.append(replace(turn, text=turn.text[:budget]))
            break
        kept.append(turn)
        budget -= len(turn.text)
    return tuple(reversed(kept))


def _check_text(text: object, where: str) -> None:
    if isinstance(text, str):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise PackageError("bad_field", f"{where} is not valid Unicode") from None


def _load_object(raw: str | bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise PackageError("bad_json", f"not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(obj, dict):
        raise PackageError("not_object", "expected a JSON object")
    return obj


def _get(
    obj: Mapping[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    *,
    required: bool = True,
    where: str = "",
) -> Any:
    if name not in obj or obj[name] is None:
        if required:
            raise PackageError("missing_field", f"missing field '{where}{name}'")
        return None
    value = obj[name]
    # bool is an int in Python; JSON true is not a number here.
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise PackageError("bad_field", f"field '{where}{name}' must be {names}")
    return value


def _require_id(value: object, name: str) -> None:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise PackageError("bad_field", f"{name} must be a non-empty string of at most 200 chars")


def _check_turn(microturn: object, role: object, kind: object, text: object) -> None:
    if not isinstance(microturn, int) or isinstance(microturn, bool) or microturn < 0:
        raise PackageError("bad_field", "turn microturn must be an integer >= 0")
    if role not in ROLES:
        raise PackageError("bad_field", f"turn role must be one of {sorted(ROLES)}, got {role!r}")
    if kind not in TURN_KINDS:
        raise PackageError(
            "bad_field", f"turn kind must be one of {sorted(TURN_KINDS)}, got {kind!r}"
        )
    if not isinstance(text, str):
        raise PackageError("bad_field", "turn text must be a string")
    _check_text(text, "turn text")


def _decode_turn(obj: object, index: int) -> Turn:
    if not isinstance(obj, Mapping):
        raise PackageError("bad_field", f"conversation[{index}] must be an object")
    where = f"conversation[{index}]."
    truncated = obj.get("truncated", False)
    if not isinstance(truncated, bool):
        raise PackageError("bad_field", f"field '{where}truncated' must be a boolean")
    return Turn(
        microturn=_get(obj, "microturn", int, where=where),
        role=_get(obj, "role", str, where=where),
        kind=_get(obj, "kind", str, where=where),
        text=_get(obj, "text", str, where=where),
        truncated=truncated,
    )
