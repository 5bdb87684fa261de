"""Pieces of several media processes behind one port (signaling/siblings.py), without processes:
call ids that name their process, the split of --max-calls, merged metrics, and the private
socket's headers being worth nothing on the public port."""

from __future__ import annotations

from collections import Counter

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from infra.config import Config
from signaling.siblings import (
    HOP,
    HOP_REMOTE,
    Siblings,
    hop,
    hop_middleware,
    layout,
    merge_metrics,
    owner_of,
    shares,
)


def test_each_process_draws_ids_that_name_it() -> None:
    siblings = layout("/tmp/x", 3)
    for me in siblings:
        ids = {me.new_call_id() for _ in range(50)}
        assert len(ids) == 50
        assert {owner_of(call_id, 3) for call_id in ids} == {me.index}
        assert all(len(call_id) == 12 for call_id in ids)  # the usual id, no marker
    # random ids spread over the processes (it is a hash, not a prefix)
    spread = Counter(owner_of(Siblings(0, ("a",)).new_call_id(), 4) for _ in range(400))
    assert set(spread) == {0, 1, 2, 3}


def test_the_processes_find_each_other_in_the_environment() -> None:
    me = layout("/run/mt", 2)[1]
    again = Siblings.from_env(me.env())
    assert again is not None
    assert (again.index, again.sockets, again.others) == (1, me.sockets, [0])
    assert Siblings.from_env({}) is None


def test_max_calls_is_split_and_processes_never_outnumber_calls() -> None:
    assert shares(8, 3) == [3, 3, 2]
    assert shares(2, 2) == [1, 1]
    assert sum(shares(17, 4)) == 17
    assert Config.from_env({}, processes=4, max_calls=2).media_processes == 2
    assert Config.from_env({}).media_processes == 1  # the default: one process, local engine


def test_metrics_of_every_process_come_back_labelled() -> None:
    text = (
        b"# HELP microturn_calls_total calls\n# TYPE microturn_calls_total counter\n"
        b'microturn_calls_total{outcome="created"} 3.0\n'
    )
    merged = merge_metrics([(0, text), (1, text.replace(b"3.0", b"4.0"))])
    samples = [
        s
        for family in text_string_to_metric_families(merged.decode())
        for s in family.samples
        if s.name == "microturn_calls_total"
    ]
    assert {(s.labels["process"], s.value) for s in samples} == {("0", 3.0), ("1", 4.0)}


async def test_hop_headers_are_ignored_on_the_public_port() -> None:
    """Only a sibling, through the private socket, can say who the client is."""

    async def who(request: web.Request) -> web.Response:
        return web.json_response({"remote": request.remote, "hop": hop(request)})

    app = web.Application(middlewares=[hop_middleware()])
    app.router.add_get("/who", who)
    app.router.add_get("/internal/room", who)
    async with TestClient(TestServer(app)) as client:
        forged = {HOP: "place", HOP_REMOTE: "203.0.113.9"}
        resp = await client.get("/who", headers=forged)
        assert await resp.json() == {"remote": "127.0.0.1", "hop": None}
        resp = await client.get("/internal/room", headers=forged)
        assert resp.status == 404
