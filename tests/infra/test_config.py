import pytest

from infra.config import Config, is_loopback


def test_defaults_serve_loopback_without_auth() -> None:
    config = Config.from_env({})
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.redis_url is None
    assert not config.auth_enabled
    assert config.use_loopback_ice
    assert config.url == "http://127.0.0.1:8080"
    assert config.token_secret, "a random token secret is made when none is configured"


def test_environment_then_overrides() -> None:
    env = {
        "MICROTURN_PORT": "9000",
        "MICROTURN_API_KEYS": "a, b",
        "REDIS_URL": "redis://x:1/0",
        "MICROTURN_ICE_LOOPBACK": "no",
    }
    config = Config.from_env(env, port=9100, model=None)
    assert config.port == 9100, "explicit overrides win over the environment"
    assert config.api_keys == ("a", "b")
    assert config.redis_url == "redis://x:1/0"
    assert config.use_loopback_ice is False
    assert config.model is None


def test_auth_turns_on_when_binding_a_public_address() -> None:
    assert Config.from_env({}, host="0.0.0.0").auth_enabled
    assert not Config.from_env({}, host="0.0.0.0", auth="off").auth_enabled
    assert Config.from_env({}, host="127.0.0.1", auth="on").auth_enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MICROTURN_PORT": "eighty"}, "port"),
        ({"MICROTURN_AUTH": "maybe"}, "auth"),
        ({"MICROTURN_MAX_CALLS": "0"}, "max_calls"),
        ({"MICROTURN_ICE_LOOPBACK": "perhaps"}, "ice_loopback"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config.from_env(env)


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


def test_every_setting_is_described_with_its_env_var() -> None:
    rows = Config.describe()
    assert len(rows) >= 15
    assert all(env and help_ for _, env, _, help_ in rows)


def test_remote_inference_needs_a_redis_the_workers_share() -> None:
    with pytest.raises(ValueError, match="redis-url"):
        Config.from_env({}, inference="remote")
    with pytest.raises(ValueError, match="local or remote"):
        Config.from_env({}, inference="elsewhere")
    env = {
        "MICROTURN_INFERENCE": "remote",
        "REDIS_URL": "redis://redis.internal:6379/0",
        "MICROTURN_INFERENCE_POOL": "gpu",
        "MICROTURN_INFERENCE_STALL_MS": "300",
    }
    config = Config.from_env(env)
    assert (config.inference, config.inference_pool, config.inference_stall_ms) == (
        "remote",
        "gpu",
        300.0,
    )
    assert Config.from_env({}).inference == "local", "one process by default (make run)"
