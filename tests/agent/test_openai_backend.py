"""The `openai` backend against a small OpenAI-compatible server on a real socket.

The server streams `chat.completion.chunk` SSE like the real API: first a tool call whose
arguments arrive in pieces, then (after the tool result comes back) the answer in text deltas.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from agent.backends import BackendEvent
from agent.backends.openai import OpenAIBackend, iter_sse
from agent.bus import StreamKeys
from agent.client import AgentClient
from agent.types import ContextPackage, Turn
from infra.embedded_redis import free_port
from tests.agent.conftest import Workers, collect, finals_for

API_KEY = "sk-test-123"
MODEL = "tiny-test-model"


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.chat)
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @staticmethod
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response(
                {
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                    }
                },
                status=401,
            )
        body = await request.json()
        self.requests.append(body)
        assert body["stream"] is True and body["model"] == MODEL
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(obj: dict[str, Any] | str) -> None:
            data = obj if isinstance(obj, str) else json.dumps(obj)
            await resp.write(f"data: {data}\n\n".encode())
            await asyncio.sleep(0.01)

        await resp.write(b": keep-alive comment\n\n")
        if body["messages"][-1]["role"] != "tool":
            await send(self.chunk({"role": "assistant", "content": None}))
            await send(
                self.chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_abc",
                                "type": "function",
                                "function": {"name": "calculate", "arguments": ""},
                            }
                        ]
                    }
                )
            )
            for piece in ['{"expre', 'ssion": "1', '2*7"}']:
                await send(
                    self.chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                )
            await send(self.chunk({}, "tool_calls"))
        else:
            tool_result = json.loads(body["messages"][-1]["content"])
            answer = f"The answer is {tool_result['value']}."
            await send(self.chunk({"role": "assistant", "content": ""}))
            for piece in [answer[:4], answer[4:11], answer[11:]]:
                await send(self.chunk({"content": piece}))
            await send(self.chunk({}, "stop"))
        await send("[DONE]")
        await resp.write_eof()
        return resp


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


CONVERSATION = [
    Turn(0, "user", "speech", "could you multiply twelve by seven"),
    Turn(4, "model", "speech", "let me check"),
]


async def run_backend(backend: OpenAIBackend, text: str) -> list[BackendEvent]:
    package = ContextPackage.new("call-oa", text, CONVERSATION, 5)
    try:
        return [e async for e in backend.run(package)]
    finally:
        await backend.aclose()


async def test_streamed_tool_call_then_answer(fake_openai: FakeOpenAI) -> None:
    backend = OpenAIBackend(
        base_url=fake_openai.base_url, api_key=API_KEY, model=MODEL, partial_interval_s=0
    )
    events = await run_backend(backend, "/ask what is 12*7")

    assert events[0] == BackendEvent(
        "partial", "Using calculate…", {"tool": "calculate", "stage": "call"}
    )
    deltas = [e.text for e in events if e.kind == "partial" and e.data and e.data.get("delta")]
    assert "".join(deltas) == "The answer is 84."
    assert len(deltas) == 3  # streamed as it came
    final = events[-1]
    assert final.kind == "final" and final.text == "The answer is 84."
    assert final.data is not None
    assert final.data["tool_calls"] == [
        {
            "name": "calculate",
            "arguments": '{"expression": "12*7"}',
            "result": {"expression": "12*7", "value": 84},
        }
    ]
    # What the endpoint saw: the tools, the transcript and task, then the tool round trip.
    first, second = fake_openai.requests
    assert [t["function"]["name"] for t in first["tools"]] == [
        "calculate",
        "convert_units",
        "current_time",
        "set_timer",
    ]
    user = first["messages"][1]["content"]
    assert "[0] user (speech): could you multiply twelve by seven" in user
    assert user.endswith("Task: what is 12*7")
    assistant, tool = second["messages"][2], second["messages"][3]
    assert assistant["tool_calls"][0]["id"] == "call_abc"
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"expression": "12*7"}'
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_abc"


async def test_bad_key_is_an_error_result(fake_openai: FakeOpenAI) -> None:
    backend = OpenAIBackend(base_url=fake_openai.base_url, api_key="wrong", model=MODEL)
    events = await run_backend(backend, "what is 12*7")
    assert [e.kind for e in events] == ["error"]
    assert "401" in events[0].text and "Incorrect API key" in events[0].text


async def test_unreachable_endpoint_is_an_error_result() -> None:
    backend = OpenAIBackend(base_url=f"http://127.0.0.1:{free_port()}/v1", model=MODEL)
    events = await run_backend(backend, "what is 12*7")
    assert [e.kind for e in events] == ["error"]
    assert "unavailable" in events[0].text


async def test_openai_backend_through_the_bus(
    fake_openai: FakeOpenAI,
    redis_client: aioredis.Redis,
    keys: StreamKeys,
    workers: Workers,
    unique: str,
) -> None:
    backend = OpenAIBackend(
        base_url=fake_openai.base_url, api_key=API_KEY, model=MODEL, partial_interval_s=0
    )
    try:
        await workers.start(backend)
        client = AgentClient(redis_client, f"call-{unique}", keys=keys)
        package_id = await client.submit("/ask what is 12*7", CONVERSATION, microturn=5)
        got = await collect(client, lambda rs: finals_for(rs, [package_id]))
    finally:
        await workers.stop_all()
        await backend.aclose()
    assert got[0].kind == "started" and got[-1].kind == "final"
    assert got[-1].text == "The answer is 84."
    assert [r.seq for r in got] == list(range(len(got)))
    assert sum(r.kind == "partial" for r in got) == 4
    await client.close()


async def test_sse_parser_handles_multiline_and_comments() -> None:
    class Body:
        def __init__(self, lines: list[bytes]) -> None:
            self.lines = lines

        def __aiter__(self) -> AsyncIterator[bytes]:
            async def gen() -> AsyncIterator[bytes]:
                for line in self.lines:
                    yield line

            return gen()

    class Response:
        content = Body(
            [
                b": hi\n",
                b'data: {"a":\n',
                b"data: 1}\n",
                b"\n",
                b"event: x\n",
                b"data:2\r\n",
                b"\r\n",
                b"data: [DONE]\n",
                b"\n",
                b"data: 3\n",
                b"\n",
            ]
        )

    out = [p async for p in iter_sse(Response())]  # type: ignore[arg-type]
    assert out == ['{"a":\n1}', "2"]


def test_the_background_model_is_told_where_the_user_cut_the_assistant_off() -> None:
    from agent.backends.openai import transcript

    package = ContextPackage.new(
        "call-oa",
        "what was I told",
        [
            Turn(4, "model", "speech", "the answer is", truncated=True),
            Turn(9, "user", "text", "hm"),
        ],
    )
    lines = transcript(package).splitlines()
    assert lines[0].startswith("[4] model (speech): the answer is [cut off")
    assert lines[1] == "[9] user (text): hm"
