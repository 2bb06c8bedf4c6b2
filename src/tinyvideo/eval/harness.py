"""`tinyvideo eval`: answer a benchmark's questions with a model and score them as its leaderboard does.

The adapters in `benchmarks/` turn each benchmark's own files into questions; this module does the
rest, built around three costs and one risk:
- Decoding: each video is decoded once, in DataLoader workers, for all of its questions (Video-MME
  has three per video), with the frames its benchmark's published evaluation would take.
- The vision tower: each video's frame features are computed once (`model.encode_videos`) and
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
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from tinyvideo.errors import InputError
from tinyvideo.eval.answers import extract_answer
from tinyvideo.eval.benchmarks import longvideobench, mlvu, mmvu, mvbench, nextqa, synth, videomme
from tinyvideo.eval.benchmarks.common import WITH_SUBTITLES, WITHOUT_SUBTITLES, AnnotationError, Question, Sampling
from tinyvideo.eval.report import ANSWERED, beside, markdown, score
from tinyvideo.flags import add_frame_arguments, frame_sampling, non_negative_float, non_negative_int, positive_int
from tinyvideo.processing import preprocess_frames
from tinyvideo.prompts import question_with_instruction
from tinyvideo.rows import read_json
from tinyvideo.train.grpo_rollouts import completion_logprobs
from tinyvideo.video import VideoDecodeError, read_frames
from tinyvideo.vision_towers import FrameTransform

logger = logging.getLogger(__name__)

BENCHMARKS = {
    "videomme": videomme,
    "longvideobench": longvideobench,
    "mvbench": mvbench,
    "mlvu": mlvu,
    "mmvu": mmvu,
    "nextqa": nextqa,
    "synth": synth,
}
# Adapter options and the benchmarks that take them.
ADAPTER_OPTIONS = {"duration": ("videomme",), "split": ("nextqa", "synth"), "subtitles": ("videomme", "longvideobench")}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
RUN_FILE = "run.json"
REPORT_LOCK = "report.lock"
MODES = ("option", "reason", "cloze")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that decides the answers; a predictions file is only ever resumed under the same settings."""

    benchmark: str
    data: str
    model: str
    mode: str = "option"
    frames: int | None = 16
    fps: float | None = None
    max_frames: int | None = None
    duration: str = "all"
    split: str = "test"
    subtitles: bool = False
    limit: int | None = None
    temperature: float = 0.0
    seed: int | None = None
    max_new_tokens: int = 1024
    dtype: str = "float32"

    def __post_init__(self):
        if self.benchmark not in BENCHMARKS:
            raise InputError(f"unknown benchmark {self.benchmark!r}; expected one of {sorted(BENCHMARKS)}")
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in ADAPTER_OPTIONS}
        changed = {name: getattr(self, name) for name, default in defaults.items() if getattr(self, name) != default}
        refuse_unused_options(self.benchmark, changed)
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if (self.frames is None) == (self.fps is None):
            raise InputError("give a frame count or a frame rate (fps), not both")
        if self.max_frames is not None and self.fps is None:
            raise InputError("max_frames caps fps sampling; with a frame count it has no effect")
        if self.temperature > 0 and self.seed is None:
            raise InputError("sampling (temperature > 0) needs a seed, so that the run can be repeated")
        for name in ("frames", "max_frames", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_new_tokens < (0 if self.mode == "cloze" else 1):  # Cloze mode generates nothing
            raise InputError(f"max_new_tokens must be at least 1 for {self.mode} mode, got {self.max_new_tokens}")
        if self.fps is not None and not self.fps > 0:
            raise InputError(f"fps must be greater than 0, got {self.fps}")
        if not self.temperature >= 0:
            raise InputError(f"temperature must be at least 0, got {self.temperature}")


def refuse_unused_options(benchmark: str, given: dict) -> None:
    """`InputError` for an adapter option (`ADAPTER_OPTIONS`) given to a benchmark that does not take it:
    it would be ignored, and the run would not be what was asked for."""
    for name, value in given.items():
        if benchmark not in ADAPTER_OPTIONS[name]:
            users = ", ".join(ADAPTER_OPTIONS[name])
            flag = f"--{name}" if value is True else f"--{name} {value}"
            raise InputError(f"{benchmark} takes no {flag}: --{name} is for {users}")


# ---- questions -------------------------------------------------------------------------------------


def load_questions(settings: Settings) -> list[Question]:
    """The benchmark's questions in its files' order, `limit` applied (`first_questions`); ids must be
    unique. In Cloze mode the prompt is the bare question with the short-answer instruction."""
    adapter = BENCHMARKS[settings.benchmark]
    options = {name: getattr(settings, name) for name, users in ADAPTER_OPTIONS.items() if settings.benchmark in users}
    questions = adapter.load(Path(settings.data), "option" if settings.mode == "cloze" else settings.mode, **options)
    if settings.mode == "cloze":
        questions = [dataclasses.replace(q, prompt=question_with_instruction(q.text, "cloze")) for q in questions]
    seen: set[str] = set()
    for question in questions:
        if question.id in seen:
            raise AnnotationError(f"{settings.benchmark}: question id {question.id!r} occurs twice in {settings.data}")
        seen.add(question.id)
    return first_questions(questions, settings.limit)


def first_questions(questions: Sequence[Question], limit: int | None) -> list[Question]:
    """The first `limit` questions (all when None), each with its setting with subtitles where it is asked
    both ways (which follows it, see `both_settings`): `limit` counts questions, not prompts."""
    kept, counted = [], 0
    for question in questions:
        counted += question.categories.get("subtitles") != WITH_SUBTITLES
        if limit is not None and counted > limit:
            break
        kept.append(question)
    return kept


def shard_of(questions: Sequence[Question], index: int, count: int) -> list[Question]:
    """Every `count`-th video from the `index`-th, with all of its questions: a video is decoded in one shard only."""
    videos = list(dict.fromkeys(q.video for q in questions))
    mine = set(videos[index::count])
    return [q for q in questions if q.video in mine]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard takes i/n (for example 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise InputError(f"--shard {text}: i must be between 0 and n-1")
    return index, count


# ---- frames ----------------------------------------------------------------------------------------


class VideoFrames(Dataset):
    """One item per (video, frame rule): its sampled frames as model pixels, or why there are none.

    Runs in DataLoader workers, so decoding and resizing overlap with the model's work.
    """

    def __init__(self, videos: Sequence[tuple[str, Sampling]], settings: Settings, transform: FrameTransform, threads: int = 0):
        self.videos = list(videos)
        self.settings = settings
        self.transform = transform
        self.threads = threads

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int):
        path, sampling = self.videos[index]
        s = self.settings
        choose = sampling.chooser(Path(path).is_dir(), s.frames, s.fps, s.max_frames)
        rule = {"rule": sampling.rule, "bound": list(sampling.bound) if sampling.bound else None}
        try:
            frames, info = read_frames(path, indices=choose, threads=self.threads)
        except (VideoDecodeError, ValueError) as error:
            status = "unreadable" if Path(path).exists() else "missing"
            return index, None, {**rule, "error": str(error)}, status
        record = {**rule, **{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(info).items()}}
        status = "damaged" if info.damaged else "truncated" if info.truncated else "ok"
        return index, preprocess_frames(frames, self.transform), record, status


# ---- predictions file ------------------------------------------------------------------------------


def read_predictions(path: Path) -> list[dict]:
    """The records of a predictions file; a line cut off by a crash is skipped."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return _parse(lines, path)


def _parse(lines: Sequence[str], path: Path) -> list[dict]:
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s: skipping an incomplete line (the run that wrote it was interrupted)", path)
    return records


def resume(path: Path) -> set[str]:
    """Ids already answered in `path`; the file is rewritten without cut-off lines, repeats and unread videos."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept: dict[str, dict] = {}
    for record in _parse(lines, path):
        if record.get("status") in ANSWERED:
            kept.setdefault(record["id"], record)
    if len(kept) != len(lines):
        write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept.values()))
    return set(kept)


