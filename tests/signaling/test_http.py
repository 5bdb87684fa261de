"""The HTTP contract of docs/api.md: status codes and JSON error bodies."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from infra.embedded_redis import free_port
from tests.conftest import MakeServer

GOOD_PREFIX = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def post_offer(
    server: TestServer,
    body: bytes | str,
    content_type: str = "application/sdp",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.make_url("/v1/calls"),
            data=body,
            headers={"Content-Type": content_type, **(headers or {})},
        ) as resp:
            return resp.status, await resp.json(), dict(resp.headers)


async def test_health_ready_metrics(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/healthz")) as resp:
            assert resp.status == 200
        async with http.get(server.make_url("/readyz")) as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(server.make_url("/metrics")) as resp:
            assert resp.status == 200
            assert "microturn_calls_active" in await resp.text()


async def test_readyz_says_why_when_redis_is_unreachable(make_server: MakeServer) -> None:
    server = await make_server(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/readyz")) as resp:
            assert resp.status == 503
            body = await resp.json()
    assert any("redis" in reason for reason in body["reasons"])
    await server.close()


async def test_page_and_widget_are_served(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/")) as resp:
            html = await resp.text()
            assert resp.status == 200 and "Microturn" in html and "/static/app.js" in html
        async with http.get(server.make_url("/widget.js")) as resp:
            assert resp.status == 200
            assert "javascript" in resp.headers["Content-Type"]
        async with http.get(server.make_url("/static/client.js")) as resp:
            assert resp.status == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("v=0\r\n", "text/plain", 415, "unsupported_media_type"),
        ("hello", "application/sdp", 400, "invalid_sdp"),
        (b"\xff\xfe\x00", "application/sdp", 400, "invalid_sdp"),
        (GOOD_PREFIX + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "application/sdp", 400, "no_audio"),
        (
            GOOD_PREFIX + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
            "application/sdp",
            400,
            "invalid_sdp",
        ),
        (GOOD_PREFIX + "m=audio 9 X 1\r\n" * 20, "application/sdp", 400, "too_many_m_lines"),
        ("v=0\r\n" + "a=x\r\n" * 20000, "application/sdp", 413, "payload_too_large"),
        (
            GOOD_PREFIX
            + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
            + "a=candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host\r\n" * 40,
            "application/sdp",
            400,
            "too_many_candidates",
        ),
    ],
)
async def test_bad_offers_get_precise_json_errors(
    server: TestServer, body: str | bytes, content_type: str, status: int, code: str
) -> None:
    got, payload, _ = await post_offer(server, body, content_type)
    assert got == status
    assert payload["error"]["code"] == code
    assert payload["error"]["message"]


async def test_unknown_calls_and_routes_are_json_404(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        for method, path in [
            ("GET", "/v1/calls/nope"),
            ("DELETE", "/v1/calls/nope"),
            ("GET", "/no/such/route"),
        ]:
            async with http.request(method, server.make_url(path)) as resp:
                assert resp.status == 404
                assert (await resp.json())["error"]["code"] in {"call_not_found", "not_found"}


async def test_disallowed_origin_is_403(server: TestServer) -> None:
    status, payload, _ = await post_offer(
        server, "v=0\r\n", headers={"Origin": "https://evil.example"}
    )
    assert status == 403 and payload["error"]["code"] == "origin_not_allowed"


async def test_tokens_need_an_api_key(make_server: MakeServer) -> None:
    server = await make_server(auth="on", api_keys=("k1",))
    async with aiohttp.ClientSession() as http:
        url = server.make_url("/v1/tokens")
        async with http.post(url, json={"ttl_s": 60}) as resp:
            assert resp.status == 401
        async with http.post(
            url, json={"ttl_s": 60}, headers={"Authorization": "Bearer k2"}
        ) as resp:
            assert resp.status == 401
        async with http.post(
            url, json={"ttl_s": 60}, headers={"Authorization": "Bearer k1"}
        ) as resp:
            assert resp.status == 201
            body = await resp.json()
            assert body["token"].startswith("mt1.") and body["expires_at"] > 0
        async with http.post(url, data="[]", headers={"Authorization": "Bearer k1"}) as resp:
            assert resp.status == 400
    # with auth on, a call without credentials is refused before the offer is even read
    status, payload, _ = await post_offer(server, "v=0\r\n")
    assert status == 401 and payload["error"]["code"] == "unauthorized"
    await server.close()


async def test_location_names_the_node_when_it_has_a_public_url(make_server: MakeServer) -> None:
    from aiortc import RTCPeerConnection

    server = await make_server(public_url="https://node-7.example/")
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.make_url("/v1/calls"),
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            assert resp.status == 201
            location = resp.headers["Location"]
        assert location.startswith("https://node-7.example/v1/calls/")
        async with http.delete(server.make_url("/v1/calls/" + location.rsplit("/", 1)[1])) as resp:
            assert resp.status == 204
    await pc.close()
