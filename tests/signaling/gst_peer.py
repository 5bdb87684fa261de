"""An independent WebRTC peer for Microturn: GStreamer's webrtcbin, with its default (RSA) DTLS
certificate, driven from Debian's system Python (python3-gi), not from aiortc.

    /usr/bin/python3 tests/signaling/gst_peer.py http://127.0.0.1:PORT [seconds]

It offers a sendrecv Opus audio track (a 440 Hz tone) and an `events` data channel, gathers its
ICE candidates (no trickle), POSTs the offer to /v1/calls, applies the answer, then waits for
`session.created`, sends `input_text`, records the audio it receives (its RMS per buffer) and hangs
up with DELETE. It prints one JSON line: what happened, for the test to judge.

Standalone on purpose: it imports nothing from Microturn and runs outside its virtualenv.
"""

from __future__ import annotations

import array
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

PIPELINE = (
    "webrtcbin name=webrtc bundle-policy=max-bundle "
    "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audioconvert ! audioresample "
    "! opusenc ! rtpopuspay pt=111 "
    "! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! webrtc."
)
LOUD_RMS = 0.05
HEAR_MS = 1500  # the call is judged once this much loud audio came back


class Peer:
    def __init__(self, base_url: str, deadline_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.loop = GLib.MainLoop()
        self.pipe = Gst.parse_launch(PIPELINE)
        self.webrtc = self.pipe.get_by_name("webrtc")
        self.result: dict[str, object] = {
            "posted": False,
            "status": None,
            "ice": None,
            "channel_open": False,
            "events": [],
            "loud_ms": 0.0,
            "received_ms": 0.0,
            "error": None,
        }
        self.channel: GstWebRTC.WebRTCDataChannel | None = None
        self.location: str | None = None
        self.sent_text = False
        self.offered = False
        self.deadline = time.monotonic() + deadline_s
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice)
        self.webrtc.connect("pad-added", self.on_pad)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    # -- offer/answer ---------------------------------------------------------------------------
    def on_negotiation_needed(self, webrtc: Gst.Element) -> None:
        GLib.idle_add(self.offer)  # after the data channel exists, on the main loop

    def offer(self) -> bool:
        if self.offered:
            return False
        self.offered = True
        promise = Gst.Promise.new_with_change_func(self.on_offer, None)
        self.webrtc.emit("create-offer", None, promise)
        return False

    def on_offer(self, promise: Gst.Promise, _: object) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, webrtc: Gst.Element, _: object) -> None:
        state = webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.post)

    def post(self) -> bool:
        if self.result["posted"]:
            return False
        self.result["posted"] = True
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        request = urllib.request.Request(
            f"{self.base_url}/v1/calls",
            data=sdp.encode(),
            headers={"Content-Type": "application/sdp"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                self.result["status"] = response.status
                self.location = urllib.parse.urljoin(
                    self.base_url + "/", response.headers["Location"]
                )
                answer = response.read().decode()
        except urllib.error.HTTPError as exc:
            self.result["status"] = exc.code
            self.fail(f"offer refused: {exc.code} {exc.read()[:300]!r}")
            return False
        _, message = GstSdp.SDPMessage.new_from_text(answer)
        description = GstWebRTC.WebRTCSessionDescription.new(
            GstWebRTC.WebRTCSDPType.ANSWER, message
        )
        self.webrtc.emit("set-remote-description", description, Gst.Promise.new())
        return False

    def on_ice(self, webrtc: Gst.Element, _: object) -> None:
        self.result["ice"] = webrtc.get_property("ice-connection-state").value_nick

    # -- the events channel ---------------------------------------------------------------------
    def open_channel(self) -> None:
        self.channel = self.webrtc.emit("create-data-channel", "events", None)
        assert self.channel is not None, "webrtcbin made no data channel"
        self.channel.connect("on-open", self.on_open)
        self.channel.connect("on-message-string", self.on_message)

    def on_open(self, channel: GstWebRTC.WebRTCDataChannel) -> None:
        self.result["channel_open"] = True

    def on_message(self, channel: GstWebRTC.WebRTCDataChannel, message: str) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        events = self.result["events"]
        assert isinstance(events, list)
        events.append(event.get("type"))
        if event.get("type") == "session.created" and not self.sent_text:
            self.sent_text = True
            channel.emit("send-string", json.dumps({"type": "input_text", "text": "hello"}))

    # -- received audio -------------------------------------------------------------------------
    def on_pad(self, webrtc: Gst.Element, pad: Gst.Pad) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        chain = Gst.parse_bin_from_description(
            "rtpopusdepay ! opusdec ! audioconvert ! audioresample "
            "! audio/x-raw,format=S16LE,channels=1,rate=48000 "
            "! appsink name=heard emit-signals=true sync=false",
            True,
        )
        self.pipe.add(chain)
        chain.sync_state_with_parent()
        chain.get_by_name("heard").connect("new-sample", self.on_sample)
        pad.link(chain.get_static_pad("sink"))

    def on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        buffer = sample.get_buffer()
        ok, info = buffer.map(Gst.MapFlags.READ)
        if ok:
            pcm = array.array("h", bytes(info.data))
            buffer.unmap(info)
            if pcm:
                ms = len(pcm) / 48.0
                rms = math.sqrt(sum(x * x for x in pcm) / len(pcm)) / 32768
                self.result["received_ms"] = float(self.result["received_ms"]) + ms  # type: ignore[arg-type]
                if rms > LOUD_RMS:
                    self.result["loud_ms"] = float(self.result["loud_ms"]) + ms  # type: ignore[arg-type]
        return Gst.FlowReturn.OK

    # -- lifetime -------------------------------------------------------------------------------
    def on_error(self, bus: Gst.Bus, message: Gst.Message) -> None:
        error, debug = message.parse_error()
        self.fail(f"{message.src.get_name()}: {error.message} ({debug})")

    def fail(self, why: str) -> None:
        if self.result["error"] is None:
            self.result["error"] = why
        self.loop.quit()

    def tick(self) -> bool:
        done = (
            self.result["channel_open"]
            and "session.created" in self.result["events"]  # type: ignore[operator]
            and float(self.result["loud_ms"]) >= HEAR_MS  # type: ignore[arg-type]
        )
        if done or time.monotonic() > self.deadline:
            if not done:
                self.result["error"] = self.result["error"] or "deadline passed"
            self.loop.quit()
            return False
        return True

    def hang_up(self) -> None:
        if self.location is None:
            return
        request = urllib.request.Request(self.location, method="DELETE")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self.result["deleted"] = response.status
        except urllib.error.HTTPError as exc:
            self.result["deleted"] = exc.code

    def run(self) -> dict[str, object]:
        self.pipe.set_state(Gst.State.PLAYING)
        self.open_channel()
        GLib.timeout_add(100, self.tick)
        self.loop.run()
        self.hang_up()
        self.pipe.set_state(Gst.State.NULL)
        return self.result


def main() -> None:
    Gst.init(None)
    deadline_s = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    print(json.dumps(Peer(sys.argv[1], deadline_s).run()), flush=True)


if __name__ == "__main__":
    main()
