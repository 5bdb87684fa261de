"""The calls this process serves, by id, with a hard cap."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signaling.call import Call
    from signaling.metrics import CallSnapshot, Metrics


class CallRegistry:
    def __init__(self, max_calls: int, metrics: Metrics) -> None:
        self.max_calls = max_calls
        self.metrics = metrics
        self._calls: dict[str, Call] = {}

    def __len__(self) -> int:
        return len(self._calls)

    @property
    def full(self) -> bool:
        return len(self._calls) >= self.max_calls

    def add(self, call: Call) -> None:
        """Register a call (before `call.begin()`)."""
        self._calls[call.call_id] = call
        self.metrics.calls_active.set(len(self._calls))

    def get(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    def remove(self, call: Call) -> None:
        self._calls.pop(call.call_id, None)
        self.metrics.calls_active.set(len(self._calls))

    def connecting_from(self, client: str) -> int:
        """Calls this client address offered that have not connected yet."""
        return sum(1 for c in self._calls.values() if c.client == client and c.connecting)

    @property
    def connecting(self) -> int:
        return sum(1 for c in self._calls.values() if c.connecting)

    def snapshots(self) -> list[CallSnapshot]:
        return [call.snapshot() for call in self._calls.values()]

    def all(self) -> list[Call]:
        return list(self._calls.values())

    async def evict_suspended(self) -> bool:
        """Make room: the call that has waited longest for a resume (its peer is gone) ends and
        gives its slot to a new one. False when no call is waiting."""
        waiting = [c for c in self._calls.values() if c.suspended_since is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.suspended_since or 0.0)
        await oldest.close("connection lost; its slot went to a new call")
        return True

    async def close_all(self, reason: str) -> None:
        await asyncio.gather(*(c.close(reason) for c in self.all()), return_exceptions=True)