def append(path: Path, records: Iterable[dict]) -> None:
    """Append and flush to disk: what is written survives a kill of the process."""
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and rename: readers (and other processes) never see half a file."""
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def predictions_path(output: Path, shard: tuple[int, int] | None) -> Path:
    return output / ("predictions.jsonl" if shard is None else f"predictions-{shard[0]}-of-{shard[1]}.jsonl")


# ---- answering -------------------------------------------------------------------------------------


def batch_seed(seed: int, ids: Sequence[str]) -> int:
    """A batch's sampling seed: the same questions under the same seed draw the same samples."""
    text = "\n".join([str(seed), *ids])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class Asked(NamedTuple):
    """A question waiting for its batch, as asked at its frames' times, with its video's frame features,
    frame record and the state of its subtitles (None for a question without)."""

    question: Question
    features: torch.Tensor
    frames: dict
    status: str
    subtitles: str | None = None


def prompt_ids(processor, item: Asked) -> list[int]:
    """The token ids of a question's chat prompt; a question too long for the model loses the middle of
    its text, never its options, instruction or turn markers."""
    counts = [len(item.features)]
    return processor.tokenize(processor.fit_prompt(processor.chat_prompt(item.question.prompt), item.question.text, counts), counts)


def answer_batch(model, processor, items: Sequence[Asked], settings: Settings) -> list[dict]:
    """Generate for a batch of questions, left-padded (Cloze mode: score their options); one record each."""
    if settings.mode == "cloze":
        return score_options(model, processor, items)
    questions = [item.question for item in items]
    examples = [{"input_ids": prompt_ids(processor, item)} for item in items]
    batch = {k: v.to(model.device) for k, v in processor.pad(examples, padding_side="left").items()}
    sampling = {"do_sample": False}
    if settings.temperature > 0:
        torch.manual_seed(batch_seed(settings.seed, [q.id for q in questions]))
        sampling.update(do_sample=True, temperature=settings.temperature)
    with torch.inference_mode():
        output = model.generate(
            **batch, frame_features=[item.features for item in items], max_new_tokens=settings.max_new_tokens, **sampling
        )
    new_tokens = output[:, batch["input_ids"].shape[1] :]
    texts = processor.batch_decode(new_tokens)
    records = []
    for item, text, tokens in zip(items, texts, new_tokens):
        answer = read_response(item.question, text)
        records.append(
            record_of(
                item.question,
                item.status,
                item.frames,
                item.subtitles,
                **answer,
                new_tokens=int((tokens != processor.pad_token_id).sum()),
            )
        )
    return records


