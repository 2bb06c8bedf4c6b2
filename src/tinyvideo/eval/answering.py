"""Questions answered in batches: generated (Option and Reason modes) or each option's text scored as the
answer (Cloze mode), with each video's frame features computed once for all of its questions."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader
from transformers import LogitsProcessorList, TemperatureLogitsWarper

from tinyvideo.answers import extract_answer
from tinyvideo.decoding import RowSeededSampling, decode, greedy
from tinyvideo.eval.benchmarks.common import Question, Sampling
from tinyvideo.eval.frames import VideoFrames
from tinyvideo.eval.predictions import append, record_of
from tinyvideo.eval.settings import Settings
from tinyvideo.processing import pack_videos
from tinyvideo.scoring import token_logprobs, token_positions

logger = logging.getLogger(__name__)


def question_seed(seed: int, question_id: str) -> int:
    """A question's sampling seed: the same question under the same seed draws the same answer, whatever
    batch, process or run it is answered in."""
    text = f"{seed}\n{question_id}"
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
    """Answer a batch of questions, left-padded (Cloze mode: score their options); one record each.

    Greedy at temperature 0; above it, each question samples from softmax(scores / temperature) with
    its own seed (`question_seed`). Decoding drops each answer from the batch when it ends
    (`tinyvideo.decoding`), with the model's generation config's end-of-sequence token(s).
    """
    if settings.mode == "cloze":
        return score_options(model, processor, items)
    questions = [item.question for item in items]
    examples = [{"input_ids": prompt_ids(processor, item)} for item in items]
    batch = {k: v.to(model.device) for k, v in processor.pad(examples, padding_side="left").items()}
    choose, warpers = greedy, None
    if settings.temperature > 0:
        choose = RowSeededSampling([question_seed(settings.seed, q.id) for q in questions], model.device)
        warpers = LogitsProcessorList([TemperatureLogitsWarper(settings.temperature)])
    with torch.inference_mode():
        features, counts = pack_videos([item.features for item in items])
        embeds = model.embed_inputs(batch["input_ids"], video_num_frames=counts, frame_features=features)
        new_tokens = decode(
            model, embeds, batch["attention_mask"], settings.max_new_tokens, choose, warpers=warpers,
            eos_token_id=model.generation_config.eos_token_id, pad_token_id=processor.pad_token_id,
        )
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

    Each question's prompt (left-padded, its video's features spliced in) runs through the model once; its
    cache is then shared by its options, whose answers follow right-padded: the long prompt is not run again
    for every option.
    """
    prompts = [{"input_ids": prompt_ids(processor, item)} for item in items]
    prompts = {k: v.to(model.device) for k, v in processor.pad(prompts, padding_side="left").items()}
    answer_ids = [processor.tokenize(processor.reply_text(text), []) for item in items for text in item.question.options.values()]
    answers = {k: v.to(model.device) for k, v in processor.pad([{"input_ids": ids} for ids in answer_ids]).items()}
    counts = torch.tensor([len(item.question.options) for item in items], device=model.device)
    owner = torch.arange(len(items), device=model.device).repeat_interleave(counts)  # each answer's question
    with torch.inference_mode():
        features, num_frames = pack_videos([item.features for item in items])
        embeds = model.embed_inputs(prompts["input_ids"], video_num_frames=num_frames, frame_features=features)
        mask = prompts["attention_mask"]
        positions = token_positions(mask)
        prompt = model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        cache = prompt.past_key_values
        cache.batch_select_indices(owner)
        answer_mask = answers["attention_mask"]
        after = model(
            inputs_embeds=model.get_input_embeddings()(answers["input_ids"][:, :-1]),
            attention_mask=torch.cat([mask[owner], answer_mask[:, :-1]], dim=1),
            position_ids=positions[owner, -1:] + 1 + torch.arange(answer_mask.shape[1] - 1, device=model.device),
            past_key_values=cache,
        )
        logits = torch.cat([prompt.logits[owner], after.logits], dim=1)  # the answer's tokens, each from what precedes it
        logprobs = token_logprobs(logits, answers["input_ids"])
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
            features = model.encode_frames(pixels)
        for question in asked:
            question, subtitles = question.at_frames(frames.get("timestamps"))
            queue.append(Asked(question, features, frames, status, subtitles))
        while len(queue) >= batch_size:
            flush(queue[:batch_size])
            queue = queue[batch_size:]
    if queue:
        flush(queue)
    progress.close()
