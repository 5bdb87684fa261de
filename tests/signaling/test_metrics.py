"""/metrics: what an operator alerts on is there, and moves with real calls."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from media.synthetic import tone
from signaling.client import CallClient
from tests.conftest import MakeServer


async def scrape(server) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/metrics")) as resp:
            text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


async def test_metrics_follow_a_call(make_server: MakeServer) -> None:
    server = await make_server(agent_workers=1)
    base = str(server.make_url("")).rstrip("/")
    async with CallClient(base, audio=tone()) as call:
        await call.wait_event("session.created", timeout=60)
        call.send("input_text", text="/ask what is 2+2")
        await call.wait_event("agent.task", lambda e: e["status"] == "done", timeout=60)
        while (await call.status())["microturns"] < 5:
            await asyncio.sleep(0.1)
        during = await scrape(server)
        await call.hang_up()
    after = await scrape(server)
    assert during["microturn_calls_active"] == 1
    assert during["microturn_engine_slots_active"] >= 1
    assert "microturn_queue_depth{queue=outbound_audio_ms}" in during
    assert during["microturn_microturns_total"] > 0
    assert during["microturn_step_ms_count"] > 0
    assert during["microturn_agent_task_seconds_count{outcome=final}"] == 1
    assert during["microturn_calls_total{outcome=created}"] >= 1
    assert after["microturn_calls_active"] == 0
    assert after["microturn_calls_ended_total{reason=deleted_by_client}"] >= 1