def read_response(question: Question, text: str) -> dict:
    """The response as recorded, the option letter read from it against the question's options, and the
    rule that read it (no letter for an answer that cannot be read or that hedges between options)."""
    response = text.strip()
    extracted = extract_answer(response, question.options)
    return {"response": response, "letter": extracted.letter, "method": extracted.method}


def score_options(model, processor, items: Sequence[Asked]) -> list[dict]:
    """Cloze mode: every option's text as the answer to the question, scored by the log-probability of
    its tokens and the end of turn; the highest scoring option is chosen.

    Each question's prompt is embedded once (left-padded, its video's features spliced in) and repeated
    for its options; the answers follow, right-padded, and only their positions reach the output head.
    """
    prompts = [{"input_ids": prompt_ids(processor, item)} for item in items]
    prompts = {k: v.to(model.device) for k, v in processor.pad(prompts, padding_side="left").items()}
    answer_ids = [processor.tokenize(processor.reply_text(text), []) for item in items for text in item.question.options.values()]
    answers = {k: v.to(model.device) for k, v in processor.pad([{"input_ids": ids} for ids in answer_ids]).items()}
    counts = torch.tensor([len(item.question.options) for item in items], device=model.device)
    with torch.inference_mode():
        embeds = model.embed_inputs(prompts["input_ids"], frame_features=[item.features for item in items])
        logprobs = completion_logprobs(
            model,
            embeds.repeat_interleave(counts, 0),
            prompts["attention_mask"].repeat_interleave(counts, 0),
            answers["input_ids"],
            num_generations=1,
        )
    totals = iter((logprobs * answers["attention_mask"]).sum(dim=-1).tolist())
    records = []
    for item in items:
        scores = {letter: next(totals) for letter in item.question.options}
        letter = max(scores, key=scores.get)
        records.append(
            record_of(
                item.question,
                item.status,
                item.frames,
                item.subtitles,
                response=item.question.options[letter],
                letter=letter,
                method="likelihood",
                scores=scores,
            )
        )
    return records


def record_of(question: Question, status: str, frames: dict, subtitles: str | None = None, **answer) -> dict:
    """One line of the predictions file; `subtitles` (the state of the question's subtitles) only when it has some."""
    letter = answer.get("letter")
    return {
        "id": question.id,
        "status": status,
        "answer": question.answer,
        "letter": letter,
        "correct": letter == question.answer,
        "method": answer.get("method"),
        "response": answer.get("response"),
        "new_tokens": answer.get("new_tokens"),
        "categories": question.categories,
        "video": question.video,
        "frames": frames,
        "prompt": question.prompt,
        **({"subtitles": subtitles} if subtitles is not None else {}),
        **({"scores": answer["scores"]} if "scores" in answer else {}),
    }


