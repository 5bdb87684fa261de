"""Background-model backends: what a worker runs for one context package.

A backend is anything with

    def run(self, package: ContextPackage) -> AsyncIterator[BackendEvent]
    async def aclose(self) -> None

`run` yields any number of `partial` events and ends with exactly one `final` or `error`; the
worker writes `started` itself and turns each event into an `AgentResult` with the next seq.
Raising is allowed too (the worker turns it into an `error` result). Backends must not block the
event loop: CPU work goes to an executor.

`partial` text is a progress note or a chunk of the answer as it streams; `final` text is the
whole answer on its own, so a reader that only wants answers can ignore partials.

    builtin  tools only (calculator, units, clock, timers, notes search), no network
    openai   any OpenAI-compatible chat-completions endpoint, streamed, with the same tools
"""

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


def make_backend(
    name: str,
    *,
    notes_dir: str | None = None,
    openai_base_url: str | None = None,
    openai_api_key: str | None = None,
    openai_model: str | None = None,
) -> Backend:
    """A backend by name, with its configuration (the CLI and `microturn serve` use this)."""
    from agent.backends.builtin import BuiltinBackend
    from agent.backends.tools import Toolbox

    notes = None
    if notes_dir:
        from agent.backends.notes import NotesIndex

        notes = NotesIndex(notes_dir)
    toolbox = Toolbox(notes)
    if name == "builtin":
        return BuiltinBackend(toolbox)
    if name == "openai":
        from agent.backends.openai import OpenAIBackend

        if not openai_base_url:
            raise ValueError("the openai backend needs a base URL (--openai-base-url)")
        return OpenAIBackend(
            base_url=openai_base_url,
            api_key=openai_api_key,
            model=openai_model or "gpt-4o-mini",
            toolbox=toolbox,
        )
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
