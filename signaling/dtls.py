"""DTLS that any standard WebRTC peer can complete, whatever its certificate's key.

aiortc offers only ECDHE-ECDSA cipher suites. In a DTLS 1.2 handshake the suite names the key of
the *server's* certificate, and Microturn answers offers as the DTLS client (`a=setup:active`), so
the peer is the server: a peer with an RSA certificate (GStreamer's webrtcbin by default, older
stacks) can pick no suite, and the handshake fails ("no shared cipher"). We offer the same suites
with RSA authentication beside the ECDSA ones: still ECDHE only (forward secrecy), AEAD first,
nothing weaker than aiortc's own choice. Our own certificate stays ECDSA P-256.

The peer's certificate is not checked against a CA (WebRTC certificates are self-signed, aiortc's
verify callback accepts any) but against the `a=fingerprint` of its SDP after the handshake, by
aiortc, for RSA and ECDSA keys alike.

aiortc takes no cipher setting: `new_peer_connection` gives each connection a certificate whose
SSL context carries the list, before any transport exists.
"""

from __future__ import annotations

import logging

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate, SRTPProtectionProfile
from OpenSSL import SSL

log = logging.getLogger(__name__)

# ECDHE key exchange only; for each, the ECDSA suite (aiortc's) and its RSA twin.
DTLS_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
    ]
)
_CERTIFICATES = "_RTCPeerConnection__certificates"


class DtlsCertificate(RTCCertificate):
    """aiortc's certificate (its key, its fingerprints) with our cipher list."""

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        ctx = super()._create_ssl_context(srtp_profiles)
        ctx.set_cipher_list(DTLS_CIPHERS.encode("ascii"))
        return ctx


def new_peer_connection(configuration: RTCConfiguration | None = None) -> RTCPeerConnection:
    """An RTCPeerConnection whose DTLS accepts peers with RSA as well as ECDSA certificates."""
    pc = RTCPeerConnection(configuration)
    if getattr(pc, _CERTIFICATES, None) is None:  # aiortc changed its internals
        log.warning("aiortc keeps no certificate list; DTLS stays ECDSA-only")
        return pc
    setattr(pc, _CERTIFICATES, [DtlsCertificate.generateCertificate()])
    return pc
