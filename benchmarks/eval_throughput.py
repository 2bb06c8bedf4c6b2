"""Evaluation throughput: the harness against the published evaluation loop, same model, same questions.

The published loop (docs/published-format.md 5 and 6, item 7) answers one question at a time: it decodes the whole
video, keeps the 16 sampled frames, runs the vision tower and generates, again for every question
about the same video. The harness decodes each video once (only the sampled frames, in a DataLoader
worker), runs the vision tower once per video and generates for a batch of questions at a time.
Both use the same frames, so their greedy answers must be identical; the script checks that.

Fixture: 20 videos of 4 s (320x240, 30 fps) with 3 questions each, the Video-MME shape, in the
synthetic suite's layout; a tiny model with random weights (the costs around the model are what
differ). Both ways run in the same process, alternately, `--repeats` times; the best time of each
is kept.

    python benchmarks/eval_throughput.py [--cache DIR] [--output JSON] [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from media import make_indexed_video  # noqa: E402

from tinyvideo.answers import extract_answer  # noqa: E402
from tinyvideo.eval.harness import evaluate  # noqa: E402
from tinyvideo.eval.predictions import read_predictions  # noqa: E402
from tinyvideo.eval.settings import Settings, load_questions  # noqa: E402
from tinyvideo.processing import chat_prompt  # noqa: E402
from tinyvideo.scratch import build_tiny  # noqa: E402
from tinyvideo.video import read_frames, uniform_indices  # noqa: E402

VIDEOS, QUESTIONS_PER_VIDEO, SECONDS, FPS, SIZE = 20, 3, 4, 30, (320, 240)


def make_fixture(root: Path, videos: int = VIDEOS) -> Path:
    """The suite layout with `videos` videos and 3 questions about each; generated once and kept."""
    if (root / "suite.json").is_file():
        return root
    rows = []
    for v in range(videos):
        video = f"test/clip-{v:02d}.mp4"
        make_indexed_video(root / "videos" / video, SECONDS * FPS, FPS, size=SIZE)
        for q in range(QUESTIONS_PER_VIDEO):
            rows.append({
                "id": f"clip-{v:02d}-{q}", "video": video, "task": ["counting", "order", "colour"][q],
                "question": f"Question {q} about clip {v}: what happens to the shape?",
                "options": ["it turns red", "it moves left", "it disappears", "it grows"], "answer": "ABCD"[(v + q) % 4],
            })
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "suite.json").write_text(json.dumps({"video_root": "videos", "splits": {"test": {"annotations": "annotations/test.jsonl"}}}))
    return root


def tiny_model():
    """A tiny model with large random weights, so that answers differ between questions."""
    model, processor = build_tiny(["what happens to the shape"], seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0, 0.3, generator=generator)
    return model.eval(), processor


def published_loop(model, processor, settings: Settings) -> dict[str, str]:
    """One question at a time: whole-video decode, 16 frames kept, vision tower and generate per question."""
    responses = {}
    for question in load_questions(settings):
        frames, _ = read_frames(question.video)  # every frame, as the published pytorchvideo path decodes
        frames = frames[uniform_indices(len(frames), settings.frames)]
        batch = processor(text=[chat_prompt(question.prompt)], videos=[frames]).to(model.device)
        with torch.inference_mode():
            output = model.generate(
                **batch, max_new_tokens=settings.max_new_tokens, do_sample=False, suppress_tokens=[processor.video_token_id]
            )
        text = processor.decode(output[0, batch["input_ids"].shape[1] :]).strip()
        extract_answer(text, question.options)
        responses[question.id] = text
    return responses


def harness_run(model, processor, settings: Settings, batch_size: int, workers: int) -> dict[str, str]:
    output = Path(tempfile.mkdtemp(prefix="eval-throughput-"))
    try:
        path = evaluate(settings, output, model, processor, batch_size=batch_size, num_workers=workers)
        return {r["id"]: r["response"] for r in read_predictions(path)}
    finally:
        shutil.rmtree(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "outputs" / "eval_throughput", help="where the fixture videos are kept")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "eval_throughput.json")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both ways")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="harness DataLoader workers")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = make_fixture(args.cache)
    model, processor = tiny_model()
    settings = Settings("synth", str(data), "in-memory tiny model", frames=16, max_new_tokens=args.max_new_tokens)
    questions = VIDEOS * QUESTIONS_PER_VIDEO
    times = {"published_loop": [], "harness": []}
    answers = {}
    for _ in range(args.repeats):
        for name, fn in (
            ("published_loop", lambda: published_loop(model, processor, settings)),
            ("harness", lambda: harness_run(model, processor, settings, args.batch_size, args.workers)),
        ):
            begin = time.perf_counter()
            answers[name] = fn()
            times[name].append(time.perf_counter() - begin)
            print(f"{name}: {times[name][-1]:.2f} s", flush=True)
    identical = answers["published_loop"] == answers["harness"] and len(answers["harness"]) == questions
    best = {name: min(values) for name, values in times.items()}
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} torch thread(s)",
        "fixture": {"videos": VIDEOS, "questions_per_video": QUESTIONS_PER_VIDEO, "seconds": SECONDS, "fps": FPS, "size": list(SIZE)},
        "settings": {"frames": 16, "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "workers": args.workers, "repeats": args.repeats},
        "published_loop": {"seconds": round(best["published_loop"], 3), "questions_per_second": round(questions / best["published_loop"], 2)},
        "harness": {"seconds": round(best["harness"], 3), "questions_per_second": round(questions / best["harness"], 2)},
        "speedup": round(best["published_loop"] / best["harness"], 2),
        "identical_greedy_predictions": identical,
        "all_times": {name: [round(t, 3) for t in values] for name, values in times.items()},
    }
    print(json.dumps(report, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    if not identical:
        raise SystemExit("the two ways gave different greedy answers")


if __name__ == "__main__":
    main()
