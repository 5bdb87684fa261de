"""The streaming-session engine: every call's state resident in a slot, all due calls in one step.

It serves any `inference.protocol.StreamingModel` and knows slots, its thread, batching and
deadlines only; what the model's state holds and what its outputs mean are the model's (and its
per-call `Session`'s) business.

    event loop (signaling/media)                 engine thread (torch)
    ─────────────────────────────                ─────────────────────────────────────────────
    open(call_id) -> slot        (bookkeeping)
    await append(slot, inp) ──► session.pending (≤ max_pending; overflow drops the oldest,
                                 its future gets a silent output marked late)
                                 notify ──────►  take the oldest pending input of every session
                                                 that has one (any ages, any slots)
                                                 reset slots of new sessions
                                                 ONE batched model.step on the device
    future resolved  ◄── call_soon_threadsafe ── MicroTurnOutput: the model's Reply + timing
    close(slot)                  (frees the slot at once; pending appends are cancelled)

Continuous batching: the thread steps whenever it is free, so calls join and leave at any tick and
a call's 200 ms boundaries need not line up with anyone else's. They do in `microturn serve`
(media/clock.grid_tick: every call on the machine cuts its micro-turns on one 200 ms grid), so the
calls' inputs arrive together and share a step; one step per call at its own phase cost a remote
worker twice the CPU for 10 calls (bench.capacity hold). State is the model's, preallocated
for every slot (`new_state`); a slot is reset on the engine thread before its new session's first
step. Each session gets a seed from (engine seed, call id) for whatever sampling it does.

Deadlines: an output is late when it is ready more than `deadline_ms` after its append(). Steps with
late outputs are counted (`late_steps`); a session that falls behind has at most `max_pending`
inputs waiting, so the engine never builds a backlog: it drops the oldest and catches up.

Sessions: `Session.accept(inp)` at append and `Session.take_turn()` as an input enters a step,
both under the engine's lock, so what a call queues (its typed text) and what a step consumes never
race, and the text of an input the engine drops is not lost.

CPU: float32 on `num_threads` torch threads (default: all cores but one, so media keeps a core;
note torch's thread count is process-wide). CUDA: bfloat16 autocast and a bfloat16 KV cache.
Same code path. start() also freezes the objects alive at start out of Python's cyclic GC (see
`EngineConfig.gc_freeze`): a full collection over the model's objects stalled the loop ~110 ms.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.protocol import (
    MICROTURN_MS,
    MICROTURN_SAMPLES,
    SAMPLE_RATE_HZ,
    EngineStats,
    MicroTurnInput,
    MicroTurnOutput,
    Session,
    StreamingModel,
    silence,
)

log = logging.getLogger(__name__)

STEP_HISTORY = 1000  # steps kept for the latency percentiles
LATE_LOG_EVERY_S = 5.0  # late-step warnings are rate-limited


class EngineFull(Exception):
    """Every slot is taken. The server answers 503 with Retry-After."""


class EngineStopped(RuntimeError):
    """The engine is not running (never started, or stopped)."""


@dataclass
class EngineConfig:
    max_sessions: int = 8
    device: str | None = None  # None: "cuda" if available else "cpu"
    deadline_ms: float = 200.0
    num_threads: int | None = None  # torch threads; None: all cores but one (1 on 2 cores)
    seed: int = 0
    max_pending: int = 2  # inputs a session may have waiting; more drops the oldest
    gc_freeze: bool = True  # on start(), move existing objects out of the GC's full collections
    step_mode: str = "eager"  # eager | compile | cudagraph: the hot step (inference/hotstep.py)


def pick_device(name: str | None) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def default_threads() -> int:
    """All cores but one (max 4). Measured on 2 cores: 2 torch threads made a batched step 10-15 %
    faster but starved the event loop, and live calls went late (p50 350 ms at 8 calls vs 44)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def session_seed(engine_seed: int, call_id: str) -> int:
    return (engine_seed * 1_000_003 + zlib.crc32(call_id.encode())) & 0x7FFF_FFFF_FFFF


