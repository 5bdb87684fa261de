"""One call: the single place where media, inference and agent meet.

    browser --WebRTC--> RTCPeerConnection
        audio track --> AudioInput --> AudioTimeline ----+
        video track --> VideoSampler --------------------+--> every 200 ms on the SessionClock:
        `events`/`oai-events` channels (channels.py) ----+    MicroTurnInput(k, audio, frame, text)
                                                              |
                                              Engine.append (batched, on the engine thread)
                                                              |
        browser <-- OpusAudioTrack <--- MicroTurnOutput.audio-+--> output_text.delta, speaking
                                                              +--> delegate -> agent (Redis Streams)
        agent results --> text at the next micro-turn + `agent.task` events

When the peer connection drops without DELETE, a running call waits `resume_window_s` for its
client to re-offer with the resume token (`replace_peer`): the clock, the micro-turns (silence
in), the engine session and background work go on meanwhile, so the resumed call is the same call.

The turn loop submits micro-turn k to the engine without waiting for k-1's answer; a second task
takes the answers in order. So a slow step delays output but never the clock, and the engine (which
bounds how much it holds per session) decides what to drop when it is behind.

Long on purpose: this is the one place where media, inference and the agent meet
(architecture.md), one object's whole life (setup, the micro-turn loop, events both ways,
background results, teardown); split, each half would reach into the other's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from agent import weave
from agent.client import AgentClient, AgentError, TooManyTasks
from agent.transcript import Transcript
from inference.protocol import MICROTURN_MS, SAMPLE_RATE_HZ, Engine, MicroTurnInput, MicroTurnOutput
from media.audio_in import AudioInput, AudioInStats, AudioTimeline
from media.audio_out import LoopJitter, OpusAudioTrack
from media.clock import SessionClock, grid_tick
from media.opus import decode_on_loop
from media.playback import PlaybackTracker
from media.video_in import VideoSampler, video_request
from signaling import channel_guard, events
from signaling.channels import Dialect, EventChannel, MicroturnDialect
from signaling.metrics import CallSnapshot, Metrics
from signaling.ratelimit import TokenBucket
from signaling.realtime import REALTIME_LABEL, RealtimeDialect, TruncateItem

log = logging.getLogger(__name__)

MAX_PENDING_STEPS = 8  # micro-turns submitted to the engine whose answers are not yet handled
# the grace each recent micro-turn was cut with, by index modulo this (more than are ever between
# the cut and the handled answer: MAX_PENDING_STEPS + the one being cut)
GRACE_RING = 4 * MAX_PENDING_STEPS
MAX_QUEUED_TEXT_CHARS = 8000
TRANSCRIPT_TURNS = 200
REPEAT_ERROR_EVERY_S = 1.0  # errors that repeat (step_failed, rate_limited): one a second at most
GOODBYE_FLUSH_S = 0.5  # how long close() waits for `session.ended` to leave
TASK_STOP_TIMEOUT_S = 2.0
MAX_TRACKED_TASKS = 256  # background tasks whose latency a call measures at once
MAX_HELD_EVENTS = 64  # events (background results) kept for the client while it reconnects
HELD_EVENTS = frozenset({"agent.task"})


def end_label(reason: str) -> str:
    """A call's end reason as a metric label: "idle: nothing for 30 s" -> "idle"."""
    for label in ("idle", "maximum call duration", "no connection", "connection"):
        if reason.startswith(label):
            return label.replace(" ", "_")
    return reason.replace(" ", "_")[:32]


@dataclass(frozen=True)
class CallLimits:
    connect_timeout_s: float = 10.0  # ICE + DTLS must complete within this, or the call is freed
    idle_timeout_s: float = 30.0  # no inbound media and no events this long: the peer is gone
    max_duration_s: float = 4 * 3600.0
    events_per_s: float = 20.0  # data-channel messages a client may send, sustained ...
    events_burst: int = 40  # ... and in a burst; beyond, messages are dropped with an error
    resume_window_s: float = 0.0  # a dropped connection waits this long for a resume (0: never)


@dataclass
class CallStats:
    microturns: int = 0
    late_steps: int = 0
    dropped_text_chars: int = 0
    event_errors: int = 0
    agent_tasks: int = 0
    failed_steps: int = 0
    events_dropped: int = 0
    restarts: int = 0  # the model's session moved to another inference worker


