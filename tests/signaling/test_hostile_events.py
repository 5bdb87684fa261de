"""Hostile data-channel messages against a live call (real server, real aiortc peer, real Redis).

Each message must get an `error` event, and the call must stay `active` and keep answering: no
message may end a call or poison what the call later sends to Redis.
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiortc.rtcsctptransport import DATA_CHANNEL_OPEN, WEBRTC_DCEP, WEBRTC_STRING
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.config import Config
from media.synthetic import tone
from signaling.app import create_app
from signaling.client import CallClient
from tests.conftest import MakeServer

HOSTILE: list[tuple[str, str | bytes]] = [
    (
        "an integer past the 4300-digit limit",
        '{"type":"output_audio.played","microturn":' + "9" * 5000 + ',"played_ms":1}',
    ),
    ("a float that overflows", '{"type":"output_audio.played","microturn":1e400,"played_ms":1}'),
    ("NaN", '{"type":"output_audio.played","microturn":NaN,"played_ms":1}'),
    ("Infinity", '{"type":"output_audio.played","microturn":1,"played_ms":Infinity}'),
    ("-Infinity", '{"type":"output_audio.played","microturn":-Infinity,"played_ms":1}'),
    (
        "a huge counter",
        '{"type":"output_audio.played","microturn":99999999999999999999,"played_ms":1}',
    ),
    ("a lone surrogate in text", '{"type":"input_text","text":"hello \\ud800 there"}'),
    ("a lone surrogate in instructions", '{"type":"session.update","instructions":"\\udfff"}'),
    ("a lone surrogate as the type", '{"type":"\\ud800"}'),
    ("a lone surrogate in an /ask", '{"type":"input_text","text":"/ask what is 1+\\udc00"}'),
    ("deep array nesting", "[" * 8000 + "]" * 8000),
    ("deep object nesting", '{"a":' * 2700 + "1" + "}" * 2700),
    ("a long float literal", '{"type":"output_audio.played","microturn":' + "1" * 400 + ".5}"),
    ("binary", b"\x00\x01\x02 binary"),
]
INVALID_UTF8 = b'{"type":"input_text","text":"\xff\xfe\xfd"}'


async def send_invalid_utf8(call: CallClient, data: bytes) -> None:
    """A text message (PPID 51) whose bytes are not UTF-8: aiortc's own send() cannot make one."""
    transport = call.channel.transport
    transport._data_channel_queue.append((call.channel, WEBRTC_STRING, data))
    await transport._data_channel_flush()


async def send_duplicate_open(call: CallClient) -> None:
    """A second DATA_CHANNEL_OPEN for the stream the `events` channel already uses (aiortc
    asserts it never happens; an assert in its SCTP reader ends the transport)."""
    label = b"events"
    open_message = struct.pack("!BBHLHH", DATA_CHANNEL_OPEN, 0, 0, 0, len(label), 0) + label
    transport = call.channel.transport
    transport._data_channel_queue.append((call.channel, WEBRTC_DCEP, open_message))
    await transport._data_channel_flush()


async def answered(call: CallClient, marker: str, after: int, timeout: float = 20.0) -> None:
    """Send an unknown event named `marker` and wait for its error: the channel still works, and
    every earlier message was handled (the channel is ordered)."""
    call.send(marker)
    await call.wait_event(
        "error",
        lambda e: e.get("code") == "unknown_event" and marker in e["message"],
        timeout=timeout,
        after=after,
    )


