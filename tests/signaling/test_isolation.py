"""No call can read another call's state, events or background results."""

from __future__ import annotations

import asyncio

import aiohttp

from media.synthetic import tone
from signaling.client import CallClient
from tests.conftest import MakeServer

KEY = "test-api-key"


async def mint(http: aiohttp.ClientSession, server) -> str:
    async with http.post(
        server.make_url("/v1/tokens"),
        json={"ttl_s": 60},
        headers={"Authorization": f"Bearer {KEY}"},
    ) as resp:
        assert resp.status == 201
        token: str = (await resp.json())["token"]
        return token


async def test_a_call_token_reaches_only_its_own_call(make_server: MakeServer) -> None:
    server = await make_server(auth="on", api_keys=(KEY,), agent_workers=1)
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        token_a, token_b = await mint(http, server), await mint(http, server)
    async with (
        CallClient(base, audio=tone(), token=token_a) as a,
        CallClient(base, audio=tone(), token=token_b) as b,
    ):
        await a.wait_event("session.created", timeout=60)
        await b.wait_event("session.created", timeout=60)
        b.send("input_text", text="/ask what is 6*7")
        await b.wait_event("agent.task", lambda e: e["status"] == "done", timeout=60)
        await asyncio.sleep(0.5)
        assert not [e for e in a.events if e.get("type") == "agent.task"], "B's results stay B's"

        async with aiohttp.ClientSession() as http:
            for token, call, expected in [
                (token_a, a, 200),
                (token_a, b, 401),
                (token_b, a, 401),
                ("nonsense", a, 401),
                (KEY, b, 200),
            ]:
                async with http.get(
                    call.location or "",
                    headers={"Authorization": f"Bearer {token}"},
                ) as resp:
                    assert resp.status == expected, (token[:8], call.call_id, resp.status)
            async with http.delete(
                b.location or "", headers={"Authorization": f"Bearer {token_a}"}
            ) as resp:
                assert resp.status == 401, "A cannot hang up B"
        assert await a.hang_up() == 204
        assert await b.hang_up() == 204
