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

from agent.backends.base import BACKEND_NAMES, Backend, BackendEvent, EventKind
from agent.backends.settings import BackendSettings, make_backend

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendEvent",
    "BackendSettings",
    "EventKind",
    "make_backend",
]