async def test_no_hostile_message_ends_the_call_and_the_transcript_stays_clean(
    make_server: MakeServer,
) -> None:
    server = await make_server(agent_workers=1, events_per_s=200.0)
    base = str(server.make_url("")).rstrip("/")
    async with CallClient(base, audio=tone()) as call:
        await call.wait_event("session.created", timeout=60)
        for i, (name, message) in enumerate(HOSTILE):
            seen = len(call.events)
            call.send_raw(message)
            await call.wait_event("error", timeout=20, after=seen)
            await answered(call, f"probe-{i}", seen)
            assert (await call.status())["state"] == "active", f"after {name}"
        seen = len(call.events)
        await send_invalid_utf8(call, INVALID_UTF8)
        error = await call.wait_event("error", timeout=20, after=seen)
        assert error["code"] == "invalid_text", error
        await answered(call, "probe-utf8", seen)
        await send_duplicate_open(call)  # beyond the list: aiortc internals
        await answered(call, "probe-dcep", len(call.events))
        assert (await call.status())["state"] == "active"
        # The transcript (sent whole in every context package) is not poisoned: /ask still works.
        call.send("input_text", text="/ask what is 6*7")
        done = await call.wait_event("agent.task", lambda e: e["status"] == "done", timeout=60)
        assert "42" in done["text"]
        status = await call.status()
        assert status["state"] == "active"
        await call.hang_up()


# -- the whole grammar, property-based, against one live call ----------------------------------
class LiveCall:
    """A server (`--model echo`) and one connected aiortc call on an event loop of their own
    thread, so a synchronous hypothesis test can drive them message by message."""

    def __init__(self, redis_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: TestServer | None = None
        self.call: CallClient | None = None
        self.probes = 0
        self.run(self._start(redis_url), timeout=120)

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    async def _start(self, redis_url: str) -> None:
        config = Config.from_env(
            {},
            redis_url=redis_url,
            model="echo",
            agent_workers=0,
            max_loop_lag_ms=0.0,
            events_per_s=1000.0,
        )
        self.server = TestServer(create_app(config), host="127.0.0.1")
        await self.server.start_server()
        self.call = CallClient(str(self.server.make_url("")).rstrip("/"), audio=tone())
        await self.call.connect()
        await self.call.wait_event("session.created", timeout=60)

    async def _exchange(self, message: str | bytes) -> str:
        assert self.call is not None
        seen = len(self.call.events)
        self.call.send_raw(message)
        self.probes += 1
        await answered(self.call, f"probe-{self.probes}", seen)
        state: str = (await self.call.status())["state"]
        return state

    def exchange(self, message: str | bytes) -> str:
        state: str = self.run(self._exchange(message))
        return state

    def close(self) -> None:
        async def stop() -> None:
            if self.call is not None:
                await self.call.close()
            if self.server is not None:
                await self.server.close()

        try:
            self.run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_call(redis_server: Any) -> Iterator[LiveCall]:
    live = LiveCall(redis_server.url)
    try:
        yield live
    finally:
        live.close()


numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=4000, max_value=6000).map(lambda n: "9" * n),
    st.floats().map(lambda f: json.dumps(f)),  # NaN, Infinity, -Infinity included
    st.sampled_from(["1e400", "-1e400", "1e-400", "0.0", "-0", "1" * 500 + ".5"]),
)
texts = st.one_of(
    st.text(max_size=40).map(json.dumps),
    st.sampled_from(['"\\ud800"', '"a\\udfffb"', '"\\ud83d"', '"\\u0000"', '""', '"   "']),
    st.integers(min_value=1, max_value=5000).map(lambda n: json.dumps("x" * n)),
)
leaves = st.one_of(numbers, texts, st.sampled_from(["true", "false", "null", "[]", "{}"]))
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(st.text(max_size=8), inner), max_size=3).map(
            lambda kv: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in kv) + "}"
        ),
    ),
    max_leaves=8,
)
types = (
    st.sampled_from(
        ["input_text", "session.update", "output_audio.played", "", "nope", "\\ud800"]
    ).map(lambda t: f'"{t}"')
    | values
)
fields = st.sampled_from(["text", "instructions", "microturn", "played_ms", "type", "x"])
messages = st.one_of(
    st.tuples(types, st.lists(st.tuples(fields, values), max_size=4)).map(
        lambda t: "{" + ",".join([f'"type":{t[0]}', *(f'"{k}":{v}' for k, v in t[1])]) + "}"
    ),
    values,
    st.binary(max_size=64),
    st.integers(min_value=1, max_value=9000).map(lambda n: "[" * n + "]" * n),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(messages)
def test_any_message_of_the_grammar_leaves_the_call_active_and_answering(
    live_call: LiveCall, message: str | bytes
) -> None:
    assert live_call.exchange(message) == "active"
