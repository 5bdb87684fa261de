"""Typed keys of the state kept on the aiohttp application (no module-level singletons)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import jinja2
import redis.asyncio as aioredis
from aiohttp import web

from inference.protocol import Engine
from infra.config import Config
from signaling.addresses import ClientAddresses
from signaling.auth import Auth
from signaling.factory import CallFactory
from signaling.metrics import Metrics
from signaling.overload import LoopLagMonitor
from signaling.registry import CallRegistry
from signaling.siblings import Siblings

CONFIG = web.AppKey("config", Config)
AUTH = web.AppKey("auth", Auth)
METRICS = web.AppKey("metrics", Metrics)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
ENGINE = web.AppKey("engine", Engine)
CALLS = web.AppKey("calls", CallRegistry)
REDIS = web.AppKey("redis", aioredis.Redis)
REDIS_URL = web.AppKey("redis_url", str)
# Returns the reasons the server cannot take a call now ([] when ready).
READINESS: web.AppKey[Callable[[], Awaitable[list[str]]]] = web.AppKey("readiness")
LOAD = web.AppKey("load", LoopLagMonitor)
CLIENTS = web.AppKey("clients", ClientAddresses)
FACTORY = web.AppKey("factory", CallFactory)
# The other media processes of this server (`--processes N`); absent for a process on its own.
SIBLINGS = web.AppKey("siblings", Siblings)
