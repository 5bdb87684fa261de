"""The live path's codec, offline: Opus at a browser's bitrate keeps timing, level and words."""

from __future__ import annotations

import numpy as np

from lab.eval.suites import episodes_for, evaluate
from lab.tasks.codec import opus_roundtrip

SR = 16_000


def test_opus_keeps_the_timing_and_the_level_but_not_the_waveform() -> None:
    [ep] = episodes_for("turn", 1, 1, length=40)
    x = ep.mic()
    y = opus_roundtrip(x, 32_000)
    assert len(y) == len(x) and y.dtype == np.float32
    # no delay: the cross-correlation peaks at lag 0 (+-1 sample)
    a, b = x[SR : 5 * SR], y[SR : 5 * SR]
    lags = np.arange(-80, 81)
    corr = [float(np.dot(a[80:-80], np.roll(b, -k)[80:-80])) for k in lags]
    assert abs(int(lags[int(np.argmax(corr))])) <= 1
    level = lambda s: 10 * np.log10(np.mean(s.astype(np.float64) ** 2) + 1e-12)  # noqa: E731
    assert abs(level(y) - level(x)) < 1.0
    # lossy: it is not the same signal (what the model trained on is not what it hears live)
    snr = 10 * np.log10(np.sum(x**2) / np.sum((x - y) ** 2))
    assert 5 < snr < 40
    # a lower bitrate costs more of the waveform
    low = opus_roundtrip(x, 12_000)
    assert np.sum((x - low) ** 2) > np.sum((x - y) ** 2)


def test_evaluate_through_the_codec_says_so_in_the_report() -> None:
    from inference.checkpoint import init_model
    from inference.config import preset

    model = init_model(preset("tiny"))
    report = evaluate(model, ["idle"], 1, 1, sessions=1, length=12, codec_bitrate=24_000)
    assert report["codec"] == {"name": "opus", "bitrate": 24_000}
    assert "codec" not in evaluate(model, ["idle"], 1, 1, sessions=1, length=12)
