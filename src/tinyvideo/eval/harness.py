"""The evaluation harness (`tinyvideo eval`): answer a benchmark's questions with a model and score them as its
leaderboard does.

The adapters in `benchmarks/` turn each benchmark's own files into questions; this module does the
rest (`evaluate`), built around three costs and one risk:
- Decoding: each video is decoded once, in DataLoader workers, for all of its questions (Video-MME
  has three per video), with the frames its benchmark's published evaluation would take.
- The vision tower: each video's frame features are computed once (`model.encode_frames`) and
  passed to `generate` as `frame_features` for every question about it.
- Generation: questions are answered in batches, left-padded. Greedy by default; sampling needs a
  seed, and each batch's seed is derived from the seed and its question ids.
- Cloze mode generates nothing: the bare question is asked with the short-answer instruction and each
  option's text is scored as the answer (the log-probability of its tokens and the end of turn, as
  lm-eval-harness's `acc`); the likeliest option is the prediction. It measures whether a model
  knows the answer when it cannot yet name the option's letter, which small models learn late.
- Lost work: every answer is appended to a JSONL predictions file and flushed batch by batch. A
  rerun reads the file, drops a line cut off by a crash, and answers only what is missing (and the
  questions whose video could not be read, in case it has been fixed since).

Each question's `status` says what became of its video, and the run goes on whatever it is: "ok";
"damaged" (some sampled frames cannot be decoded: answered with nearby frames standing in or fewer
frames, as its `frames` record lists); "truncated" (the file ends early; answered from the part that
decodes); "missing" or "unreadable" (not answered, counted wrong).
`--shard i/n` (or the process index under `accelerate launch`, GPUs or not) splits the videos
deterministically; each shard writes its own predictions file, and `tinyvideo eval merge --output DIR`
scores them all (under `accelerate launch` the last process to finish does).

The parts, in the order a run uses them: `settings` (what decides the answers, the questions), `outputs`
(the run file, the report), `predictions` (the file answers are appended to), `frames` (decoding),
`answering` (generation and Cloze scoring).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tinyvideo.checkpoints import DTYPES
from tinyvideo.errors import InputError
from tinyvideo.eval.answering import answer_questions
from tinyvideo.eval.outputs import check_run_file, run_record, write_run_file
from tinyvideo.eval.predictions import predictions_path, read_predictions, resume
from tinyvideo.eval.report import ANSWERED
from tinyvideo.eval.settings import Settings, load_questions, shard_of
from tinyvideo.modeling import TinyVideoForConditionalGeneration
from tinyvideo.processing import TinyVideoProcessor

logger = logging.getLogger(__name__)


def evaluate(
    settings: Settings,
    output: Path,
    model=None,
    processor=None,
    shard: tuple[int, int] | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | None = None,
) -> Path:
    """Answer what is still unanswered in `output` for this shard; returns the predictions file.

    The model and its processor are loaded from `settings.model` unless both are given. Questions
    answered in another predictions file of the folder (another sharding of the same run) are skipped.
    The folder's run file is written only once the questions and the model have loaded: a run refused
    at the start leaves nothing behind.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    questions = load_questions(settings)
    output = Path(output)
    wanted = run_record(settings, questions)
    check_run_file(output, wanted)
    mine = shard_of(questions, *shard) if shard else questions
    path = predictions_path(output, shard)
    done = resume(path)
    for other in output.glob("predictions*.jsonl"):  # answered under another sharding of the same run
        if other != path:
            done |= {r["id"] for r in read_predictions(other) if r.get("status") in ANSWERED}
    pending = [q for q in mine if q.id not in done]
    logger.info("%s: %d question(s) in this shard, %d already answered", settings.benchmark, len(mine), len(mine) - len(pending))
    if pending and (model is None or processor is None):
        processor = TinyVideoProcessor.from_pretrained(settings.model)
        model = TinyVideoForConditionalGeneration.from_pretrained(settings.model, dtype=DTYPES[settings.dtype])
        model.to(device or "cpu").eval()
    write_run_file(output, wanted)
    if not pending:
        return path
    start = time.perf_counter()
    answer_questions(model, processor, pending, settings, path, batch_size, num_workers)
    seconds = time.perf_counter() - start
    logger.info("answered %d question(s) in %.1f s (%.2f per second)", len(pending), seconds, len(pending) / seconds)
    return path
