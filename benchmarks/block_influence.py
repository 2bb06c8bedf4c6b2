"""Which decoder layers of a language model change its hidden states most on the suite's texts?

Block influence (ShortGPT, Men et al. 2024): for layer i, one minus the cosine similarity of its input and its
output hidden states, averaged over the tokens (the first, the attention sink, left out) and over the texts.
A layer whose output is nearly its input does little and is the first to drop when pruning layers
(`language_model_layers` in a recipe, `tinyvideo init --language-model-layers`). The texts are the first
`--rows` captions and the first `--rows` stated-answer questions of a suite's train split, without video.

    python benchmarks/block_influence.py --suite runs/base/synth --keep 10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from tinyvideo.data.synth import load_suite
from tinyvideo.rows import read_json
from tinyvideo.scratch import load_language_model
from tinyvideo.train.base_model import DEFAULT, LANGUAGE_MODELS, package_file

ROOT = Path(__file__).resolve().parents[1]


def row_text(row: dict) -> str:
    return " ".join(turn["value"].replace("<video>", "").strip() for turn in row["conversations"])


def block_influence(language_model, tokenizer, texts: list[str]) -> list[float]:
    """Per decoder layer, 1 - cos(input, output) of its hidden states, mean over tokens after the first and over texts."""
    total = None
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt").input_ids
            states = language_model(input_ids=ids, output_hidden_states=True).hidden_states
            # hidden_states: the embeddings, then every layer's output (the last one after the final norm)
            layer = torch.stack([1 - F.cosine_similarity(a[0, 1:], b[0, 1:], dim=-1).mean() for a, b in zip(states, states[1:])])
            total = layer if total is None else total + layer
    return (total / len(texts)).tolist()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = LANGUAGE_MODELS[DEFAULT]
    parser.add_argument("--model", help=f"a language model folder or .gguf file (default: {source['file']} from {source['package']})")
    parser.add_argument("--suite", required=True, help="a suite folder (tinyvideo synth, or runs/base/synth after tinyvideo base)")
    parser.add_argument("--rows", type=int, default=24, help="captions, and as many stated-answer questions")
    parser.add_argument("--keep", type=int, default=10, help="how many layers of highest influence to list")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "block_influence.json"))
    args = parser.parse_args()
    suite = load_suite(Path(args.suite))
    rows = read_json(suite.path("train", "captions"))[: args.rows] + read_json(suite.path("train", "binding"))[: args.rows]
    model_path = args.model or package_file(source["package"], source["file"])
    language_model, tokenizer = load_language_model(model_path)
    influence = block_influence(language_model.eval(), tokenizer, [row_text(row) for row in rows])
    keep = sorted(sorted(range(len(influence)), key=lambda i: -influence[i])[: args.keep])
    result = {
        "model": str(model_path),
        "suite": suite.manifest["seed"],
        "texts": len(rows),
        "block_influence": [round(value, 4) for value in influence],
        "keep": keep,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
