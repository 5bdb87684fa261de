"""A background model behind any OpenAI-compatible chat-completions endpoint, streamed (SSE).

    POST {base_url}/chat/completions  {"model", "messages", "stream": true, "tools": [...]}
      <- data: {"object": "chat.completion.chunk", "choices": [{"delta": {...}}]} ... data: [DONE]

Text deltas are streamed out as `partial`s (coalesced to one per `partial_interval_s`); tool-call
deltas are assembled, the builtin tools run (their progress streamed too), their results go back
as `tool` messages, and the loop continues until the model answers without tools. The answer is
the `final`. Works with OpenAI, vLLM, llama.cpp server, Ollama's /v1, LM Studio and the like.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from agent.backends.base import BackendEvent
from agent.backends.tools import Toolbox, ToolError, ToolResult
from agent.types import ContextPackage
from agent.weave import strip_ask

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are the background model of Microturn, a real-time voice and video assistant. The "
    "assistant is in a live conversation with a user and has handed you a task. Do it, using the "
    "tools when they help (always use `calculate` for arithmetic), and answer briefly and plainly: "
    "your answer is spoken or shown to the user. Do not ask questions back; if something is "
    "unclear, make a reasonable assumption and say so."
)
MAX_TRANSCRIPT_CHARS = 12_000
MAX_ERROR_BODY_CHARS = 500
MAX_EVENT_CHARS = 1024 * 1024  # one server-sent event; a stream that sends more is broken


class BackendHTTPError(Exception):
    pass


def transcript(package: ContextPackage, max_chars: int = MAX_TRANSCRIPT_CHARS) -> str:
    """The conversation as plain lines, newest kept when it is too long."""
    lines: list[str] = []
    used = 0
    for turn in reversed(package.conversation):
        line = f"[{turn.microturn}] {turn.role} ({turn.kind}): {turn.text}"
        if turn.truncated:
            line += " [cut off: the user interrupted here; they heard only this much]"
        if used + len(line) > max_chars:
            lines.append("[earlier conversation omitted]")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(reversed(lines))


def build_messages(
    package: ContextPackage, *, system_prompt: str = SYSTEM_PROMPT, vision: bool = False
) -> list[dict[str, Any]]:
    request = strip_ask(package.request.text)
    history = transcript(package)
    text = (
        f"Conversation so far (micro-turn numbers in brackets, 5 per second):\n{history}\n\n"
        if history
        else ""
    ) + f"Task: {request}"
    content: Any = text
    if vision and package.frame_jpeg_b64:
        content = [
            {"type": "text", "text": text},
            {
                "type": "image_url",
                "image_url": {"url": f"data:image/jpeg;base64,{package.frame_jpeg_b64}"},
            },
        ]
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": content}]


async def iter_sse(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The `data` of each server-sent event, until `[DONE]` or the end of the body."""
    data: list[str] = []
    size = 0
    async for raw in response.content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                payload = "\n".join(data)
                data, size = [], 0
                if payload.strip() == "[DONE]":
                    return
                yield payload
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
            size += len(data[-1])
            if size > MAX_EVENT_CHARS:
                raise BackendHTTPError(f"a streamed event passed {MAX_EVENT_CHARS} characters")
    if data and "\n".join(data).strip() != "[DONE]":
        yield "\n".join(data)


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        toolbox: Toolbox | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        vision: bool = False,
        max_tool_rounds: int = 6,
        read_timeout_s: float = 120.0,
        partial_interval_s: float = 0.25,
        temperature: float | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.toolbox = toolbox or Toolbox()
        self.system_prompt = system_prompt
        self.vision = vision
        self.max_tool_rounds = max_tool_rounds
        self.read_timeout_s = read_timeout_s
        self.partial_interval_s = partial_interval_s
        self.temperature = temperature
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=10.0, sock_read=self.read_timeout_s
                )
            )
        return self._session

    async def _chunks(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> AsyncIterator[dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        if self.temperature is not None:
            body["temperature"] = self.temperature
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        async with self._http().post(self.url, json=body, headers=headers) as resp:
            if resp.status != 200:
                detail = (await resp.text())[:MAX_ERROR_BODY_CHARS]
                raise BackendHTTPError(f"{self.url} answered {resp.status}: {detail}")
            async for payload in iter_sse(resp):
                try:
                    chunk = json.loads(payload)
                except (ValueError, RecursionError):  # huge integers, deep nesting too
                    raise BackendHTTPError(
                        f"bad SSE data from {self.url}: {payload[:200]}"
                    ) from None
                if isinstance(chunk, dict) and "error" in chunk:
                    raise BackendHTTPError(f"{self.url} streamed an error: {chunk['error']}")
                if isinstance(chunk, dict):
                    yield chunk

    async def run(self, package: ContextPackage) -> AsyncIterator[BackendEvent]:
        messages = build_messages(package, system_prompt=self.system_prompt, vision=self.vision)
        tools = self.toolbox.openai_tools()
        used_tools: list[dict[str, Any]] = []
        try:
            for round_ in range(self.max_tool_rounds + 1):
                content = ""
                pending = ""
                last_flush = time.monotonic()
                calls: dict[int, dict[str, str]] = {}
                finish: str | None = None
                offer_tools = tools if round_ < self.max_tool_rounds else None
                async for chunk in self._chunks(messages, offer_tools):
                    for choice in chunk.get("choices") or ():
                        if choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta") or {}
                        piece = delta.get("content")
                        if isinstance(piece, str) and piece:
                            content += piece
                            pending += piece
                        for tc in delta.get("tool_calls") or ():
                            _merge_tool_call(calls, tc)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                    now = time.monotonic()
                    if pending and now - last_flush >= self.partial_interval_s:
                        yield BackendEvent("partial", pending, {"delta": True})
                        pending, last_flush = "", now
                if pending and calls:
                    yield BackendEvent("partial", pending, {"delta": True})
                if not calls:
                    if not content.strip():
                        yield BackendEvent("error", "the model returned an empty answer", None)
                        return
                    yield BackendEvent(
                        "final",
                        content.strip(),
                        {"model": self.model, "finish_reason": finish, "tool_calls": used_tools},
                    )
                    return
                ordered = [calls[i] for i in sorted(calls)]
                messages.append(
                    {
                        "role": "assistant",
                        "content": content or None,
                        "tool_calls": [
                            {
                                "id": c["id"],
                                "type": "function",
                                "function": {"name": c["name"], "arguments": c["arguments"]},
                            }
                            for c in ordered
                        ],
                    }
                )
                for call in ordered:
                    yield BackendEvent(
                        "partial", f"Using {call['name']}…", {"tool": call["name"], "stage": "call"}
                    )
                    result_text = ""
                    result_data: dict[str, Any] = {}
                    async for event in self._call_tool(call, package):
                        if isinstance(event, ToolResult):
                            result_text, result_data = event.text, event.data
                        else:
                            yield BackendEvent(
                                "partial", event.text, {"tool": call["name"], **event.data}
                            )
                    used_tools.append(
                        {
                            "name": call["name"],
                            "arguments": call["arguments"],
                            "result": result_data,
                        }
                    )
                    messages.append(
                        {
                            "role": "tool",
                            "tool_call_id": call["id"],
                            "content": json.dumps(
                                {"result": result_text, **result_data}, default=str
                            ),
                        }
                    )
            yield BackendEvent("error", f"gave up after {self.max_tool_rounds} tool rounds", None)
        except (aiohttp.ClientError, TimeoutError, BackendHTTPError) as exc:
            log.warning("call %s: openai backend failed: %s", package.call_id, exc)
            yield BackendEvent(
                "error", f"background model unavailable: {exc}", {"reason": "backend_http"}
            )

    async def _call_tool(self, call: dict[str, str], package: ContextPackage) -> AsyncIterator[Any]:
        try:
            args = json.loads(call["arguments"] or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            yield ToolResult(f"error: invalid arguments for {call['name']}: {exc}", {"error": True})
            return
        try:
            async for event in self.toolbox.invoke(call["name"], args):
                yield event
        except ToolError as exc:
            yield ToolResult(f"error: {exc}", {"error": True})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _merge_tool_call(calls: dict[int, dict[str, str]], delta: dict[str, Any]) -> None:
    """Accumulate one tool_calls delta: id and name arrive first, arguments in pieces."""
    index = delta.get("index", 0)
    if not isinstance(index, int):
        index = 0
    entry = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    if delta.get("id"):
        entry["id"] = str(delta["id"])
    fn = delta.get("function") or {}
    name = fn.get("name")
    if isinstance(name, str) and name and name != entry["name"]:
        entry["name"] = name if not entry["name"] else entry["name"] + name
    args = fn.get("arguments")
    if isinstance(args, str):
        entry["arguments"] += args
    if not entry["id"]:
        entry["id"] = f"call_{index}"
