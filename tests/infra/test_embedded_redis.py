import redis

from infra.embedded_redis import EmbeddedRedis


def test_unix_socket_redis_starts_answers_and_stops() -> None:
    server = EmbeddedRedis()
    with server:
        assert server.url.startswith("unix://")
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.xadd("s", {"k": "v"})
        assert client.xlen("s") == 1
        client.close()
        proc = server.proc
    assert proc is not None and proc.poll() is not None, "redis-server must stop with its owner"


def test_persistent_redis_keeps_streams_across_restart() -> None:
    with EmbeddedRedis(tcp=True, persist=True) as server:
        client = redis.Redis.from_url(server.url)
        client.xadd("s", {"k": "v"})
        client.close()
        server.restart()
        client = redis.Redis.from_url(server.url)
        assert client.xlen("s") == 1
        client.close()
