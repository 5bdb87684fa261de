"""Weaving background results back into a call: small pure helpers for the call object.

typed "/ask ..." or the model's delegate control --> AgentClient.submit() --> queued_event()
AgentClient.results() --> task_event(result)  --> `agent.task` event to the browser
                      --> model_text(result)  --> text input at the next micro-turn boundary
"""

from __future__ import annotations

import uuid
from typing import Any

from agent.types import AgentResult

ASK_PREFIX = "/ask "

# result kind -> `agent.task` status (api.md, data channel events)
TASK_STATUS = {"started": "running", "partial": "partial", "final": "done", "error": "failed"}


def parse_ask(text: str) -> str | None:
    """The request in typed text that starts with `/ask `, else None ("/ask" alone is None)."""
    stripped = text.lstrip()
    if not stripped.lower().startswith(ASK_PREFIX):
        return None
    request = stripped[len(ASK_PREFIX) :].strip()
    return request or None


def strip_ask(text: str) -> str:
    """The request without a leading `/ask ` (backends accept both forms)."""
    request = parse_ask(text)
    return text.strip() if request is None else request


def queued_event(package_id: str, request_text: str) -> dict[str, Any]:
    """Payload of the `agent.task` event sent when a task is submitted."""
    return {"task_id": package_id, "status": "queued", "text": request_text}


def refused_event(request_text: str, reason: str) -> dict[str, Any]:
    """Payload of the `agent.task` event for a task the call may not start (too many running)."""
    return {
        "task_id": uuid.uuid4().hex,
        "status": "failed",
        "text": f"not started: {reason}",
        "data": {"reason": "too_many_tasks", "request": request_text[:200]},
    }


def task_event(result: AgentResult) -> dict[str, Any]:
    """Payload of the `agent.task` event for one result: {task_id, status, text?, data?}."""
    event: dict[str, Any] = {"task_id": result.package_id, "status": TASK_STATUS[result.kind]}
    if result.text:
        event["text"] = result.text
    if result.data is not None:
        event["data"] = dict(result.data)
    return event


def model_text(result: AgentResult, *, partials: bool = False) -> str | None:
    """The text that joins the interaction model's text input for one result, or None.

    Finals and errors always join; partials (progress, streamed chunks) only when asked, since
    the final repeats the whole answer.
    """
    if result.kind == "final" and result.text:
        return f"[agent] {result.text}\n"
    if result.kind == "error":
        return f"[agent error] {result.text or 'background task failed'}\n"
    if partials and result.kind == "partial" and result.text:
        return f"[agent…] {result.text}\n"
    return None
