"""tinyvideo: small video language models that reason."""

from tinyvideo.config import TinyVideoConfig
from tinyvideo.modeling import TinyVideoForConditionalGeneration
from tinyvideo.processing import TinyVideoProcessor

__all__ = ["TinyVideoConfig", "TinyVideoForConditionalGeneration", "TinyVideoProcessor"]