def answer_questions(
    model, processor, questions: Sequence[Question], settings: Settings, path: Path, batch_size: int = 8, num_workers: int = 0
) -> None:
    """Answer the questions, appending their records to `path` batch by batch."""
    from tqdm.auto import tqdm

    by_video: dict[tuple[str, Sampling], list[Question]] = {}
    for question in questions:
        by_video.setdefault((question.video, question.sampling), []).append(question)
    videos = list(by_video)
    dataset = VideoFrames(videos, settings, processor.frame_transform, threads=1 if num_workers else 0)
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers)
    queue: list[Asked] = []
    progress = tqdm(total=len(questions), desc=settings.benchmark, unit="q", disable=None)  # off when not a terminal

    def flush(items: Sequence[Asked]) -> None:
        append(path, answer_batch(model, processor, items, settings))
        progress.update(len(items))

    for index, pixels, frames, status in loader:
        asked = by_video[videos[index]]
        if pixels is None:
            logger.warning("%s: %s (%d question(s) counted wrong)", videos[index][0], frames["error"], len(asked))
            append(path, [record_of(q, status, frames) for q in asked])
            progress.update(len(asked))
            continue
        with torch.inference_mode():
            features = model.encode_videos([pixels])[0]
        for question in asked:
            question, subtitles = question.at_frames(frames.get("timestamps"))
            queue.append(Asked(question, features, frames, status, subtitles))
        while len(queue) >= batch_size:
            flush(queue[:batch_size])
            queue = queue[batch_size:]
    if queue:
        flush(queue)
    progress.close()


# ---- runs and reports ------------------------------------------------------------------------------


def run_record(settings: Settings, num_questions: int) -> dict:
    """What the output folder's run file holds: the settings and the question count."""
    return {"settings": dataclasses.asdict(settings), "num_questions": num_questions}


def check_run_file(output: Path, wanted: dict) -> None:
    """Refuse an output folder whose run file records other settings (its answers must not be mixed in)."""
    path = output / RUN_FILE
    if not path.is_file():
        return
    found = read_json(path)
    defaults = {f.name: f.default for f in dataclasses.fields(Settings) if f.default is not dataclasses.MISSING}
    found["settings"] = {**defaults, **found.get("settings", {})}  # settings added since: their defaults
    if found != wanted:
        changed = sorted(k for k in wanted["settings"] if found.get("settings", {}).get(k) != wanted["settings"][k])
        raise InputError(
            f"{output} holds predictions made with other settings ({', '.join(changed) or 'question count'} "
            "differ): choose another --output, or delete that folder to start again"
        )


def write_run_file(output: Path, wanted: dict) -> None:
    """Record the settings in the output folder, once the run has everything it needs to start."""
    output.mkdir(parents=True, exist_ok=True)
    if not (output / RUN_FILE).is_file():
        write_atomic(output / RUN_FILE, json.dumps(wanted, indent=2) + "\n")


