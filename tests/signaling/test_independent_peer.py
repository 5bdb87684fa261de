"""Any standard peer completes a call: DTLS with RSA as well as ECDSA peer certificates.

The independent peer is GStreamer's webrtcbin with its default (RSA) certificate, from Debian's
system Python (tests/signaling/gst_peer.py; infra/install-system-deps.sh installs it). The server
runs the echo model, so the tone the peer sends comes back: audio both ways in one measurement.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiortc.rtcdtlstransport import (
    SRTP_AES128_CM_SHA1_80,
    RTCCertificate,
    RTCDtlsTransport,
    generate_certificate,
)
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL

from inference.echo import EchoModel
from inference.engine import Engine, EngineConfig
from infra.config import Config
from media.synthetic import tone
from signaling.app import create_app
from signaling.call import Call
from signaling.client import CallClient
from signaling.dtls import DTLS_CIPHERS, DtlsCertificate
from signaling.keys import CALLS

SYSTEM_PYTHON = "/usr/bin/python3"
PEER = Path(__file__).with_name("gst_peer.py")
PEER_DEADLINE_S = 60
CONNECT_S = 30.0
GST_PACKAGES = (
    "gstreamer1.0-plugins-bad gstreamer1.0-plugins-good gstreamer1.0-plugins-base "
    "gstreamer1.0-nice gir1.2-gst-plugins-bad-1.0 gir1.2-gst-plugins-base-1.0 python3-gi"
)
GST_CHECK = """
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstWebRTC, GstSdp
Gst.init(None)
missing = [e for e in ("webrtcbin", "nicesrc", "opusenc", "opusdec", "rtpopuspay", "dtlsenc")
           if Gst.ElementFactory.find(e) is None]
assert not missing, missing
"""


def gstreamer_missing() -> str | None:
    """Why the GStreamer peer cannot run here, or None."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"no {SYSTEM_PYTHON}"
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", GST_CHECK], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "unknown"
    return None


@pytest.fixture
async def echo_server(redis_url: str) -> AsyncIterator[TestServer]:
    engine = Engine(EchoModel(), EngineConfig(max_sessions=2, num_threads=1, gc_freeze=False))
    engine.start()
    config = Config.from_env({}, redis_url=redis_url, agent_workers=0, max_loop_lag_ms=0.0)
    server = TestServer(create_app(config, engine=engine), host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()
        engine.stop()


def dtls_of(call: Call) -> RTCDtlsTransport:
    transport = call.pc.getTransceivers()[0].receiver.transport
    assert isinstance(transport, RTCDtlsTransport)
    return transport


def peer_key(call: Call) -> Any:
    """The public key of the certificate the peer presented in the DTLS handshake."""
    ssl = dtls_of(call)._ssl
    assert ssl is not None
    certificate = ssl.get_peer_certificate(as_cryptography=True)
    assert certificate is not None
    return certificate.public_key()


async def test_gstreamer_webrtcbin_with_its_default_rsa_certificate_completes_a_call(
    echo_server: TestServer,
) -> None:
    missing = await asyncio.get_running_loop().run_in_executor(None, gstreamer_missing)
    if missing is not None:
        pytest.skip(
            f"GStreamer's webrtcbin is not usable from {SYSTEM_PYTHON} ({missing}); "
            f"infra/install-system-deps.sh installs it (Debian: {GST_PACKAGES})"
        )
    base = str(echo_server.make_url("")).rstrip("/")
    peer = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON,
        str(PEER),
        base,
        str(PEER_DEADLINE_S),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    calls = echo_server.app[CALLS]
    keys: list[Any] = []

    async def watch() -> None:  # the server side of the call, while it is up
        while not keys:
            for call in calls.all():
                if call.state == "active" and dtls_of(call).state == "connected":
                    keys.append(peer_key(call))
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(watch())
    try:
        out, err = await asyncio.wait_for(peer.communicate(), PEER_DEADLINE_S + 30)
    finally:
        watcher.cancel()
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    lines = out.decode().strip().splitlines()
    assert peer.returncode == 0 and lines, err.decode()[-3000:]
    result = json.loads(lines[-1])
    assert result["error"] is None, result
    assert result["status"] == 201 and result["channel_open"], result
    assert result["events"][0] == "session.created", "the events channel opened and spoke"
    assert "error" not in result["events"], "input_text from the peer was accepted"
    assert result["loud_ms"] >= 1500, "its own tone came back through the echo model"
    assert result["deleted"] == 204
    assert keys and isinstance(keys[0], rsa.RSAPublicKey), "the peer's certificate was RSA"
    assert len(calls) == 0


class RsaCertificate(DtlsCertificate):
    """A certificate with an RSA key, as older or other stacks have (for an aiortc peer)."""

    @classmethod
    def generateCertificate(cls) -> RsaCertificate:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(key=key, cert=generate_certificate(key))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
async def test_aiortc_peers_with_rsa_or_ecdsa_certificates_connect(
    echo_server: TestServer, kind: str
) -> None:
    base = str(echo_server.make_url("")).rstrip("/")
    client = CallClient(base, audio=tone())
    if kind == "rsa":
        setattr(  # noqa: B010
            client.pc,
            "_RTCPeerConnection__certificates",
            [RsaCertificate.generateCertificate()],
        )
    async with client as call:
        await call.wait_event("session.created", timeout=CONNECT_S)
        served = echo_server.app[CALLS].get(call.call_id or "")
        assert served is not None
        expected = rsa.RSAPublicKey if kind == "rsa" else ec.EllipticCurvePublicKey
        assert isinstance(peer_key(served), expected)
        assert await call.hang_up() == 204


def test_the_cipher_list_adds_rsa_twins_of_aiortcs_suites_and_nothing_weaker() -> None:
    ours = SSL.Connection(
        DtlsCertificate.generateCertificate()._create_ssl_context([SRTP_AES128_CM_SHA1_80])
    )
    aiortcs = SSL.Connection(
        RTCCertificate.generateCertificate()._create_ssl_context([SRTP_AES128_CM_SHA1_80])
    )
    # (TLS 1.3's own suites, which the list does not set, are never used by DTLS 1.2)
    names = [n for n in ours.get_cipher_list() if not n.startswith("TLS_")]
    theirs = [n for n in aiortcs.get_cipher_list() if not n.startswith("TLS_")]
    assert names == DTLS_CIPHERS.split(":")
    assert all(name.startswith("ECDHE-") for name in names), "forward secrecy only"
    stronger = {"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"}
    for name in theirs:
        assert name in names and name.replace("-ECDSA-", "-RSA-") in names
    for name in names:
        assert name.replace("-RSA-", "-ECDSA-") in theirs or name in stronger, name
