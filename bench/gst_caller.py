"""Calls from GStreamer's webrtcbin: a load generator whose own work is C (encoders, SRTP, ICE),
not Python, so it costs the machine little and nothing of it is the server's.

    /usr/bin/python3 bench/gst_caller.py URL --calls N --seconds S [--video 320x240@15]
                                         [--stagger-ms 250] [--sample-s 30,570] [--json PATH]

Each call offers Opus audio (a tone, its own per call), VP8
video (videotestsrc's moving ball at the given size and rate; `none` for audio only) and an
`events` data channel; gathers its candidates (no trickle), POSTs the offer to /v1/calls, takes
the answer, and receives the server's audio as RTP (counted, not decoded). The calls start
`--stagger-ms` apart, are held `--seconds`, and their `GET /v1/calls/{id}` is read at each
`--sample-s` (seconds after the last call started) and at the end, before DELETE. Prints one JSON
line: per call what happened, for the benchmark to judge.

Standalone on purpose, like tests/signaling/gst_peer.py: Debian's system Python (python3-gi), no
Microturn import, nothing of the server's virtualenv.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

AUDIO = (
    "audiotestsrc is-live=true wave=sine freq={freq} volume=0.25 samplesperbuffer=960 "
    "! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=1 "
    "! opusenc frame-size=20 bitrate=32000 ! rtpopuspay pt=111 "
    "! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! webrtc. "
)
VIDEO = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={fps}/1 "
    "! videoconvert ! vp8enc deadline=1 cpu-used=8 target-bitrate={bps} keyframe-max-dist=300 "
    "! rtpvp8pay pt=96 "
    "! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! webrtc. "
)


def parse_video(text: str) -> tuple[int, int, int] | None:
    if text == "none":
        return None
    size, fps = text.split("@")
    w, h = size.split("x")
    return int(w), int(h), int(fps)


class Call:
    def __init__(
        self, n: int, base_url: str, video: tuple[int, int, int] | None, say: str = ""
    ) -> None:
        self.n = n
        self.say = say  # typed into the call once it is up (`input_text`)
        self.base_url = base_url.rstrip("/")
        desc = "webrtcbin name=webrtc bundle-policy=max-bundle " + AUDIO.format(freq=300 + 40 * n)
        self.pipe = Gst.parse_launch(desc + self._video(video))
        self.webrtc = self.pipe.get_by_name("webrtc")
        self.result: dict[str, object] = {
            "status": None,
            "code": None,
            "location": None,
            "ice": None,
            "events": {},
            "session": None,
            "rtp_in": 0,
            "samples": [],
            "error": None,
        }
        self.location: str | None = None
        self.offered = self.posted = False
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice)
        self.webrtc.connect("pad-added", self.on_pad)

    @staticmethod
    def _video(video: tuple[int, int, int] | None) -> str:
        if video is None:
            return ""
        w, h, fps = video
        bps = max(60_000, min(600_000, w * h * fps // 4))  # what a browser spends, about
        return VIDEO.format(w=w, h=h, fps=fps, bps=bps)

    def start(self) -> None:
        self.pipe.set_state(Gst.State.PLAYING)
        channel = self.webrtc.emit("create-data-channel", "events", None)
        channel.connect("on-message-string", self.on_message)
        self.channel = channel

    def on_negotiation_needed(self, webrtc: Gst.Element) -> None:
        GLib.idle_add(self.offer)

    def offer(self) -> bool:
        if not self.offered:
            self.offered = True
            promise = Gst.Promise.new_with_change_func(self.on_offer, None)
            self.webrtc.emit("create-offer", None, promise)
        return False

    def on_offer(self, promise: Gst.Promise, _: object) -> None:
        reply = promise.get_reply()  # kept while its offer is read (the reply owns it)
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, webrtc: Gst.Element, _: object) -> None:
        if webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.post)

    def post(self) -> bool:
        if self.posted:
            return False
        self.posted = True
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        request = urllib.request.Request(
            f"{self.base_url}/v1/calls",
            data=sdp.encode(),
            headers={"Content-Type": "application/sdp"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                self.result["status"] = response.status
                if response.headers.get("Location"):  # (a plain echo server names none)
                    self.location = urllib.parse.urljoin(
                        self.base_url + "/", response.headers["Location"]
                    )
                self.result["location"] = self.location
                answer = response.read().decode()
        except urllib.error.HTTPError as exc:
            self.result["status"] = exc.code
            try:
                self.result["code"] = json.loads(exc.read())["error"]["code"]
            except (ValueError, KeyError, TypeError):
                pass
            self.pipe.set_state(Gst.State.NULL)
            return False
        except OSError as exc:
            self.result["error"] = f"offer: {exc}"
            self.pipe.set_state(Gst.State.NULL)
            return False
        _, message = GstSdp.SDPMessage.new_from_text(answer)
        description = GstWebRTC.WebRTCSessionDescription.new(
            GstWebRTC.WebRTCSDPType.ANSWER, message
        )
        self.webrtc.emit("set-remote-description", description, Gst.Promise.new())
        return False

    def on_ice(self, webrtc: Gst.Element, _: object) -> None:
        self.result["ice"] = webrtc.get_property("ice-connection-state").value_nick

    def on_message(self, channel: object, message: str) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        kind = str(event.get("type"))
        events = self.result["events"]
        assert isinstance(events, dict)
        events[kind] = events.get(kind, 0) + 1
        if kind == "session.created":
            self.result["session"] = event
            if self.say:
                text = json.dumps({"type": "input_text", "text": self.say})
                self.channel.emit("send-string", text)

    def on_pad(self, webrtc: Gst.Element, pad: Gst.Pad) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        sink.set_property("signal-handoffs", True)
        sink.connect("handoff", self.on_rtp)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def on_rtp(self, *_: object) -> None:
        self.result["rtp_in"] = int(self.result["rtp_in"]) + 1  # type: ignore[call-overload]

    @property
    def up(self) -> bool:
        """The call is up: `session.created` came (or, from a server without an events channel,
        ICE connected)."""
        if self.result["session"] is not None:
            return True
        return self.location is None and self.result["ice"] in ("connected", "completed")

    def get(self, at_s: float) -> None:
        if self.location is None:
            return
        try:
            with urllib.request.urlopen(self.location, timeout=10) as response:
                status = json.loads(response.read())
        except (OSError, ValueError) as exc:
            status = {"error": str(exc)}
        samples = self.result["samples"]
        assert isinstance(samples, list)
        samples.append({"at_s": round(at_s, 1), **status})

    def hang_up(self) -> None:
        if self.location is not None:
            request = urllib.request.Request(self.location, method="DELETE")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    self.result["deleted"] = response.status
            except urllib.error.HTTPError as exc:
                self.result["deleted"] = exc.code
            except OSError as exc:
                self.result["deleted"] = str(exc)
        self.pipe.set_state(Gst.State.NULL)


@dataclass
class Progress:
    started: int = 0  # calls started
    connect_by: float = 0.0  # monotonic: calls not up by then are left out
    hold_from: float | None = None  # monotonic: every call up (or given up on)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--video", default="320x240@15", help="WxH@FPS, or none")
    parser.add_argument("--stagger-ms", type=float, default=250.0)
    parser.add_argument("--sample-s", default="", help="comma-separated seconds to read GET at")
    parser.add_argument("--connect-timeout-s", type=float, default=60.0)
    parser.add_argument("--say", default="", help="text each call types once it is up")
    args = parser.parse_args()
    Gst.init(None)
    video = parse_video(args.video)
    loop = GLib.MainLoop()
    calls = [Call(n, args.url, video, args.say) for n in range(args.calls)]
    sample_at = sorted(float(s) for s in args.sample_s.split(",") if s)
    state = Progress()

    def start_next() -> bool:
        if state.started >= len(calls):
            return False
        calls[state.started].start()
        state.started += 1
        return state.started < len(calls)

    def tick() -> bool:
        now = time.monotonic()
        if state.started < len(calls):
            return True
        if state.hold_from is None:
            state.connect_by = state.connect_by or now + args.connect_timeout_s
            pending = [c for c in calls if not c.up and c.result["status"] in (None, 201)]
            if pending and now < state.connect_by:
                return True
            state.hold_from = now
            up = sum(c.up for c in calls)
            print(f"hold {up} of {len(calls)} calls up", file=sys.stderr, flush=True)
            return True
        held = now - state.hold_from
        while sample_at and held >= sample_at[0]:
            at = sample_at.pop(0)
            for c in calls:
                c.get(at)
        if held >= args.seconds:
            loop.quit()
            return False
        return True

    start_next()
    if len(calls) > 1:
        GLib.timeout_add(max(1, int(args.stagger_ms)), start_next)
    GLib.timeout_add(100, tick)
    started = time.monotonic()
    loop.run()
    held_s = time.monotonic() - (state.hold_from or started)
    for c in calls:
        c.get(held_s)
    for c in calls:
        c.hang_up()
    print(json.dumps({"held_s": round(held_s, 1), "calls": [c.result for c in calls]}), flush=True)


if __name__ == "__main__":
    main()
