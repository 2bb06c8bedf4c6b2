"""tinyvideo: small video language models that reason.

The model classes are imported on first use, so that light modules (video decoding, the synthetic
suite, rewards) do not pay for importing transformers.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "TinyVideoConfig": "tinyvideo.config",
    "TinyVideoForConditionalGeneration": "tinyvideo.modeling",
    "TinyVideoProcessor": "tinyvideo.processing",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tinyvideo' has no attribute {name!r}")
