"""Inbound video: one frame per micro-turn, from inside its slice, centre-cropped undistorted."""

import av
import numpy as np

from media.clock import SessionClock
from media.video_in import VideoSampler, to_model_frame


def solid(w: int, h: int, value: int) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.full((h, w, 3), value, dtype=np.uint8), format="rgb24")


def test_centre_crop_keeps_the_middle_undistorted() -> None:
    # 320x240: left and right 40 px are red, the middle 240x240 green with a blue centre dot.
    img = np.zeros((240, 320, 3), dtype=np.uint8)
    img[:, :40] = (255, 0, 0)
    img[:, 280:] = (255, 0, 0)
    img[:, 40:280] = (0, 255, 0)
    img[100:140, 140:180] = (0, 0, 255)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    out = to_model_frame(frame, 40)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    assert out[:, 2, 0].max() < 60 and out[:, -3, 0].max() < 60, "the side bars are cropped away"
    assert out[0, 5, 1] > 200 and out[20, 20, 2] > 200
    # the dot stays square: as wide as it is tall
    blue = out[:, :, 2] > 128
    rows, cols = np.where(blue)
    assert abs((rows.max() - rows.min()) - (cols.max() - cols.min())) <= 1


def test_pick_takes_the_newest_frame_inside_the_slice() -> None:
    clock = SessionClock(t0=0.0)
    sampler = VideoSampler(clock, frame_size=8)
    sampler.push_frame(solid(16, 16, 10), 0.05)
    sampler.push_frame(solid(16, 16, 20), 0.15)
    sampler.push_frame(solid(16, 16, 30), 0.21)  # belongs to micro-turn 1
    first = sampler.pick(0)
    assert first is not None and abs(int(first[0, 0, 0]) - 20) <= 2
    second = sampler.pick(1)
    assert second is not None and abs(int(second[0, 0, 0]) - 30) <= 2
    assert sampler.pick(2) is None, "no frame arrived in micro-turn 2"
    assert sampler.stats.frames_used == 2 and sampler.stats.slices_without_frame == 1


def test_history_is_bounded() -> None:
    sampler = VideoSampler(SessionClock(t0=0.0), frame_size=8)
    for i in range(1000):
        sampler.push_frame(solid(16, 16, 1), i * 0.001)
    assert len(sampler._history) <= 16
    assert sampler.stats.frames == 1000


def test_an_absurd_aspect_ratio_costs_no_more_than_a_normal_frame() -> None:
    from media.video_in import MAX_ASPECT

    frame = solid(16382, 2, 200)  # would scale to 327,640 x 40 before the crop
    out = to_model_frame(frame, 40)
    assert out.shape == (40, 40, 3) and abs(int(out[20, 20, 0]) - 200) <= 2
    # the intermediate picture is capped: the work is that of a 160x40 frame at most
    assert MAX_ASPECT * 40 <= 160


def test_a_frame_too_large_is_skipped_and_counted() -> None:
    from media.video_in import MAX_FRAME_PIXELS

    clock = SessionClock(t0=0.0)
    sampler = VideoSampler(clock, frame_size=8)
    huge = av.VideoFrame(4096, 4096, "yuv420p")  # 16.7 M pixels, more than MAX_FRAME_PIXELS
    assert huge.width * huge.height > MAX_FRAME_PIXELS
    sampler.push_frame(huge, 0.05)
    assert sampler.pick(0) is None
    assert sampler.stats.oversize == 1


async def test_pick_async_converts_off_the_event_loop() -> None:
    import threading

    seen: list[str] = []
    clock = SessionClock(t0=0.0)
    sampler = VideoSampler(clock, frame_size=8)
    sampler.push_frame(solid(64, 48, 90), 0.05)
    import media.video_in as video_in

    original = video_in.to_model_frame

    def spy(frame: av.VideoFrame, size: int) -> np.ndarray:
        seen.append(threading.current_thread().name)
        return original(frame, size)

    video_in.to_model_frame = spy
    try:
        out = await sampler.pick_async(0)
    finally:
        video_in.to_model_frame = original
    assert out is not None and out.shape == (8, 8, 3)
    assert seen and seen[0].startswith("video-in"), seen
