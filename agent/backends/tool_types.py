"""What a tool yields and raises: shared by the tools, the notes index and the sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ToolError(Exception):
    """The tool could not do what was asked; the message is fit to show a user."""


@dataclass(frozen=True)
class ToolProgress:
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolResult:
    text: str
    data: dict[str, Any] = field(default_factory=dict)


ToolEvent = ToolProgress | ToolResult
