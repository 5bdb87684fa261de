import aiohttp

from signaling.ratelimit import MAX_CLIENTS, RateLimiter
from tests.conftest import MakeServer


def test_bucket_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(per_minute=60, burst=3)
    key = ("1.2.3.4", "/v1/calls")
    assert [limiter.check(key, now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.check(key, now=0.0)
    assert 0.9 < wait <= 1.0, "one per second once the burst is spent"
    assert limiter.check(key, now=1.01) == 0.0
    assert limiter.check(("5.6.7.8", "/v1/calls"), now=0.0) == 0.0, "clients are counted apart"


def test_memory_is_bounded_under_a_flood_of_addresses() -> None:
    limiter = RateLimiter(per_minute=60)
    for i in range(MAX_CLIENTS + 500):
        limiter.check((f"10.0.{i // 256}.{i % 256}", "/v1/calls"), now=0.0)
    assert len(limiter._buckets) == MAX_CLIENTS


async def test_too_many_offers_from_one_client_get_429(make_server: MakeServer) -> None:
    server = await make_server(calls_per_minute=3)
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.post(
                server.make_url("/v1/calls"), data="x", headers={"Content-Type": "application/sdp"}
            ) as resp:
                statuses.append(resp.status)
        async with http.post(
            server.make_url("/v1/calls"), data="x", headers={"Content-Type": "application/sdp"}
        ) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["error"]["code"] == "rate_limited"
        async with http.get(server.make_url("/healthz")) as resp:
            assert resp.status == 200, "other routes are not limited"
    assert statuses == [400, 400, 400]
