"""The live evaluation: episodes as real calls from headless Chromium, scored from the audio the
page received (lab/live/cli.py: `make eval-live`)."""