def build_report(output: Path) -> dict:
    """Score every predictions file in `output` together and write report.json and report.md.

    Processes that finish together take turns (an exclusive lock on `output/report.lock`): each scores
    what is there when its turn comes, so the last to finish writes the report of every answer."""
    path = output / RUN_FILE
    if not path.is_file():
        raise InputError(f"{output}: no {RUN_FILE}; is this the --output folder of a tinyvideo eval run?")
    with open(output / REPORT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return _write_report(output, read_json(path))


def _write_report(output: Path, run: dict) -> dict:
    settings = run["settings"]
    records = [r for p in sorted(output.glob("predictions*.jsonl")) for r in read_predictions(p)]
    scoring = BENCHMARKS[settings["benchmark"]].SCORING
    title = f"{settings['benchmark']} ({settings['mode']} mode)"
    if not settings.get("subtitles"):
        report = {"benchmark": settings["benchmark"], "mode": settings["mode"], **score(records, scoring, expected=run["num_questions"])}
        text = markdown(report, title)
    else:  # every question asked without and with subtitles: each setting scored on its own
        expected = run["num_questions"] // 2
        parts = {
            name: score([r for r in records if r["categories"].get("subtitles") == name], scoring, expected=expected)
            for name in (WITHOUT_SUBTITLES, WITH_SUBTITLES)
        }
        report = {"benchmark": settings["benchmark"], "mode": settings["mode"], **parts[WITH_SUBTITLES], "without_subtitles": parts[WITHOUT_SUBTITLES]}
        text = "\n".join(
            [markdown(parts[WITH_SUBTITLES], f"{title}, {WITH_SUBTITLES}"), f"## {WITHOUT_SUBTITLES} beside {WITH_SUBTITLES}", "", beside(parts), ""]
        )
    report["settings"] = settings
    write_atomic(output / "report.json", json.dumps(report, indent=2) + "\n")
    write_atomic(output / "report.md", text + "\n")
    return report


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
    wanted = run_record(settings, len(questions))
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
        from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor

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


# ---- command line ----------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("benchmark", choices=[*BENCHMARKS, "merge"], help="benchmark to run, or 'merge' to score shards")
    parser.add_argument("--model", help="checkpoint folder (tinyvideo or published TinyLLaVA format)")
    parser.add_argument("--data", help="the benchmark's folder, as downloaded (see each adapter for its layout)")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="option",
        help="option, reason: the published prompts, answers generated; cloze: each option's text scored as the answer",
    )
    add_frame_arguments(parser)
    parser.add_argument("--duration", choices=["short", "medium", "long", "all"], help="Video-MME durations (default all)")
    parser.add_argument("--split", help="NExT-QA / synthetic-suite split (default test)")
    parser.add_argument(
        "--subtitles",
        action="store_true",
        help="Video-MME, LongVideoBench: ask every question without and with its subtitles, scored side by side",
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="questions per generate call")
    parser.add_argument("--limit", type=positive_int, help="only the first N questions")
    parser.add_argument("--shard", help="i/n: answer the i-th of n deterministic parts (0-based)")
    parser.add_argument("--output", help="results folder (default outputs/eval/<benchmark>-<mode>)")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy; sampling needs --seed")
    parser.add_argument("--seed", type=non_negative_int, help="seed for sampling")
    parser.add_argument("--max-new-tokens", type=positive_int, default=1024)
    parser.add_argument("--num-workers", type=non_negative_int, default=2, help="DataLoader workers decoding videos")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps, ... (default: accelerate's choice)")


def settings_from(args) -> Settings:
    """The run's settings from the flags; `InputError` for an adapter option the benchmark does not take,
    even at its default value."""
    frames, fps, max_frames = frame_sampling(args)
    given = {name: getattr(args, name) for name in ("duration", "split") if getattr(args, name) is not None}
    refuse_unused_options(args.benchmark, given)
    return Settings(
        benchmark=args.benchmark,
        data=str(Path(args.data).resolve()),
        model=str(Path(args.model).resolve()),
        mode=args.mode,
        frames=frames,
        fps=fps,
        max_frames=max_frames,
        subtitles=args.subtitles,
        limit=args.limit,
        temperature=args.temperature,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        dtype=args.dtype,
        **given,
    )


def run(args) -> int:
    """The command; problems the user must fix (arguments, files, folders) raise `InputError`."""
    if args.benchmark == "merge":
        if not args.output:
            raise InputError("merge needs --output, the folder the runs wrote to")
        output = Path(args.output)
    else:
        if not args.model or not args.data:
            raise InputError(f"tinyvideo eval {args.benchmark} needs --model and --data")
        settings = settings_from(args)
        shard = parse_shard(args.shard) if args.shard else None
        from accelerate import PartialState

        # Launched processes join (over gloo) on the CPU too, where accelerate needs to be told.
        state = PartialState(cpu=(args.device or "").startswith("cpu") or not torch.accelerator.is_available())
        if shard is None and state.num_processes > 1:
            shard = (state.process_index, state.num_processes)
        output = Path(args.output or f"outputs/eval/{args.benchmark}-{args.mode}{'-subs' if args.subtitles else ''}")
        device = args.device or state.device
        evaluate(settings, output, shard=shard, batch_size=args.batch_size, num_workers=args.num_workers, device=device)
    # No barrier between processes (one would time out when the shards take very different times): each
    # scores what is there when it finishes, and the last one to finish writes the complete report.
    return _print_summary(build_report(output), output)


def _print_summary(report: dict, output: Path) -> int:
    value = report["headline"]["value"]
    print(
        f"{report['benchmark']} {report['headline']['name']}: {'-' if value is None else f'{value:.1f}'} "
        f"({report['predicted']} of {report['questions']} questions, {report['invalid_answers']} invalid and "
        f"{report['hedged_answers']} hedged answers, "
        f"status {report['status']}); report in {output / 'report.md'}"
    )
    if "without_subtitles" in report:
        value = report["without_subtitles"]["headline"]["value"]
        print(f"  that is {WITH_SUBTITLES}; {WITHOUT_SUBTITLES}: {'-' if value is None else f'{value:.1f}'} (subtitles: {report.get('subtitles', {})})")
    if report["pending"]:
        print(f"{report['pending']} question(s) not answered yet: run the remaining shards, then `tinyvideo eval merge --output {output}`")
    return 0
