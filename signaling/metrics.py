"""Prometheus metrics, one registry per app (no module-level singletons: tests run many apps).

Counters and histograms are updated where things happen (calls, steps, events, agent tasks);
queue depths and the engine's own counters are read when /metrics is scraped (`RuntimeCollector`),
so the hot path pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class CallSnapshot:
    """What a call publishes for the scrape (`Call.snapshot()`): metrics never reach into it."""

    connecting: bool
    outbound_audio_ms: float
    pending_steps: int
    agent_outbox: int
    audio_late_ms: int
    outbound_overflow_samples: int


STEP_BUCKETS_MS = (5, 10, 20, 40, 60, 80, 100, 125, 150, 200, 300, 500, 1000)
AGENT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls_active = Gauge("microturn_calls_active", "calls in progress", registry=r)
        self.calls = Counter(
            "microturn_calls", "calls by outcome of POST /v1/calls", ["outcome"], registry=r
        )
        self.calls_ended = Counter(
            "microturn_calls_ended", "calls ended, by why", ["reason"], registry=r
        )
        self.resumes = Counter(
            "microturn_call_resumes",
            "calls resumed on a new peer connection after theirs dropped (same engine session)",
            registry=r,
        )
        self.failovers = Counter(
            "microturn_inference_failovers",
            "calls whose model session moved to another inference worker (its state restarted)",
            ["reason"],
            registry=r,
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
        self.agent_task_seconds = Histogram(
            "microturn_agent_task_seconds",
            "background task time from submit to its final (or error) result",
            ["outcome"],
            buckets=AGENT_BUCKETS_S,
            registry=r,
        )
        self.redis_up = Gauge(
            "microturn_redis_up", "1 when the last Redis ping answered", registry=r
        )
        self.redis_errors = Counter(
            "microturn_redis_errors", "Redis pings that failed (health checks)", registry=r
        )

    def watch(
        self,
        engine_stats: Callable[[], dict[str, Any]],
        calls: Callable[[], list[CallSnapshot]],
    ) -> None:
        """Read the engine's counters and every call's queues at scrape time."""
        self.registry.register(RuntimeCollector(engine_stats, calls))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RuntimeCollector(Collector):
    def __init__(
        self,
        engine_stats: Callable[[], dict[str, Any]],
        calls: Callable[[], list[CallSnapshot]],
    ) -> None:
        self.engine_stats = engine_stats
        self.calls = calls

    def collect(self) -> Iterator[Metric]:
        stats = self.engine_stats()
        for name, key, doc in [
            ("microturn_engine_slots_active", "active", "engine slots in use"),
            ("microturn_engine_slots", "capacity", "engine slots in all"),
            ("microturn_engine_step_ms_p99", "step_ms_p99", "p99 step time of the last 1000 steps"),
            ("microturn_engine_batch_mean", "batch_mean", "mean calls per batched step"),
        ]:
            if key in stats:
                yield GaugeMetricFamily(name, doc, value=float(stats[key]))
        for name, key, doc in [
            ("microturn_engine_steps", "steps", "batched steps run"),
            (
                "microturn_engine_dropped_inputs",
                "dropped_inputs",
                "micro-turns dropped when behind",
            ),
        ]:
            if key in stats:
                yield CounterMetricFamily(name, doc, value=float(stats[key]))
        calls = self.calls()
        queues = {
            "outbound_audio_ms": sum(c.outbound_audio_ms for c in calls),
            "pending_steps": sum(c.pending_steps for c in calls),
            "agent_outbox": sum(c.agent_outbox for c in calls),
        }
        depth = GaugeMetricFamily(
            "microturn_queue_depth",
            "what waits in the bounded queues, summed over calls",
            labels=["queue"],
        )
        for queue, value in queues.items():
            depth.add_metric([queue], float(value))
        yield depth
        yield GaugeMetricFamily(
            "microturn_calls_connecting",
            "calls offered that have not connected yet (they hold a slot until connect timeout)",
            value=float(sum(1 for c in calls if c.connecting)),
        )
        media = CounterMetricFamily(
            "microturn_media_dropped",
            "media dropped by calls in progress (late audio ms, ring overflow samples)",
            labels=["kind"],
        )
        media.add_metric(["audio_late_ms"], float(sum(c.audio_late_ms for c in calls)))
        media.add_metric(
            ["outbound_overflow_samples"], float(sum(c.outbound_overflow_samples for c in calls))
        )
        yield media