@dataclass
class _Item:
    inp: MicroTurnInput
    t_append: float  # time.perf_counter() at append
    future: asyncio.Future[MicroTurnOutput] | None = None
    loop: asyncio.AbstractEventLoop | None = None


@dataclass
class _Session:
    call_id: str
    slot: int
    policy: Session  # the model's per-call decode state
    pending: deque[_Item] = field(default_factory=deque)
    needs_reset: bool = True
    closed: bool = False
    microturns: int = 0
    late: int = 0
    dropped: int = 0

    def stats(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "microturns": self.microturns,
            "late_steps": self.late,
            "dropped_inputs": self.dropped,
            "pending": len(self.pending),
            **self.policy.stats(),
        }


def dropped_output(index: int) -> MicroTurnOutput:
    return MicroTurnOutput(index, "", silence(), False, late=True, dropped=True)


def _resolve(
    future: asyncio.Future[MicroTurnOutput], result: MicroTurnOutput | BaseException
) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _deliver(item: _Item, result: MicroTurnOutput | BaseException | None) -> None:
    """Resolve an append's future on its loop; None cancels it (the call was closed)."""
    if item.future is None or item.loop is None:
        return
    try:
        if result is None:
            item.loop.call_soon_threadsafe(item.future.cancel)
        else:
            item.loop.call_soon_threadsafe(_resolve, item.future, result)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