@dataclass
class Call:
    call_id: str
    pc: RTCPeerConnection
    engine: Engine
    slot: int
    metrics: Metrics
    agent: AgentClient | None = None
    on_closed: Callable[[Call], Awaitable[None] | None] | None = None
    limits: CallLimits = field(default_factory=CallLimits)
    client: str = "?"  # the address that offered it (per-client limits)
    playout: LoopJitter | None = None  # the process's output jitter, shared by its calls
    created_at: float = field(default_factory=time.time)
    state: str = "new"  # new -> connecting -> active -> closed
    stats: CallStats = field(default_factory=CallStats)

    def __post_init__(self) -> None:
        self.clock: SessionClock | None = None
        self.timeline: AudioTimeline | None = None
        self.audio_in: AudioInput | None = None
        self.video: VideoSampler | None = None
        self.outbound = OpusAudioTrack(jitter=self.playout)
        self.channels: list[EventChannel] = []  # at most one per label (events, oai-events)
        self.instructions = ""  # the latest, for dialects that show the session (OpenAI's)
        self.transcript = Transcript(TRANSCRIPT_TURNS)
        # typed text (and results, instructions) waiting for the next micro-turn; each entry says
        # whether its sender hears `input_text.committed` when it joins the model's input
        self._text_queue: deque[tuple[str, bool]] = deque()
        self._cut_grace_s = [0.0] * GRACE_RING
        self._text_chars = 0
        self._speaking = False
        self.playback = PlaybackTracker()
        self._tracks: list[MediaStreamTrack] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: asyncio.Queue[asyncio.Future[MicroTurnOutput]] = asyncio.Queue(
            MAX_PENDING_STEPS
        )
        self._closed = asyncio.Event()
        self._started = False
        self._last_error_at: dict[str, float] = {}  # code -> when it was last sent
        self.last_activity = time.monotonic()
        self._event_bucket: TokenBucket | None = None
        self._task_started: dict[str, float] = {}  # package_id -> monotonic submit time
        # Resuming (a new peer connection for this call, same engine session): the token the
        # client presents (rotated at each resume), how many, since when the peer is gone.
        self.resume_token = secrets.token_urlsafe(24) if self.limits.resume_window_s > 0 else ""
        self.resumes = 0
        self.peers = 1  # peer connections this call has had
        self.suspended_since: float | None = None
        self._suspension: asyncio.Task[None] | None = None
        self._held: deque[tuple[str, dict[str, Any]]] = deque(maxlen=MAX_HELD_EVENTS)
        self.ice_servers: Callable[[], list[Any]] | None = None  # for session.created
        self._wire_peer_connection(self.pc)

    # -- setup ----------------------------------------------------------------------------------
    def _wire_peer_connection(self, pc: RTCPeerConnection) -> None:
        """Our handlers on `pc`; once the call moved on to another peer connection (a resume),
        whatever the old one still reports is ignored."""

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if pc is not self.pc:
                track.stop()
                return
            log.info("call %s: %s track arrived", self.call_id, track.kind)
            self._tracks.append(track)
            sink = self._audio_sink() if track.kind == "audio" else None
            if sink is not None:  # Opus decoded on the loop, straight into the timeline
                receiver = next(
                    (t.receiver for t in pc.getTransceivers() if t.receiver.track is track), None
                )
                if receiver is not None:
                    decode_on_loop(receiver, sink)
            self._spawn(self._consume(track, sink), f"consume-{track.kind}")

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if pc is not self.pc:
                return
            dialect = self._dialect_for(channel.label)
            if dialect is None or any(c.label == channel.label for c in self.channels):
                log.info("call %s: ignoring data channel %r", self.call_id, channel.label)
                return
            self._attach_channel(EventChannel(channel, dialect, self.call_id))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc is not self.pc:
                return
            state = pc.connectionState
            log.info("call %s: connection %s", self.call_id, state)
            if state == "connected":
                if self._started:
                    self._resumed()
                self._start_media()
            elif state in {"failed", "closed"}:
                await self._lost(f"connection {state}")

    # -- dropped connections and resumes ----------------------------------------------------------
    async def _lost(self, reason: str) -> None:
        """The peer connection failed or closed without DELETE: a call that was running waits
        `resume_window_s` for the client to resume it; anything else ends now."""
        if self.state == "active" and self.limits.resume_window_s > 0:
            self._suspend(reason)
        else:
            await self.close(reason)

    def _suspend(self, reason: str) -> None:
        """The model's session goes on (the clock, the micro-turns, background work; the input
        is silence) while nobody is connected; `reason` ends the call if nobody resumes it."""
        if self.suspended_since is not None or self.state == "closed":
            return
        self.suspended_since = time.monotonic()
        self.channels.clear()  # they died with their peer connection
        log.info(
            "call %s: %s; waiting %g s for a resume",
            self.call_id,
            reason,
            self.limits.resume_window_s,
        )
        self._suspension = self._spawn(self._suspension_watchdog(reason), "suspension")

    async def _suspension_watchdog(self, reason: str) -> None:
        await asyncio.sleep(self.limits.resume_window_s)
        if self.suspended_since is not None:
            await self.close(reason)

    @property
    def suspended(self) -> bool:
        return self.suspended_since is not None

    def may_resume(self, token: str | None) -> bool:
        """`token` is this call's resume token, and the call is running (connected or waiting
        for a resume): its holder may move the call to a new peer connection."""
        if not self.resume_token or token is None or self.state != "active":
            return False
        return hmac.compare_digest(token.encode(), self.resume_token.encode())

    def replace_peer(self, pc: RTCPeerConnection) -> None:
        """Move the call to `pc` (a resume): the old peer connection is closed, the call waits
        for the new one to connect (within the resume window), the engine session goes on."""
        old, self.pc = self.pc, pc
        self._wire_peer_connection(pc)
        self._suspend("connection replaced")
        self.peers += 1
        self.resume_token = secrets.token_urlsafe(24)  # the old one is spent
        self.outbound.stop()  # the old sender's track; the new connection gets a fresh one
        self.outbound = OpusAudioTrack(jitter=self.playout)
        self._spawn(self._close_peer(old), "close-old-peer")

    async def _close_peer(self, pc: RTCPeerConnection) -> None:
        with contextlib.suppress(Exception):
            await pc.close()

    def _resumed(self) -> None:
        if self.suspended_since is None:
            return
        gone_s = time.monotonic() - self.suspended_since
        self.suspended_since = None
        if self._suspension is not None:
            self._suspension.cancel()
            self._suspension = None
        self.resumes += 1
        self.metrics.resumes.inc()
        self.last_activity = time.monotonic()
        log.info("call %s: resumed after %.1f s (resume %d)", self.call_id, gone_s, self.resumes)

    @property
    def connecting(self) -> bool:
        """Offered, not connected yet (holds a slot until `limits.connect_timeout_s`)."""
        return self.state in {"new", "connecting"}

    def begin(self) -> None:
        """Called once the answer is sent: free everything if the peer never connects."""
        self.state = "connecting"
        self._event_bucket = TokenBucket(self.limits.events_per_s, self.limits.events_burst)
        self._spawn(self._connect_watchdog(), "connect-watchdog")

    async def _connect_watchdog(self) -> None:
        await asyncio.sleep(self.limits.connect_timeout_s)
        if self.state == "connecting":
            await self.close(f"no connection within {self.limits.connect_timeout_s:g} s")

    async def _lifetime_watchdog(self) -> None:
        """Ends calls whose peer vanished (no media, no events) or that ran too long."""
        started = time.monotonic()
        every = min(1.0, self.limits.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            if now - self.last_activity > self.limits.idle_timeout_s:
                await self.close(
                    f"idle: nothing from the peer for {self.limits.idle_timeout_s:g} s"
                )
                return
            if now - started > self.limits.max_duration_s:
                await self.close(f"maximum call duration ({self.limits.max_duration_s:g} s)")
                return

    def _start_media(self) -> None:
        if self._started:
            return
        self._started = True
        self.state = "active"
        # every call's micro-turns end at the same instants: the engine steps them together
        self.clock = SessionClock(t0=grid_tick(time.monotonic()))
        self.timeline = AudioTimeline(self.clock)
        self.video = VideoSampler(self.clock, self.engine.frame_size)
        self.last_activity = time.monotonic()
        self._spawn(self._turn_loop(), "turns")
        self._spawn(self._output_loop(), "outputs")
        self._spawn(self._lifetime_watchdog(), "lifetime")
        if self.agent is not None:
            self._spawn(self._agent_results(), "agent-results")

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.set_name(f"call-{self.call_id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "call %s: task %s failed",
                self.call_id,
                task.get_name(),
                exc_info=task.exception(),
            )
            self.send_event("error", code="internal_error", message="a call task failed")

    # -- inbound media --------------------------------------------------------------------------
    def _audio_sink(self) -> Callable[[av.AudioFrame], None]:
        """Where one audio track's decoded frames go: the call's timeline, through an AudioInput
        of its own (a resumed call's new track starts anew)."""
        inputs: list[AudioInput] = []

        def sink(frame: av.AudioFrame) -> None:
            arrival = time.monotonic()
            self.last_activity = arrival
            if self.timeline is None:
                return
            if not inputs:
                inputs.append(AudioInput(self.timeline))
                self.audio_in = inputs[0]
            inputs[0].push_frame(frame, arrival)

        return sink

    async def _consume(
        self, track: MediaStreamTrack, sink: Callable[[av.AudioFrame], None] | None = None
    ) -> None:
        """Read every frame of a track, always: an unread aiortc track queues without bound.
        Audio decoded on the loop (media/opus.py) comes only as the track's end."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                log.info("call %s: %s track ended", self.call_id, track.kind)
                with contextlib.suppress(ValueError):
                    self._tracks.remove(track)  # (a resumed call's old tracks)
                return
            if sink is not None:
                sink(frame)  # type: ignore[arg-type]
                continue
            arrival = time.monotonic()
            self.last_activity = arrival
            if self.video is not None:
                self.video.push_frame(frame, arrival)  # type: ignore[arg-type]

    # -- the micro-turn loop --------------------------------------------------------------------
    async def _turn_loop(self) -> None:
        assert self.clock and self.timeline and self.video
        index = 0
        while True:
            grace_s = self.timeline.grace_s  # take() adapts it for the next micro-turn
            await self.clock.sleep_until(self.clock.slice_end(index) + grace_s)
            self._cut_grace_s[index % GRACE_RING] = grace_s
            audio, gaps = self.timeline.take(index)
            self.metrics.audio_gap_samples.inc(gaps)
            self.playback.on_sent(self.outbound.sent_position)
            frame = await self.video.pick_async(index)
            inp = MicroTurnInput(
                index=index,
                audio=audio,
                frame=frame,
                text=self._take_text(index),
                played_ms=self.playback.played_ms(time.monotonic()),
            )
            future = asyncio.ensure_future(self.engine.append(self.slot, inp))
            await self._pending.put(future)
            index += 1

    async def _output_loop(self) -> None:
        while True:
            future = await self._pending.get()
            try:
                out = await future
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed step is this call's problem, not the server's
                self.stats.failed_steps += 1
                self.metrics.failed_steps.inc()
                message = f"the model failed on micro-turn(s) of this call: {exc}"[:200]
                if self._send_repeating_error("step_failed", message):
                    log.warning("call %s: step failed: %s", self.call_id, exc)
                continue
            self._handle_output(out)

    def _handle_output(self, out: MicroTurnOutput) -> None:
        if out.restart is not None:  # its session moved to another inference worker
            self.stats.restarts += 1
            self.metrics.failovers.labels(out.restart).inc()
            log.warning("call %s: model session restarted (%s)", self.call_id, out.restart)
            self.send_event("session.restarted", microturn=out.index, reason=out.restart)
        self.stats.microturns += 1
        self.metrics.microturns.inc()
        self.metrics.step_ms.observe(out.step_ms)
        if out.late:
            self.stats.late_steps += 1
            self.metrics.late_steps.inc()
        if out.speaking != self._speaking:
            self._speaking = out.speaking
            if out.speaking:
                self.playback.utterance_started(out.index)
                self.transcript.utterance_started(out.index)
                self.send_event("output_audio.started", microturn=out.index, **self._timing(out))
            else:
                # The model went quiet (finished, or yielded to a barge-in): stop at once. What is
                # still queued is at most the last ~60 ms of the previous micro-turn. The user
                # hears what was sent, and the transcript keeps only that of what it said.
                self.outbound.flush()
                self.playback.on_sent(self.outbound.sent_position)
                utterance = self.playback.utterance
                self.transcript.utterance_stopped(out.index, self.playback.utterance_stopped())
                heard = (
                    self.transcript.utterance_heard(utterance) if utterance is not None else None
                )
                hints: dict[str, Any] = {"_utterance": utterance}
                if heard is not None:
                    hints.update(_heard=heard[0], _truncated=heard[1])
                self.send_event(
                    "output_audio.stopped", microturn=out.index, **self._timing(out), **hints
                )
        self.outbound.write(out.audio, out.index, speaking=out.speaking)
        part = self.transcript.model_text(out.index, out.text, end=out.end_of_utterance)
        if out.text:
            self.send_event(
                "output_text.delta",
                microturn=out.index,
                text=out.text,
                _part=part,
                _end=out.end_of_utterance,
            )
        elif out.end_of_utterance:
            self.send_event("_text.ended", microturn=out.index)
        if out.delegate:
            self.delegate(out.delegate, out.index)

    def _timing(self, out: MicroTurnOutput) -> dict[str, float]:
        """Where this micro-turn's time went on the server, beyond the contract (docs/api.md): from
        the end of its audio slice to now, of which the grace waited (the one it was cut with:
        the timeline adapts the grace at every cut) and the model's step."""
        if self.clock is None or self.timeline is None:
            return {}
        return {
            "after_slice_end_ms": round(
                (time.monotonic() - self.clock.slice_end(out.index)) * 1000, 1
            ),
            "grace_ms": round(self._cut_grace_s[out.index % GRACE_RING] * 1000, 1),
            "step_ms": round(out.step_ms, 1),
            "cushion_ms": self.outbound.stats.cushion_ms,
        }

    # -- text and agent -------------------------------------------------------------------------
    def queue_text(self, text: str, committed: bool = False) -> None:
        """Typed text joins the model's text stream at the next micro-turn; bounded (the oldest
        goes first, counted). `committed`: announce it (`input_text.committed`) when it does."""
        while self._text_queue and self._text_chars + len(text) > MAX_QUEUED_TEXT_CHARS:
            dropped, _ = self._text_queue.popleft()
            self._text_chars -= len(dropped)
            self.stats.dropped_text_chars += len(dropped)
        self._text_queue.append((text, committed))
        self._text_chars += len(text)

    def _take_text(self, microturn: int) -> str:
        """What is queued, as micro-turn `microturn`'s text input; the typed messages in it are
        announced with that micro-turn (a client can tell when the model began reading them)."""
        if not self._text_queue:
            return ""
        text = "".join(t for t, _ in self._text_queue)
        for t, committed in self._text_queue:
            if committed:
                self.send_event("input_text.committed", microturn=microturn, chars=len(t))
        self._text_queue.clear()
        self._text_chars = 0
        return text

    @property
    def pending_steps(self) -> int:
        return self._pending.qsize()

    @property
    def agent_outbox(self) -> int:
        return self.agent.status.pending_publish if self.agent is not None else 0

    @property
    def microturn_now(self) -> int:
        return self.clock.microturn_at() if self.clock else 0

    def _remember(self, microturn: int, role: str, kind: str, text: str) -> None:
        self.transcript.add(microturn, role, kind, text)

    def delegate(self, request: str, microturn: int) -> None:
        """Hand work to the background model: a context package with the whole conversation."""
        if self.agent is None:
            self.send_event("error", code="agent_unavailable", message="no background model here")
            return
        self._spawn(self._submit(request, microturn), "agent-submit")

    async def _submit(self, request: str, microturn: int) -> None:
        assert self.agent is not None
        conversation = self.transcript.turns()
        try:
            task_id = await self.agent.submit(request, conversation, microturn)
        except TooManyTasks as exc:
            self.send_event("agent.task", **weave.refused_event(request, str(exc)))
            return
        except AgentError as exc:
            self.send_event("error", code="agent_unavailable", message=str(exc))
            return
        self.stats.agent_tasks += 1
        self.metrics.agent_tasks.inc()
        if len(self._task_started) < MAX_TRACKED_TASKS:
            self._task_started[task_id] = time.monotonic()
        log.info("call %s: delegated %s: %r", self.call_id, task_id, request[:80])
        self.send_event("agent.task", **weave.queued_event(task_id, request))

    async def _agent_results(self) -> None:
        """Background results, in order: to the page as `agent.task`, to the model as text."""
        assert self.agent is not None
        async for result in self.agent.results():
            self.send_event("agent.task", **weave.task_event(result))
            if result.kind in {"final", "error"} and result.package_id in self._task_started:
                took = time.monotonic() - self._task_started.pop(result.package_id)
                self.metrics.agent_task_seconds.labels(result.kind).observe(took)
            text = weave.model_text(result)
            if text:
                self.queue_text(text)
                self._remember(self.microturn_now, "agent", "text", text.strip())

    # -- the events channels --------------------------------------------------------------------
    def _dialect_for(self, label: str) -> Dialect | None:
        if label == events.EVENTS_LABEL:
            return MicroturnDialect()
        if label == REALTIME_LABEL:
            return RealtimeDialect(self.call_id)
        return None

    @property
    def channel(self) -> RTCDataChannel | None:
        """The `events` channel, else the first one opened."""
        for ch in sorted(self.channels, key=lambda c: c.label != events.EVENTS_LABEL):
            return ch.channel
        return None

    def _attach_channel(self, ch: EventChannel) -> None:
        self.channels.append(ch)
        channel = ch.channel

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            try:
                self._on_client_message(ch, message)
            except Exception:  # an exception here would end the call: aiortc's SCTP reader dies
                log.exception("call %s: handling a client message failed", self.call_id)
                self._send_repeating_error("internal_error", "the server could not handle that")

        @channel.on(channel_guard.INVALID_MESSAGE)
        def on_invalid(reason: str) -> None:
            self.last_activity = time.monotonic()
            self.stats.event_errors += 1
            self.metrics.event_errors.labels("invalid_text").inc()
            self._send_repeating_error("invalid_text", reason, ch)

        def created() -> None:
            ch.send(
                "session.created",
                call_id=self.call_id,
                microturn_ms=MICROTURN_MS,
                model=self.engine.model_name,
                video=video_request(self.engine.frame_size),
                _instructions=self.instructions,
                **self._session_extras(),
            )
            while self._held:  # what happened while the client was away (a resume)
                type_, fields = self._held.popleft()
                ch.send(type_, **fields)

        if channel.readyState == "open":
            created()
        else:
            channel.on("open", created)

    def _on_client_message(self, ch: EventChannel, message: str | bytes) -> None:
        self.last_activity = time.monotonic()
        if self._event_bucket is not None and self._event_bucket.take() > 0:
            self.stats.events_dropped += 1
            self.metrics.event_errors.labels("rate_limited").inc()
            self._send_repeating_error(
                "rate_limited",
                f"more than {self.limits.events_per_s:g} messages a second; some were dropped",
                ch,
            )
            return
        try:
            event = ch.dialect.parse(message)
        except events.EventError as exc:
            self.stats.event_errors += 1
            self.metrics.event_errors.labels(exc.code).inc()
            ch.send("error", code=exc.code, message=exc.message)
            return
        ok = True
        if isinstance(event, events.InputText):
            self._remember(self.microturn_now, "user", "text", event.text)
            request = weave.parse_ask(event.text)
            if request is not None:
                self.delegate(request, self.microturn_now)
            else:
                self.queue_text(event.text, committed=True)
        elif isinstance(event, events.SessionUpdate):
            if event.instructions is not None:
                self.apply_instructions(event.instructions)
        elif isinstance(event, events.OutputAudioPlayed):
            heard = self.playback.on_report(event.microturn, event.played_ms, time.monotonic())
            if heard is not None:  # about the utterance that stopped: what the user heard of it
                self.transcript.heard(event.microturn, heard)
        elif isinstance(event, TruncateItem):
            ok = self.transcript.truncate(event.utterance, event.audio_end_ms)
        ch.send_messages(ch.dialect.acknowledge(ok))

    def apply_instructions(self, instructions: str) -> None:
        """The model reads them in its text stream; the background model in the transcript."""
        self.instructions = instructions
        self._remember(self.microturn_now, "user", "event", instructions)
        self.queue_text(instructions)

    def _send_repeating_error(
        self, code: str, message: str, channel: EventChannel | None = None
    ) -> bool:
        """An `error` event for something that may repeat every micro-turn: at most one a second
        per code (to `channel`, else to every channel). Returns whether it was sent."""
        now = time.monotonic()
        if now - self._last_error_at.get(code, -REPEAT_ERROR_EVERY_S) < REPEAT_ERROR_EVERY_S:
            return False
        self._last_error_at[code] = now
        if channel is not None:
            channel.send("error", code=code, message=message)
        else:
            self.send_event("error", code=code, message=message)
        return True

    def _session_extras(self) -> dict[str, Any]:
        """session.created's fields beyond the contract: how to resume, the ICE servers (with
        fresh TURN credentials) for the re-offer, and whether this is a resumed session."""
        extras: dict[str, Any] = {}
        if self.resume_token:
            extras["resume_token"] = self.resume_token
            extras["resume_window_s"] = self.limits.resume_window_s
        if self.ice_servers is not None:
            extras["ice_servers"] = self.ice_servers()
        if self.peers > 1:
            extras["resumed"] = True
            extras["microturn"] = self.microturn_now
        return extras

    def send_event(self, type_: str, **fields: Any) -> None:
        """One of the call's events to every open channel, each in its dialect; while the client
        is away, background results wait for it (bounded)."""
        if self.suspended and type_ in HELD_EVENTS:
            self._held.append((type_, fields))
            return
        for ch in self.channels:
            ch.send(type_, **fields)

    # -- status and teardown --------------------------------------------------------------------
    async def _say_goodbye(self, reason: str) -> None:
        channels = [ch.channel for ch in self.channels if ch.open]
        if not channels:
            return
        drained = [asyncio.Event() for _ in channels]
        for channel, event in zip(channels, drained, strict=True):
            channel.once("bufferedamountlow", event.set)
        self.send_event("session.ended", reason=reason)
        waits = [e.wait() for c, e in zip(channels, drained, strict=True) if c.bufferedAmount > 0]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), GOODBYE_FLUSH_S)
        await asyncio.sleep(0.02)  # let SCTP put it on the wire before the transport closes

    def snapshot(self) -> CallSnapshot:
        audio = self.timeline.stats if self.timeline else AudioInStats()
        return CallSnapshot(
            connecting=self.connecting,
            outbound_audio_ms=self.outbound.queued_ms,
            pending_steps=self.pending_steps,
            agent_outbox=self.agent_outbox,
            audio_late_ms=audio.late_samples * 1000 // SAMPLE_RATE_HZ,
            outbound_overflow_samples=self.outbound.stats.dropped_samples,
        )

    def describe(self) -> dict[str, Any]:
        audio = self.timeline.stats if self.timeline else AudioInStats()
        return {
            "call_id": self.call_id,
            "state": self.state,
            "created_at": self.created_at,
            "microturns": self.stats.microturns,
            "late_steps": self.stats.late_steps,
            "audio_gaps": audio.gap_microturns,
            "audio_gap_ms": audio.gap_samples * 1000 // SAMPLE_RATE_HZ,
            "audio_late_ms": audio.late_samples * 1000 // SAMPLE_RATE_HZ,
            "audio_reanchors": audio.reanchors,
            "audio_grace_ms": round(self.timeline.grace_s * 1000) if self.timeline else None,
            "audio_cushion_ms": self.outbound.stats.cushion_ms,
            "audio_underruns": self.outbound.stats.underruns,
            "audio_underruns_audible": self.outbound.stats.audible_underruns,
            "video_frames_used": self.video.stats.frames_used if self.video else 0,
            "video_frames_received": self.video.stats.frames if self.video else 0,
            "video_frame_size": (
                [self.video.stats.width, self.video.stats.height]
                if self.video and self.video.stats.frames
                else None
            ),
            "agent_tasks": self.stats.agent_tasks,
            "agent": self.agent.status.as_dict() if self.agent is not None else None,
            "failed_steps": self.stats.failed_steps,
            "events_dropped": self.stats.events_dropped,
            "resumes": self.resumes,
            "suspended": self.suspended,
            "model_restarts": self.stats.restarts,
        }

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self, reason: str = "closed") -> None:
        """End the call and free everything; the peer gets `session.ended` if it can still hear."""
        if self.state == "closed":
            return
        self.state = "closed"
        self.suspended_since = None
        log.info("call %s: closing (%s)", self.call_id, reason)
        self.metrics.calls_ended.labels(end_label(reason)).inc()
        await self._say_goodbye(reason)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        while not self._pending.empty():
            self._pending.get_nowait().cancel()
        self.engine.close(self.slot)
        if self.agent is not None:
            with contextlib.suppress(Exception):
                await self.agent.close()
        self.outbound.stop()
        for track in self._tracks:
            track.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
        if tasks:  # bounded: a task stuck in a library that swallowed its cancellation is left
            _, stuck = await asyncio.wait(tasks, timeout=TASK_STOP_TIMEOUT_S)
            if stuck:
                log.warning("call %s: %d task(s) did not stop", self.call_id, len(stuck))
        self._closed.set()
        if self.on_closed is not None:
            result = self.on_closed(self)
            if asyncio.iscoroutine(result):
                await result
