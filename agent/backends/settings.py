"""Building a backend from settings: the one place the backend's environment is read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from agent.backends.base import BACKEND_NAMES, Backend


@dataclass(frozen=True)
class BackendSettings:
    """How to build a backend: the one place the environment's backend settings are read.

    `microturn agent` takes its flag defaults from `from_env()`; `microturn serve` builds one from
    its Config (the API key, never a flag, always comes from the environment)."""

    name: str = "builtin"
    notes_dir: str | None = None
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str | None = None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> BackendSettings:
        env = os.environ if environ is None else environ
        settings = cls(
            name=env.get("MICROTURN_AGENT_BACKEND") or "builtin",
            notes_dir=env.get("MICROTURN_NOTES_DIR") or None,
            openai_base_url=env.get("MICROTURN_OPENAI_BASE_URL") or env.get("OPENAI_BASE_URL"),
            openai_api_key=env.get("MICROTURN_OPENAI_API_KEY") or env.get("OPENAI_API_KEY"),
            openai_model=env.get("MICROTURN_OPENAI_MODEL") or None,
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})

    def make(self) -> Backend:
        return make_backend(
            self.name,
            notes_dir=self.notes_dir,
            openai_base_url=self.openai_base_url,
            openai_api_key=self.openai_api_key,
            openai_model=self.openai_model,
        )


def make_backend(
    name: str,
    *,
    notes_dir: str | None = None,
    openai_base_url: str | None = None,
    openai_api_key: str | None = None,
    openai_model: str | None = None,
) -> Backend:
    """A backend by name, with its configuration (the CLI and `microturn serve` use this)."""
    from agent.backends.builtin import BuiltinBackend
    from agent.backends.tools import Toolbox

    notes = None
    if notes_dir:
        from agent.backends.notes import NotesIndex

        notes = NotesIndex(notes_dir)
    toolbox = Toolbox(notes)
    if name == "builtin":
        return BuiltinBackend(toolbox)
    if name == "openai":
        from agent.backends.openai import OpenAIBackend

        if not openai_base_url:
            raise ValueError("the openai backend needs a base URL (--openai-base-url)")
        return OpenAIBackend(
            base_url=openai_base_url,
            api_key=openai_api_key,
            model=openai_model or "gpt-4o-mini",
            toolbox=toolbox,
        )
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
