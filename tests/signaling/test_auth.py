import pytest

from signaling.auth import Auth
from signaling.errors import ApiError


class FakeClock:
    """A controllable wall clock (time is an input here, not a dependency to mock)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(clock: FakeClock | None = None, **kw: object) -> Auth:
    args: dict = dict(
        enabled=True, api_keys=("key-1", "key-2"), secret="s3cret", allowed_origins=()
    )
    args.update(kw)
    return Auth(clock=clock, **args)


def test_api_keys() -> None:
    auth = make()
    assert auth.is_api_key("key-2")
    assert not auth.is_api_key("key-3") and not auth.is_api_key("")
    auth.require_api_key("Bearer key-1")
    with pytest.raises(ApiError) as info:
        auth.require_api_key("Bearer nope")
    assert info.value.status == 401
    with pytest.raises(ApiError):
        auth.require_api_key(None)
    with pytest.raises(ApiError) as info:
        auth.require_api_key("Basic abc")
    assert info.value.code == "invalid_authorization"


def test_token_round_trip_single_use() -> None:
    auth = make()
    text = auth.encode(auth.mint(60))
    token = auth.authorize_call(f"Bearer {text}", origin=None)
    assert token is not None
    auth.consume(token)
    again = auth.authorize_call(f"Bearer {text}", origin=None)
    assert again is not None
    with pytest.raises(ApiError) as info:
        auth.consume(again)
    assert info.value.code == "token_used"


def test_token_expires() -> None:
    clock = FakeClock()
    auth = make(clock)
    text = auth.encode(auth.mint(10))
    clock.now += 11
    with pytest.raises(ApiError) as info:
        auth.verify(text, None)
    assert (info.value.status, info.value.code) == (401, "token_expired")


def test_token_bound_to_origin() -> None:
    auth = make()
    text = auth.encode(auth.mint(60, origin="https://a.example"))
    auth.verify(text, "https://a.example")
    with pytest.raises(ApiError) as info:
        auth.verify(text, "https://b.example")
    assert info.value.status == 403


@pytest.mark.parametrize("tamper", ["sig", "payload", "prefix", "garbage"])
def test_tampered_tokens_are_refused(tamper: str) -> None:
    auth = make()
    text = auth.encode(auth.mint(60))
    prefix, body, sig = text.split(".")
    bad = {
        "sig": f"{prefix}.{body}.{sig[:-2]}AA",
        "payload": f"{prefix}.{body[:-2]}AA.{sig}",
        "prefix": f"mt9.{body}.{sig}",
        "garbage": "mt1.%%%.%%%",
    }[tamper]
    with pytest.raises(ApiError) as info:
        auth.verify(bad, None)
    assert info.value.status == 401


def test_token_from_another_server_secret_is_refused() -> None:
    text = make(secret="other").encode(make(secret="other").mint(60))
    with pytest.raises(ApiError):
        make().verify(text, None)


def test_auth_off_lets_anonymous_calls_through_but_still_checks_tokens() -> None:
    auth = make(enabled=False)
    assert auth.authorize_call(None, None) is None
    with pytest.raises(ApiError):
        auth.authorize_call("Bearer mt1.bad.bad", None)


def test_ttl_bounds() -> None:
    with pytest.raises(ApiError):
        make().mint(0)
    with pytest.raises(ApiError):
        make().mint(10**6)


def test_origins() -> None:
    auth = make(allowed_origins=("https://ok.example",))
    own = "http://127.0.0.1:8080"
    assert auth.origin_allowed(None, own)
    assert auth.origin_allowed(own, own)
    assert auth.origin_allowed("https://ok.example", own)
    assert not auth.origin_allowed("https://evil.example", own)
    assert make(allowed_origins=("*",)).origin_allowed("https://any.example", own)
