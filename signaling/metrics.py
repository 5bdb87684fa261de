"""Prometheus metrics, one registry per app (no module-level singletons: tests run many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STEP_BUCKETS_MS = (5, 10, 20, 40, 60, 80, 100, 125, 150, 200, 300, 500, 1000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls_active = Gauge("microturn_calls_active", "calls in progress", registry=r)
        self.calls = Counter(
            "microturn_calls", "calls by outcome of POST /v1/calls", ["outcome"], registry=r
        )
        self.microturns = Counter("microturn_microturns", "micro-turns processed", registry=r)
        self.late_steps = Counter(
            "microturn_late_steps", "micro-turns answered after their deadline", registry=r
        )
        self.failed_steps = Counter(
            "microturn_failed_steps", "micro-turns whose model step raised", registry=r
        )
        self.step_ms = Histogram(
            "microturn_step_ms",
            "engine step time per micro-turn (ms)",
            buckets=STEP_BUCKETS_MS,
            registry=r,
        )
        self.audio_gap_samples = Counter(
            "microturn_audio_gap_samples", "inbound samples filled with silence", registry=r
        )
        self.event_errors = Counter(
            "microturn_event_errors", "data-channel messages refused", ["code"], registry=r
        )
        self.agent_tasks = Counter(
            "microturn_agent_tasks", "background tasks started by calls", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
