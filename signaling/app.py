"""The app factory: `create_app(config)` wires Redis, the engine, background workers and calls.

Each long-lived resource has one cleanup context (set up before `yield`, torn down after), in the
order they depend on each other: Redis, then the engine, then in-process agent workers. Calls are
closed on shutdown, before any of those go away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Middleware

import web as web_package
from inference.protocol import Engine
from infra.config import Config
from infra.embedded_redis import EmbeddedRedis
from infra.ice import enable_loopback_candidates
from infra.logs import limit_client_facing_errors
from signaling import channel_guard
from signaling.addresses import ClientAddresses, host_guard
from signaling.auth import Auth
from signaling.call import CallLimits
from signaling.cors import cors
from signaling.errors import json_errors
from signaling.factory import CallFactory
from signaling.keys import (
    AUTH,
    CALLS,
    CLIENTS,
    CONFIG,
    ENGINE,
    FACTORY,
    LOAD,
    METRICS,
    READINESS,
    REDIS,
    REDIS_URL,
    SIBLINGS,
    TEMPLATES,
)
from signaling.metrics import Metrics
from signaling.overload import LoopLagMonitor
from signaling.ratelimit import RateLimiter, rate_limit_middleware
from signaling.registry import CallRegistry
from signaling.routes import internal_metrics, internal_room, routes
from signaling.siblings import Siblings, hop_middleware
from signaling.turn import ice_servers

log = logging.getLogger(__name__)

WEB_DIR = Path(web_package.__file__).parent
REDIS_PING_TIMEOUT_S = 1.0
REDIS_HEALTH_EVERY_S = 5.0
WORKER_GRACE_S = 2.0  # in-process workers get this long to finish their work, then release it


def load_engine(config: Config) -> Engine:
    """The engine serving the model `config.model` names: a checkpoint directory (its config.json
    may name any StreamingModel class), the shipped model (unset), or `echo`."""
    from inference import engine as engines
    from inference.loading import load_model

    engine_config = engines.EngineConfig(
        max_sessions=config.max_calls,
        device=config.device,
        num_threads=config.engine_threads,
        step_mode=config.step_mode,
    )
    return engines.Engine(load_model(config.model), engine_config)


def create_app(
    config: Config, *, engine: Engine | None = None, siblings: Siblings | None = None
) -> web.Application:
    """Build the application. Pass `engine` to serve with one built elsewhere (tests, benchmarks),
    `siblings` when this is one of several media processes behind one port (`--processes`)."""
    if config.use_loopback_ice:
        enable_loopback_candidates()
    channel_guard.install()
    limit_client_facing_errors()
    limiter = RateLimiter(config.calls_per_minute)
    clients = ClientAddresses(config.trusted_proxies)
    middlewares: list[Middleware] = [cors, json_errors]
    if siblings is not None:  # first: a sibling's hop carries the client's address and scheme
        middlewares.insert(0, hop_middleware())
    if not config.auth_enabled:  # with auth on, a rebinding page has no key or token to use
        public_host = urlsplit(config.public_url).hostname if config.public_url else None
        middlewares.append(host_guard([*config.allowed_hosts, *filter(None, [public_host])]))
    middlewares.append(rate_limit_middleware(limiter, clients.of))
    app = web.Application(middlewares=middlewares, client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[CLIENTS] = clients
    app[METRICS] = Metrics()
    app[AUTH] = Auth(
        enabled=config.auth_enabled,
        api_keys=config.api_keys,
        secret=config.token_secret,
        allowed_origins=config.allowed_origins,
    )
    app[CALLS] = CallRegistry(config.max_calls, app[METRICS])
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(WEB_DIR / "templates"), autoescape=True
    )
    app[READINESS] = lambda: readiness(app)
    app.add_routes(routes)
    if siblings is not None:
        app[SIBLINGS] = siblings
        app.router.add_get("/internal/room", internal_room)
        app.router.add_get("/internal/metrics", internal_metrics)
        app.on_cleanup.append(close_siblings)
    app.router.add_get("/widget.js", widget)
    app.router.add_static("/static/", WEB_DIR / "static")

    app[LOAD] = LoopLagMonitor(config.max_loop_lag_ms)
    app.cleanup_ctx.append(load_ctx)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(redis_health_ctx)
    app.cleanup_ctx.append(engine_ctx(engine))
    app.cleanup_ctx.append(agent_ctx)
    app.on_startup.append(started)  # after every cleanup context's setup
    app.on_shutdown.append(close_calls)
    return app


async def close_siblings(app: web.Application) -> None:
    await app[SIBLINGS].aclose()


async def started(app: web.Application) -> None:
    """Everything is up: calls can be built; start-up's loop stalls (loading the model) are not
    load."""
    config = app[CONFIG]
    app[FACTORY] = CallFactory(
        engine=app[ENGINE],
        redis=app[REDIS],
        metrics=app[METRICS],
        registry=app[CALLS],
        limits=CallLimits(
            connect_timeout_s=config.connect_timeout_s,
            idle_timeout_s=config.idle_timeout_s,
            max_duration_s=config.max_call_s,
            events_per_s=config.events_per_s,
            events_burst=max(1, int(2 * config.events_per_s)),
            resume_window_s=config.resume_window_s,
        ),
        jitter_prefetch=config.jitter_prefetch,
        connect_timeout_lan_s=config.connect_timeout_lan_s,
        ice_servers=(lambda user: ice_servers(config, user)) if config.ice_servers else None,
        call_ids=app[SIBLINGS].new_call_id if SIBLINGS in app else None,
    )
    app[LOAD].reset()


async def widget(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "static" / "widget.js")


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    embedded: EmbeddedRedis | None = None
    url = config.redis_url
    if url is None:
        embedded = EmbeddedRedis()
        await asyncio.get_running_loop().run_in_executor(None, embedded.start)
        url = embedded.url
    app[REDIS_URL] = url
    app[REDIS] = aioredis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=10)
    try:
        await asyncio.wait_for(app[REDIS].ping(), REDIS_PING_TIMEOUT_S * 3)
    except Exception as exc:
        log.error("Redis at %s is not reachable (%s): background work waits until it is", url, exc)
    yield
    await app[REDIS].aclose()
    if embedded is not None:
        await asyncio.get_running_loop().run_in_executor(None, embedded.close)


def engine_ctx(given: Engine | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if given is None and app[CONFIG].inference == "remote":
            async for _ in remote_engine(app):
                yield
            return
        engine = given
        if engine is None:
            loop = asyncio.get_running_loop()
            engine = await loop.run_in_executor(None, load_engine, app[CONFIG])
        app[ENGINE] = engine
        app[METRICS].watch(lambda: engine.stats().as_dict(), app[CALLS].snapshots)
        if given is None:  # a given engine may already be running
            await asyncio.get_running_loop().run_in_executor(None, engine.warm_up)
        engine.start()
        log.info("model %s ready", engine.model_name)
        yield
        if given is None:
            engine.stop()

    return ctx


async def remote_engine(app: web.Application) -> AsyncIterator[None]:
    """`--inference remote`: sessions on `microturn infer` workers (inference/remote.py)."""
    from inference.remote import RemoteConfig, RemoteEngine

    config = app[CONFIG]
    assert config.redis_url is not None
    engine = RemoteEngine(
        RemoteConfig(
            redis_url=config.redis_url,
            max_sessions=config.max_calls,
            pool=config.inference_pool,
            secret=config.inference_secret,
            stall_s=config.inference_stall_ms / 1000.0,
        )
    )
    engine.start()
    app[ENGINE] = engine
    app[METRICS].watch(lambda: engine.stats().as_dict(), app[CALLS].snapshots)
    log.info("inference: remote workers of pool %s", config.inference_pool)
    yield
    await engine.aclose()


async def load_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[LOAD].run(), name="loop-lag")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def redis_health_ctx(app: web.Application) -> AsyncIterator[None]:
    """Ping Redis every few seconds: the `microturn_redis_up` gauge and an error counter."""
    metrics = app[METRICS]
    # Stopped by an event, not only by cancel(): on Python 3.11 redis-py's timeouts (asyncio.wait_for)
    # can swallow a cancellation that lands mid-command.
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(app[REDIS].ping(), REDIS_PING_TIMEOUT_S)
                metrics.redis_up.set(1)
            except Exception:
                metrics.redis_up.set(0)
                metrics.redis_errors.inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REDIS_HEALTH_EVERY_S)

    task = asyncio.create_task(watch(), name="redis-health")
    yield
    stop.set()
    task.cancel()
    await asyncio.wait([task], timeout=REDIS_PING_TIMEOUT_S * 2)


async def agent_ctx(app: web.Application) -> AsyncIterator[None]:
    """In-process background workers against the same Redis (`--agent-workers`, 0 for none)."""
    from agent.backends import BackendSettings
    from agent.inprocess import in_process_workers

    config = app[CONFIG]
    settings = BackendSettings.from_env(
        name=config.agent_backend,
        notes_dir=config.notes_dir,
        openai_base_url=config.openai_base_url,
        openai_model=config.openai_model,
    )
    async with in_process_workers(
        app[REDIS_URL], config.agent_workers, backend=settings, grace_s=WORKER_GRACE_S
    ):
        yield


async def close_calls(app: web.Application) -> None:
    await app[CALLS].close_all("server shutting down")


async def sibling_has_room(app: web.Application) -> bool:
    siblings = app.get(SIBLINGS)
    if siblings is None:
        return False
    rooms = await siblings.rooms()
    return any(
        int(room.get("free", 0)) > 0 and not room.get("overloaded") for room in rooms.values()
    )


async def readiness(app: web.Application) -> list[str]:
    reasons = []
    engine = app.get(ENGINE)
    if engine is None:
        reasons.append("model not loaded")
    try:
        await asyncio.wait_for(app[REDIS].ping(), REDIS_PING_TIMEOUT_S)
    except Exception as exc:
        reasons.append(f"redis unreachable: {type(exc).__name__}")
    siblings = app.get(SIBLINGS)
    if siblings is not None and not await siblings.all_up():
        reasons.append(f"starting: not every one of the {siblings.count} media processes is up")
    if app[CALLS].full and not await sibling_has_room(app):
        reasons.append("at capacity")
    elif engine is not None and app[CONFIG].inference == "remote":
        stats = engine.stats()
        if stats.capacity <= stats.active:
            reasons.append("no inference worker has a free session")
    if app[LOAD].overloaded:
        reasons.append(f"overloaded: event loop lag p95 {app[LOAD].lag_p95_ms:.0f} ms")
    return reasons
