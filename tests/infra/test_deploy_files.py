"""The deployment files ship safe defaults: Redis with a password, bound, bounded; a TURN server
that will not relay into private networks."""

from __future__ import annotations

import ipaddress
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "infra" / "deploy"


def test_compose_runs_redis_bound_with_a_password_protected_and_bounded() -> None:
    compose = (DEPLOY / "compose.yaml").read_text()
    redis_command = compose.split("redis-server", 1)[1].split("volumes:", 1)[0]
    assert "--requirepass" in redis_command and "$$REDIS_PASSWORD" in redis_command
    assert "--bind 127.0.0.1" in redis_command
    assert "--protected-mode yes" in redis_command and "protected-mode no" not in compose
    assert "--maxmemory-policy noeviction" in redis_command
    env = (DEPLOY / "redis.env.example").read_text()
    password = next(
        line.split("=", 1)[1] for line in env.splitlines() if line.startswith("REDIS_PASSWORD=")
    )
    url = next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("REDIS_URL="))
    assert f":{password}@" in url, "the clients' URL carries the same password"
    assert "TLS" in (DEPLOY / "README.md").read_text()


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ranges(conf: str) -> list[tuple[Address, Address]]:
    out: list[tuple[Address, Address]] = []
    for line in conf.splitlines():
        if line.startswith("denied-peer-ip="):
            value = line.split("=", 1)[1].strip()
            low, _, high = value.partition("-")
            out.append((ipaddress.ip_address(low), ipaddress.ip_address(high or low)))
    return out


def test_turn_refuses_to_relay_into_private_loopback_and_link_local_ranges() -> None:
    conf = (DEPLOY / "turnserver.conf").read_text()
    denied = _ranges(conf)
    for probe in [
        "10.1.2.3",
        "172.20.0.5",
        "192.168.1.10",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
    ]:
        ip = ipaddress.ip_address(probe)
        assert any(
            low.version == ip.version and int(low) <= int(ip) <= int(high) for low, high in denied
        ), probe
    assert not any(line.startswith("allowed-peer-ip=") for line in conf.splitlines()), (
        "no private range is re-allowed by default"
    )


def test_the_turn_server_and_the_media_nodes_share_one_secret_and_its_ports() -> None:
    from infra.config import Config
    from signaling.turn import ice_servers, turn_credential

    conf = dict(
        line.split("=", 1) for line in (DEPLOY / "turnserver.conf").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )  # fmt: skip
    env = dict(
        line.split("=", 1) for line in (DEPLOY / "microturn.env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )  # fmt: skip
    assert "use-auth-secret" in (DEPLOY / "turnserver.conf").read_text().splitlines()
    assert env["MICROTURN_TURN_SECRET"] == conf["static-auth-secret"]
    config = Config.from_env(env)
    turn = [u for u in config.ice_servers if u.startswith("turn:")]
    turns = [u for u in config.ice_servers if u.startswith("turns:")]
    assert turn and all(f"{conf['realm']}:{conf['listening-port']}" in u for u in turn)
    assert turns and all(f"{conf['realm']}:{conf['tls-listening-port']}" in u for u in turns)
    servers = ice_servers(config, "call1", now=1_000.0)
    (relay,) = [s for s in servers if "username" in s]
    assert relay["username"] == f"{1_000 + int(config.turn_ttl_s)}:call1"
    assert relay["credential"] == turn_credential(conf["static-auth-secret"], relay["username"])


def test_turn_credentials_are_coturns_rest_api_hmac() -> None:
    from signaling.turn import turn_credential

    # openssl: printf '1795003600:microturn' | openssl dgst -sha1 -hmac s3cret -binary | base64
    assert turn_credential("s3cret", "1795003600:microturn") == "ViDQQ8XVZdoU85UK+ymUVw0Kyz8="


def test_the_inference_worker_unit_and_compose_service_use_flags_that_exist() -> None:
    import shlex

    from inference.worker import build_parser
    from infra.config import Config

    unit = (DEPLOY / "microturn-infer@.service").read_text()
    command = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    inner = shlex.split(command.split("-c ", 1)[1])[0]  # the sh -c script
    argv = shlex.split(inner.replace("$((8090 + %i))", "8090").replace("%i", "0"))
    assert argv[:3] == ["exec", "/opt/microturn/.venv/bin/microturn", "infer"]
    args = build_parser().parse_args(argv[3:])
    assert (args.port, args.device, args.max_sessions) == (8090, "cuda:0", 64)
    compose = (DEPLOY / "compose.yaml").read_text()
    infer = compose.split("  infer:", 1)[1].split("  agent:", 1)[0]
    flags = infer.split("command: [", 1)[1].split("]", 1)[0]
    argv = [part.strip().strip('"') for part in flags.replace("\n", " ").split(",")]
    assert argv[:2] == ["microturn", "infer"]
    build_parser().parse_args(argv[2:])
    env = dict(
        line.lstrip("# ").split("=", 1)
        for line in (DEPLOY / "microturn.env.example").read_text().splitlines()
        if line.lstrip("# ").startswith(("MICROTURN_", "REDIS_URL"))
    )  # the commented-out remote lines too
    assert Config.from_env(env).inference == "remote"
