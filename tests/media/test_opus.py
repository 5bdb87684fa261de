"""Opus on the event loop (media/opus.py): what a call's outbound track sends decodes back to what
the model said, on a contiguous clock; what a receiver hands the loop decoder comes out as audio
the timeline takes; and a live call uses both, with no decoder thread doing the work."""

from __future__ import annotations

import asyncio
import fractions
import queue

import av
import numpy as np
from aiohttp.test_utils import TestServer
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame

from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ
from media.audio_in import AudioInput, AudioTimeline
from media.audio_out import FRAME_SAMPLES, OpusAudioTrack
from media.clock import SessionClock
from media.opus import LoopDecoder
from media.synthetic import tone
from signaling.client import CallClient
from signaling.keys import CALLS


def strongest_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
    return float(np.fft.rfftfreq(pcm.size, 1 / rate)[spectrum.argmax()])


class _Opus:
    name = "opus"


async def test_the_outbound_track_sends_opus_packets_that_decode_to_the_model_audio() -> None:
    track = OpusAudioTrack()
    t = np.arange(MICROTURN_SAMPLES * 3) / SAMPLE_RATE_HZ
    track.write((0.4 * np.sin(2 * np.pi * 500 * t)).astype(np.float32), microturn=0)
    packets = [await track.recv() for _ in range(30)]
    track.stop()
    assert all(isinstance(p, av.Packet) for p in packets)
    assert [p.pts for p in packets] == [i * FRAME_SAMPLES for i in range(30)]
    assert all(p.time_base == fractions.Fraction(1, SAMPLE_RATE_HZ) for p in packets)
    # as aiortc's sender packs them: RTP timestamps 960 apart on Opus's 48 kHz clock
    stamps = [OpusEncoder().pack(p)[1] for p in packets[:3]]
    assert stamps == [0, 960, 1920]
    decoder = OpusDecoder()  # what a browser hears, decoded at 48 kHz
    pcm = np.concatenate(
        [
            f.to_ndarray().reshape(-1)[::2]  # type: ignore[attr-defined]
            for i, p in enumerate(packets)
            for f in decoder.decode(JitterFrame(data=bytes(p), timestamp=i * 960))
        ]
    ).astype(np.float32)
    loud = pcm[np.abs(pcm) > 1000]
    assert loud.size > 48_000 * 0.4, "the 600 ms written were sent"
    assert abs(strongest_hz(pcm[: 48_000 // 2], 48_000) - 500) < 20


def test_the_loop_decoder_gives_the_timeline_its_audio() -> None:
    encoder = OpusEncoder()  # a browser's: 48 kHz stereo, 20 ms
    t = np.arange(48_000) / 48_000
    tone_pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    encoded = []
    for i in range(50):
        chunk = np.repeat(tone_pcm[i * 960 : (i + 1) * 960][None, :], 2, 0).T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk.copy(), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48_000, i * 960
        frame.time_base = fractions.Fraction(1, 48_000)
        encoded += encoder.encode(frame)[0]
    timeline = AudioTimeline(SessionClock())
    audio_in = AudioInput(timeline)
    got: list[av.AudioFrame] = []

    def sink(frame: av.AudioFrame) -> None:
        got.append(frame)  # arriving on time, 20 ms apart
        audio_in.push_frame(frame, timeline.clock.t0 + 0.02 * len(got))

    decoder = LoopDecoder(sink)
    for i, data in enumerate(encoded):
        decoder.put((_Opus, JitterFrame(data=data, timestamp=i * 960)))
    decoder.put((_Opus, JitterFrame(data=b"\xff" * 3, timestamp=99 * 960)))  # garbage: skipped
    assert decoder.frames == len(got) == len(encoded)
    assert got[0].layout.name == "mono"
    assert timeline.stats.samples >= 0.9 * SAMPLE_RATE_HZ  # ~1 s of 16 kHz audio placed
    # aiortc's decoder thread waits on it for the end of the stream
    decoder.put(None)
    assert decoder.get(timeout=1) is None
    try:
        decoder.get(block=False)
        raise AssertionError("only one end")
    except queue.Empty:
        pass


async def test_a_live_call_decodes_its_audio_on_the_loop(server: TestServer) -> None:
    async with CallClient(str(server.make_url("")), audio=tone()) as call:
        await call.wait_event("session.created")
        server_call = server.app[CALLS].get(call.call_id or "")
        assert server_call is not None
        receiver = next(t.receiver for t in server_call.pc.getTransceivers() if t.kind == "audio")
        decoder = vars(receiver)["_RTCRtpReceiver__decoder_queue"]
        assert isinstance(decoder, LoopDecoder)
        # the microphone's audio reaches the timeline through it, the model's audio reaches the
        # client from the encoded track: both ways, half a second each
        while decoder.frames < 25 or len(call.received) < 25:
            await asyncio.sleep(0.05)
        assert server_call.timeline is not None and server_call.timeline.stats.frames >= 25
        assert server_call.outbound.stats.frames_sent >= 25
