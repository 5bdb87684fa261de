"""The lab's tests use the inference tests' tiny models."""

from tests.inference.conftest import tiny, tiny_random

__all__ = ["tiny", "tiny_random"]