class Engine:
    def __init__(self, model: StreamingModel, config: EngineConfig) -> None:
        assert config.max_sessions >= 1 and config.max_pending >= 1
        spec = model.spec
        if spec.sample_rate_hz != SAMPLE_RATE_HZ or spec.microturn_ms != MICROTURN_MS:
            raise ValueError(
                f"model {spec.name} takes {spec.sample_rate_hz} Hz in {spec.microturn_ms} ms "
                f"micro-turns; this engine serves {SAMPLE_RATE_HZ} Hz in {MICROTURN_MS} ms"
            )
        self.config = config
        self.device = pick_device(config.device)
        self.model = model
        model.to_device(self.device)
        self.step_mode = config.step_mode
        if config.step_mode != "eager":
            from inference.hotstep import accelerate

            self.step_mode = accelerate(model, config.step_mode, self.device)
        self.model_name: str = spec.name
        self.frame_size: int = spec.frame_size
        self.capacity: int = config.max_sessions
        self.num_threads = config.num_threads or default_threads()
        with torch.no_grad():
            self.state = model.new_state(self.capacity, self.device)
        self._slots: list[_Session | None] = [None] * self.capacity
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False
        self._warmed = False
        self._steps = 0
        self._late_steps = 0
        self._late_outputs = 0
        self._dropped = 0
        self._step_ms: deque[float] = deque(maxlen=STEP_HISTORY)
        self._batch: deque[int] = deque(maxlen=STEP_HISTORY)
        self._late_logged = -float("inf")

    @classmethod
    def from_checkpoint(cls, path: str | Path | None, config: EngineConfig) -> Engine:
        """The model a checkpoint directory holds (its config.json names the class); path None:
        the shipped `small` checkpoint (inference/checkpoints/small)."""
        from inference.loading import load_model

        return cls(load_model(path), config)

    # ---- sessions (any thread) --------------------------------------------------------------------
    @property
    def active(self) -> int:
        with self._cond:
            return sum(s is not None for s in self._slots)

    def open(self, call_id: str) -> int:
        with self._cond:
            for slot, session in enumerate(self._slots):
                if session is None:
                    seed = session_seed(self.config.seed, call_id)
                    policy = self.model.new_session(call_id, seed)
                    self._slots[slot] = _Session(call_id, slot, policy)
                    log.info("call %s: opened slot %d", call_id, slot)
                    return slot
        raise EngineFull(f"all {self.capacity} model slots are taken")

    async def open_async(self, call_id: str) -> int:
        """open() as the Engine protocol's event-loop side calls it (in process: no waiting)."""
        return self.open(call_id)

    def close(self, slot: int) -> None:
        with self._cond:
            session = self._slots[slot] if 0 <= slot < self.capacity else None
            if session is None:
                return
            self._slots[slot] = None
            session.closed = True
            items = list(session.pending)
            session.pending.clear()
        for item in items:
            _deliver(item, None)
        log.info(
            "call %s: closed slot %d after %d micro-turns",
            session.call_id,
            slot,
            session.microturns,
        )

    def _session(self, slot: int) -> _Session:
        session = self._slots[slot] if 0 <= slot < self.capacity else None
        if session is None:
            raise KeyError(f"slot {slot} is not open")
        return session

    def session_stats(self, slot: int) -> dict[str, Any]:
        with self._cond:
            return self._session(slot).stats()

    def stats(self) -> EngineStats:
        with self._cond:
            times = np.array(self._step_ms, dtype=np.float64)
            batches = np.array(self._batch, dtype=np.float64)
            return EngineStats(
                model=self.model_name,
                device=str(self.device),
                threads=self.num_threads,
                active=sum(s is not None for s in self._slots),
                capacity=self.capacity,
                steps=self._steps,
                late_steps=self._late_steps,
                late_outputs=self._late_outputs,
                dropped_inputs=self._dropped,
                step_ms_p50=float(np.percentile(times, 50)) if times.size else 0.0,
                step_ms_p99=float(np.percentile(times, 99)) if times.size else 0.0,
                step_ms_max=float(times.max()) if times.size else 0.0,
                batch_mean=float(batches.mean()) if batches.size else 0.0,
            )

    async def append(self, slot: int, inp: MicroTurnInput) -> MicroTurnOutput:
        size = self.frame_size
        if inp.frame is not None and inp.frame.shape != (size, size, 3):
            raise ValueError(f"frame must be [{size}, {size}, 3], got {inp.frame.shape}")
        loop = asyncio.get_running_loop()
        item = _Item(inp, time.perf_counter(), loop.create_future(), loop)
        dropped: _Item | None = None
        with self._cond:
            if not self._running:
                raise EngineStopped("the engine is not running (call start())")
            session = self._session(slot)
            session.policy.accept(inp)
            session.pending.append(item)
            if len(session.pending) > self.config.max_pending:
                dropped = session.pending.popleft()
                session.dropped += 1
                session.late += 1
                self._dropped += 1
            self._cond.notify()
        if dropped is not None:
            log.debug("call %s: behind, dropped micro-turn %d", session.call_id, dropped.inp.index)
            assert dropped.future is not None
            _resolve(dropped.future, dropped_output(dropped.inp.index))
        assert item.future is not None
        return await item.future

    # ---- the engine thread ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the engine thread (idempotent).

        With `gc_freeze`, everything alive now (torch modules, imported libraries: ~170k objects)
        is frozen out of the cyclic GC first: a full collection over them held the GIL ~110 ms,
        stalling the event loop and every call at once (measured in bench/inference.py's live run).
        """
        with self._cond:
            if self._running:
                return
        if self.config.gc_freeze:
            gc.collect()
            gc.freeze()
        with self._cond:
            if self._running:
                return
            self._running = True
            self._thread = threading.Thread(target=self._run, name="microturn-engine", daemon=True)
            self._thread.start()
        log.info(
            "engine %s on %s (%d threads), %d slots",
            self.model_name,
            self.device,
            self.num_threads,
            self.capacity,
        )

    def stop(self) -> None:
        with self._cond:
            if not self._running:
                return
            self._running = False
            self._cond.notify_all()
            thread = self._thread
            items = [item for s in self._slots if s is not None for item in s.pending]
            for s in self._slots:
                if s is not None:
                    s.pending.clear()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)
        for item in items:
            _deliver(item, EngineStopped("the engine stopped"))

    def _run(self) -> None:
        torch.set_num_threads(self.num_threads)
        if not self._warmed:
            self._warm_up()
        while True:
            with self._cond:
                while self._running and not any(s is not None and s.pending for s in self._slots):
                    self._cond.wait()
                if not self._running:
                    return
                batch = [
                    (s, s.pending.popleft()) for s in self._slots if s is not None and s.pending
                ]
                for s, _ in batch:
                    s.policy.take_turn()
            try:
                self._step(batch)
            except Exception as exc:  # a broken step fails its calls, not the engine
                if len(batch) == 1:
                    self._fail(batch[0], exc)
                    continue
                # Find the culprit: step each call alone. A step rewrites the same cache entries
                # and advances state only at its end, so stepping a call again is safe.
                log.warning(
                    "batched step failed (%s); stepping its %d calls alone", exc, len(batch)
                )
                for pair in batch:
                    try:
                        self._step([pair])
                    except Exception as alone:
                        self._fail(pair, alone)

    def _fail(self, pair: tuple[_Session, _Item], exc: Exception) -> None:
        """This call's micro-turn failed: its append raises, its state restarts next step."""
        session, item = pair
        log.error("call %s: engine step failed: %r", session.call_id, exc, exc_info=exc)
        session.needs_reset = True
        _deliver(item, exc)

    def warm_up(self) -> None:
        """One throw-away step on an unused slot so the first call's first step is not late.
        Call it before start() (the server does, before it says it is serving); else the engine
        thread does it first thing. Blocking: run it off the event loop."""
        assert not self._running, "warm up before start()"
        if not self._warmed:
            torch.set_num_threads(self.num_threads)
            self._warm_up()

    def _warm_up(self) -> None:
        with self._cond:
            free = [i for i, s in enumerate(self._slots) if s is None]
        if free:
            dummy = MicroTurnInput(index=0, audio=np.zeros(MICROTURN_SAMPLES, dtype=np.float32))
            session = _Session("warm-up", free[0], self.model.new_session("warm-up", 0))
            session.policy.take_turn()
            self._step([(session, _Item(dummy, time.perf_counter()))], record=False)
            with torch.no_grad():
                self.model.reset(self.state, [free[0]])
        self._warmed = True

    def step_sync(self, inputs: dict[int, MicroTurnInput]) -> dict[int, MicroTurnOutput]:
        """One batched step on the caller's thread (tests, benchmarks); the worker must not run."""
        assert not self._running, "step_sync is for a stopped engine"
        now = time.perf_counter()
        with self._cond:
            batch = []
            for slot, inp in sorted(inputs.items()):
                session = self._session(slot)
                session.policy.accept(inp)
                session.policy.take_turn()
                batch.append((session, _Item(inp, now)))
        outputs = self._step(batch)
        return {s.slot: out for (s, _), out in zip(batch, outputs, strict=True)}

    @torch.inference_mode()
    def _step(
        self, batch: list[tuple[_Session, _Item]], record: bool = True
    ) -> list[MicroTurnOutput]:
        t0 = time.perf_counter()
        fresh = [s for s, _ in batch if s.needs_reset]
        if fresh:
            self.model.reset(self.state, [s.slot for s in fresh])
            for session in fresh:
                session.policy.reset()
                session.needs_reset = False
        replies = self.model.step(
            self.state,
            [s.slot for s, _ in batch],
            [item.inp for _, item in batch],
            [s.policy for s, _ in batch],
        )
        assert len(replies) == len(batch), "a model step gives one reply per row"
        t_done = time.perf_counter()
        step_ms = (t_done - t0) * 1000.0

        outputs: list[MicroTurnOutput] = []
        late_any = False
        with self._cond:
            for (session, item), reply in zip(batch, replies, strict=True):
                session.microturns += 1
                late = (t_done - item.t_append) * 1000.0 > self.config.deadline_ms
                if late:
                    session.late += 1
                    late_any = True
                    self._late_outputs += 1
                outputs.append(
                    MicroTurnOutput.of(
                        item.inp.index,
                        reply,
                        step_ms=step_ms,
                        late=late,
                        batch=len(batch),
                        wait_ms=(t0 - item.t_append) * 1000.0,
                    )
                )
            if record:
                self._steps += 1
                self._late_steps += int(late_any)
                self._step_ms.append(step_ms)
                self._batch.append(len(batch))
        if late_any and record and t_done - self._late_logged >= LATE_LOG_EVERY_S:
            self._late_logged = t_done
            log.warning(
                "late outputs: step %.1f ms for %d calls (%d late steps so far)",
                step_ms,
                len(batch),
                self._late_steps,
            )
        for (session, item), result in zip(batch, outputs, strict=True):
            _deliver(item, None if session.closed else result)
        return outputs
