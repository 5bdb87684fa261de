"""What a backend is: the protocol every background model implements, and its events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agent.types import ContextPackage

EventKind = Literal["partial", "final", "error"]
BACKEND_NAMES = ("builtin", "openai")


@dataclass(frozen=True)
class BackendEvent:
    kind: EventKind
    text: str
    data: Mapping[str, Any] | None = None


class Backend(Protocol):
    name: str

    def run(self, package: ContextPackage) -> AsyncIterator[BackendEvent]: ...

    async def aclose(self) -> None: ...
