"""Configuration: one frozen dataclass, filled from defaults, then environment, then CLI flags.

Every setting has an environment variable (`MICROTURN_*`, plus the conventional `REDIS_URL`) and a
`microturn serve` flag; `Config.describe()` lists them for `--help` and the README.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

MAX_SDP_BYTES = 64 * 1024


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def is_loopback(host: str) -> bool:
    if host in {"localhost", ""}:
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Config:
    """Settings of one `microturn serve` process. Field metadata names the env var and says why."""

    host: str = field(
        default="127.0.0.1", metadata={"env": "MICROTURN_HOST", "help": "bind address"}
    )
    port: int = field(default=8080, metadata={"env": "MICROTURN_PORT", "help": "HTTP port"})
    public_url: str = field(
        default="",
        metadata={
            "env": "MICROTURN_PUBLIC_URL",
            "help": "this node's own URL, prefixed to Location (scale-out: calls stick to a node)",
        },
    )
    redis_url: str | None = field(
        default=None,
        metadata={"env": "REDIS_URL", "help": "Redis to use; unset: start an embedded private one"},
    )
    model: str | None = field(
        default=None,
        metadata={
            "env": "MICROTURN_MODEL",
            "help": "checkpoint directory; unset: the shipped `small` model; `echo`: pass-through",
        },
    )
    # Measured real-time capacity of a 2-core CPU machine with audio+video calls (bench/load.py):
    # media (aiortc in one event loop), not the model, is the limit. Raise it on bigger machines.
    max_calls: int = field(
        default=4,
        metadata={"env": "MICROTURN_MAX_CALLS", "help": "calls served at once (503 beyond)"},
    )
    processes: int | None = field(
        default=None,
        metadata={
            "env": "MICROTURN_PROCESSES",
            "help": "media processes sharing --port (SO_REUSEPORT), --max-calls split between "
            "them; unset: 1 with --inference local, one per core with --inference remote; more "
            "than 1 with --inference local starts one `microturn infer` child for them all",
        },
    )
    inference: str = field(
        default="local",
        metadata={
            "env": "MICROTURN_INFERENCE",
            "help": "local: the engine in this process; remote: sessions on `microturn infer` "
            "workers found in --redis-url's Redis",
        },
    )
    inference_pool: str = field(
        default="default",
        metadata={
            "env": "MICROTURN_INFERENCE_POOL",
            "help": "with --inference remote: the workers' pool (`microturn infer --pool`)",
        },
    )
    inference_secret: str = field(
        default="",
        metadata={
            "env": "MICROTURN_INFERENCE_SECRET",
            "help": "with --inference remote: the workers' shared secret, if they have one",
        },
    )
    inference_stall_ms: float = field(
        default=500.0,
        metadata={
            "env": "MICROTURN_INFERENCE_STALL_MS",
            "help": "with --inference remote: a worker that leaves a micro-turn unanswered this "
            "long is stalled; its calls move to another worker",
        },
    )
    device: str | None = field(
        default=None,
        metadata={"env": "MICROTURN_DEVICE", "help": "torch device; unset: cuda if present"},
    )
    step_mode: str = field(
        default="eager",
        metadata={
            "env": "MICROTURN_STEP_MODE",
            "help": "the model's hot step: eager, compile (torch.compile) or cudagraph (CUDA "
            "graphs, CUDA only)",
        },
    )
    engine_threads: int | None = field(
        default=None,
        metadata={"env": "MICROTURN_ENGINE_THREADS", "help": "torch threads of the engine"},
    )
    auth: str = field(
        default="auto",
        metadata={
            "env": "MICROTURN_AUTH",
            "help": "on | off | auto (off on a loopback bind, on otherwise)",
        },
    )
    api_keys: tuple[str, ...] = field(
        default=(), metadata={"env": "MICROTURN_API_KEYS", "help": "comma-separated API keys"}
    )
    token_secret: str = field(
        default="",
        metadata={
            "env": "MICROTURN_TOKEN_SECRET",
            "help": "HMAC secret for call tokens; unset: random per process",
        },
    )
    allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata={
            "env": "MICROTURN_ALLOWED_ORIGINS",
            "help": "comma-separated origins that may embed and call (`*` for any)",
        },
    )
    allowed_hosts: tuple[str, ...] = field(
        default=(),
        metadata={
            "env": "MICROTURN_ALLOWED_HOSTS",
            "help": "host names this server answers to when auth is off, beyond localhost, IP "
            "addresses and --public-url's (DNS-rebinding guard; `*` for any)",
        },
    )
    trusted_proxies: tuple[str, ...] = field(
        default=(),
        metadata={
            "env": "MICROTURN_TRUSTED_PROXIES",
            "help": "proxy addresses or networks (CIDR) whose X-Forwarded-For names the client",
        },
    )
    agent_workers: int = field(
        default=1,
        metadata={
            "env": "MICROTURN_AGENT_WORKERS",
            "help": "in-process background workers (0: none)",
        },
    )
    agent_backend: str = field(
        default="builtin",
        metadata={"env": "MICROTURN_AGENT_BACKEND", "help": "background model: builtin | openai"},
    )
    notes_dir: str | None = field(
        default=None,
        metadata={
            "env": "MICROTURN_NOTES_DIR",
            "help": "folder of notes the builtin agent searches",
        },
    )
    openai_base_url: str | None = field(
        default=None,
        metadata={
            "env": "MICROTURN_OPENAI_BASE_URL",
            "help": "OpenAI-compatible endpoint of the openai backend (key: MICROTURN_OPENAI_API_KEY)",
        },
    )
    openai_model: str | None = field(
        default=None,
        metadata={"env": "MICROTURN_OPENAI_MODEL", "help": "model name for the openai backend"},
    )
    ice_loopback: bool | None = field(
        default=None,
        metadata={
            "env": "MICROTURN_ICE_LOOPBACK",
            "help": "offer 127.0.0.1 ICE candidates; unset: yes on a loopback bind",
        },
    )
    ice_servers: tuple[str, ...] = field(
        default=(),
        metadata={
            "env": "MICROTURN_ICE_SERVERS",
            "help": "comma-separated STUN/TURN URLs handed to clients with each call "
            "(stun:host:3478, turn:host:3478?transport=udp, turns:host:5349)",
        },
    )
    turn_secret: str = field(
        default="",
        metadata={
            "env": "MICROTURN_TURN_SECRET",
            "help": "coturn's static-auth-secret: each call's TURN credentials derive from it",
        },
    )
    turn_ttl_s: float = field(
        default=3600.0,
        metadata={"env": "MICROTURN_TURN_TTL_S", "help": "how long TURN credentials stay valid"},
    )
    resume_window_s: float = field(
        default=15.0,
        metadata={
            "env": "MICROTURN_RESUME_WINDOW_S",
            "help": "a call whose connection drops waits this long to be resumed (0: never)",
        },
    )
    # aiortc's default is 4 packets; that holds 4 x 20 ms constantly. Our timeline's grace period
    # already absorbs arrival jitter, so 0 is the measured best (bench/media.py: -48 ms p50).
    jitter_prefetch: int = field(
        default=0,
        metadata={
            "env": "MICROTURN_JITTER_PREFETCH",
            "help": "audio packets aiortc's jitter buffer holds before playing",
        },
    )
    connect_timeout_s: float = field(
        default=10.0,
        metadata={"env": "MICROTURN_CONNECT_TIMEOUT_S", "help": "a call must connect within this"},
    )
    connect_timeout_lan_s: float = field(
        default=4.0,
        metadata={
            "env": "MICROTURN_CONNECT_TIMEOUT_LAN_S",
            "help": "the same for offers whose candidates are all loopback/LAN (no STUN, no TURN)",
        },
    )
    max_connecting_per_client: int = field(
        default=2,
        metadata={
            "env": "MICROTURN_MAX_CONNECTING_PER_CLIENT",
            "help": "calls one client address may have offered but not yet connected (429 beyond)",
        },
    )
    idle_timeout_s: float = field(
        default=30.0,
        metadata={
            "env": "MICROTURN_IDLE_TIMEOUT_S",
            "help": "end a call after this long with no media and no events from the peer",
        },
    )
    max_call_s: float = field(
        default=14400.0,
        metadata={"env": "MICROTURN_MAX_CALL_S", "help": "longest a call may last"},
    )
    events_per_s: float = field(
        default=20.0,
        metadata={
            "env": "MICROTURN_EVENTS_PER_S",
            "help": "data-channel messages/s per call (burst 2x)",
        },
    )
    max_loop_lag_ms: float = field(
        default=80.0,
        metadata={
            "env": "MICROTURN_MAX_LOOP_LAG_MS",
            "help": "refuse new calls while the event loop's p95 lag is above this (0: never)",
        },
    )
    calls_per_minute: float = field(
        default=60.0,
        metadata={
            "env": "MICROTURN_CALLS_PER_MINUTE",
            "help": "POST /v1/calls and /v1/tokens per client address a minute (429 beyond)",
        },
    )
    max_body_bytes: int = field(
        default=MAX_SDP_BYTES,
        metadata={"env": "MICROTURN_MAX_BODY_BYTES", "help": "largest SDP offer accepted"},
    )
    log_format: str = field(
        default="text",
        metadata={"env": "MICROTURN_LOG_FORMAT", "help": "text, or json (one object per line)"},
    )
    log_level: str = field(
        default="INFO", metadata={"env": "MICROTURN_LOG_LEVEL", "help": "logging level"}
    )

    @property
    def auth_enabled(self) -> bool:
        if self.auth == "on":
            return True
        if self.auth == "off":
            return False
        return not is_loopback(self.host)

    @property
    def use_loopback_ice(self) -> bool:
        return is_loopback(self.host) if self.ice_loopback is None else self.ice_loopback

    @property
    def media_processes(self) -> int:
        """How many media processes serve: --processes, else one per core when the engine is
        remote (media is what limits a process: aiortc runs on one event loop), else 1; never
        more than --max-calls (each process holds at least one call)."""
        wanted = self.processes
        if wanted is None:
            wanted = (os.cpu_count() or 1) if self.inference == "remote" else 1
        return max(1, min(wanted, self.max_calls))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __post_init__(self) -> None:
        if self.auth not in {"on", "off", "auto"}:
            raise ValueError(f"auth must be on, off or auto, not {self.auth!r}")
        if self.log_format not in {"text", "json"}:
            raise ValueError(f"log_format must be text or json, not {self.log_format!r}")
        if self.max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        if self.processes is not None and self.processes < 1:
            raise ValueError("processes must be at least 1")
        if self.max_connecting_per_client < 1:
            raise ValueError("max_connecting_per_client must be at least 1")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {proxy!r} is not an address or network"
                ) from None
        for url in self.ice_servers:
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ValueError(
                    f"ice_servers: {url!r} is not a stun:, stuns:, turn: or turns: URL"
                )
            if url.startswith("turn") and not self.turn_secret:
                raise ValueError(f"ice_servers: {url!r} needs --turn-secret (coturn's REST API)")
        if self.step_mode not in {"eager", "compile", "cudagraph"}:
            raise ValueError(
                f"step_mode must be eager, compile or cudagraph, not {self.step_mode!r}"
            )
        if self.inference not in {"local", "remote"}:
            raise ValueError(f"inference must be local or remote, not {self.inference!r}")
        if self.inference == "remote" and not self.redis_url:
            raise ValueError(
                "--inference remote needs --redis-url: the workers register there "
                "(an embedded Redis is private to this process)"
            )
        if self.inference_stall_ms <= 0:
            raise ValueError("inference_stall_ms must be positive")
        if self.turn_ttl_s <= 0 or self.resume_window_s < 0:
            raise ValueError("turn_ttl_s must be positive and resume_window_s at least 0")
        if not self.token_secret:
            object.__setattr__(self, "token_secret", secrets.token_urlsafe(32))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then the environment, then explicit overrides (None means: not given)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """(field, env var, default, help) for every setting."""
        rows = []
        for f in fields(cls):
            default = f.default if f.default is not None else ""
            rows.append((f.name, f.metadata["env"], str(default), f.metadata["help"]))
        return rows


def _parse(type_name: Any, raw: str, name: str) -> Any:
    t = str(type_name)
    try:
        if t.startswith("tuple"):
            return _split(raw)
        if t.startswith("bool"):
            return _bool(raw)
        if t.startswith("int"):
            return int(raw)
        if t.startswith("float"):
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"bad value for {name}: {raw!r} ({exc})") from None
    return raw
