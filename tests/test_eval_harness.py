"""The evaluation harness end to end with a tiny model: what users rely on when a run is long.

The fixture is a synthetic-suite split with the traits of real downloads: several questions per
video, webm and upper-case .MP4 files, a JPEG-frame folder, a missing video, an mp4 cut short (its
index is lost: unreadable) and an mkv cut short (its first part still decodes).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from launch import launch
from media import corrupt_frames, cut_by_stream_copy, make_frame_folder, make_indexed_video, truncate_file, zero_frame_durations
from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
from tinyvideo.cli import main
from tinyvideo.commands.eval import parse_shard
from tinyvideo.errors import InputError
from tinyvideo.eval import answering
from tinyvideo.eval import frames as video_frames
from tinyvideo.eval.answering import Asked, prompt_ids
from tinyvideo.eval.benchmarks.common import Sampling
from tinyvideo.eval.frames import VideoFrames
from tinyvideo.eval.harness import evaluate
from tinyvideo.eval.outputs import build_report
from tinyvideo.eval.predictions import read_predictions
from tinyvideo.eval.settings import ADAPTER_OPTIONS, BENCHMARKS, Settings, load_questions, with_videos_shifted
from tinyvideo.scratch import build_tiny
from tinyvideo.vision_towers import FrameTransform

VIDEOS = {  # video -> number of questions about it
    "test/v0.mp4": 3,
    "test/v1.webm": 2,
    "test/v2.MP4": 2,
    "test/frames": 1,
    "test/gone.mp4": 2,
    "test/cut.mp4": 1,
    "test/cut.mkv": 1,
}
QUESTIONS = sum(VIDEOS.values())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices gain nothing from a second thread and lose much when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("suite")
    videos = root / "videos" / "test"
    make_indexed_video(videos / "v0.mp4", 20, 10, size=(64, 48))
    make_indexed_video(videos / "v1.webm", 20, 10, codec="libvpx-vp9", size=(64, 48))
    make_indexed_video(videos / "v2.MP4", 12, 10, size=(64, 48))
    make_frame_folder(videos / "frames", 9, size=(64, 48))
    truncate_file(make_indexed_video(videos / "cut.mp4", 30, 10, size=(64, 48)), 0.5)
    truncate_file(make_indexed_video(videos / "cut.mkv", 60, 10, size=(64, 48)), 0.5)
    rows = []
    for video, count in VIDEOS.items():
        for k in range(count):
            options = ["red", "green", "blue", "yellow", "purple"][: 3 + k]
            rows.append({
                "id": f"{Path(video).name}#{k}", "video": video, "task": ["colour", "motion"][k % 2],
                "question": f"Question {k}: what happens to the shape?", "options": options, "answer": "ABC"[k % 3],
            })
    (root / "annotations").mkdir()
    (root / "annotations" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "suite.json").write_text(json.dumps({"video_root": "videos", "splits": {"test": {"annotations": "annotations/test.jsonl"}}}))
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny model with large random weights, so that its answers differ from question to question."""
    model, processor = build_tiny(["what happens to the shape"], seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0, 0.3, generator=generator)
    folder = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return TinyVideoForConditionalGeneration.from_pretrained(checkpoint).eval(), TinyVideoProcessor.from_pretrained(checkpoint)


@pytest.fixture(scope="module")
def settings(suite, checkpoint) -> Settings:
    return Settings("synth", str(suite), str(checkpoint), frames=4, max_new_tokens=6)


@pytest.fixture(scope="module")
def reference(settings, loaded, tmp_path_factory) -> Path:
    """One complete run, batch size 4: the results every other way of running must reproduce."""
    output = tmp_path_factory.mktemp("reference")
    evaluate(settings, output, *loaded, batch_size=4)
    build_report(output)
    return output


def cli(*argv: str) -> int:
    return main(["eval", *argv])


def responses(output: Path) -> dict[str, str | None]:
    return {r["id"]: r["response"] for p in output.glob("predictions*.jsonl") for r in read_predictions(p)}


def report_of(output: Path) -> dict:
    return json.loads((output / "report.json").read_text())


def test_every_question_is_reported_and_the_run_goes_on(suite, checkpoint, tmp_path):
    rc = cli("synth", "--model", str(checkpoint), "--data", str(suite), "--frames", "4", "--max-new-tokens", "6",
             "--batch-size", "3", "--num-workers", "1", "--output", str(tmp_path))
    assert rc == 0
    records = {r["id"]: r for r in read_predictions(tmp_path / "predictions.jsonl")}
    assert len(records) == QUESTIONS
    assert [records[k]["status"] for k in ("gone.mp4#0", "gone.mp4#1", "cut.mp4#0", "cut.mkv#0")] == ["missing", "missing", "unreadable", "truncated"]
    statuses = [r["status"] for r in records.values()]
    assert statuses.count("truncated") == 1 and statuses.count("ok") == QUESTIONS - 4
    assert "no such file" in records["gone.mp4#0"]["frames"]["error"] and records["gone.mp4#0"]["correct"] is False
    shown = records["v0.mp4#1"]
    assert shown["frames"]["indices"] == [0, 6, 12, 19] and shown["frames"]["backend"].startswith("pyav")
    assert shown["prompt"].endswith("Answer with the option's letter from the given choices directly.")
    assert isinstance(shown["response"], str) and shown["method"]
    report = report_of(tmp_path)
    assert report["status"] == {"missing": 2, "ok": QUESTIONS - 4, "truncated": 1, "unreadable": 1}
    assert report["overall"]["unanswered"] == 3 and report["questions"] == QUESTIONS and report["pending"] == 0
    assert (tmp_path / "report.md").read_text().startswith("# synth (option mode)")


def test_batched_answers_equal_one_at_a_time(settings, loaded, reference, tmp_path):
    evaluate(settings, tmp_path, *loaded, batch_size=1)
    answered = {k: v for k, v in responses(reference).items() if v is not None}
    assert len(answered) == QUESTIONS - 3
    assert responses(tmp_path) == responses(reference)


def test_each_video_is_decoded_and_encoded_once(settings, loaded, monkeypatch, tmp_path):
    model, processor = loaded
    decoded, encoded, embedded = [], [], []
    read_frames, encode_frames, embed_inputs = video_frames.read_frames, model.encode_frames, model.embed_inputs
    monkeypatch.setattr(video_frames, "read_frames", lambda path, **kw: decoded.append(path) or read_frames(path, **kw))
    monkeypatch.setattr(model, "encode_frames", lambda *a, **kw: encoded.append(1) or encode_frames(*a, **kw))
    monkeypatch.setattr(model, "embed_inputs", lambda ids, **kw: embedded.append((ids, kw)) or embed_inputs(ids, **kw))
    evaluate(settings, tmp_path, model, processor, batch_size=4)
    assert sorted(Path(p).name for p in decoded) == sorted(Path(v).name for v in VIDEOS)
    assert len(encoded) == len(VIDEOS) - 2  # the missing and the unreadable video are never encoded
    assert all(kw["frame_features"] is not None and "pixel_values_videos" not in kw for _, kw in embedded)
    assert [len(ids) for ids, _ in embedded] == [4, 4, 1]


def test_resume_after_a_kill_loses_nothing_and_repeats_nothing(settings, loaded, reference, monkeypatch, tmp_path):
    lines = (reference / "predictions.jsonl").read_text().splitlines(keepends=True)
    shutil.copy(reference / "run.json", tmp_path / "run.json")
    # killed while writing the sixth line
    (tmp_path / "predictions.jsonl").write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    kept = [json.loads(line) for line in lines[:5]]
    model, processor = loaded
    rows, answer_batch = [], answering.answer_batch
    monkeypatch.setattr(answering, "answer_batch", lambda m, p, items, s: rows.append(len(items)) or answer_batch(m, p, items, s))
    evaluate(settings, tmp_path, model, processor, batch_size=4)
    answered_before = sum(r["status"] in ("ok", "truncated") for r in kept)
    assert sum(rows) == QUESTIONS - 3 - answered_before  # only what was not answered yet
    ids = [r["id"] for r in read_predictions(tmp_path / "predictions.jsonl")]
    assert len(ids) == len(set(ids)) == QUESTIONS
    assert build_report(tmp_path) == report_of(reference)
    assert responses(tmp_path) == responses(reference)


def test_shards_merged_equal_one_run(settings, loaded, reference, tmp_path):
    for index in range(3):
        evaluate(settings, tmp_path, *loaded, shard=(index, 3), batch_size=4)
    parts = [{r["id"] for r in read_predictions(tmp_path / f"predictions-{i}-of-3.jsonl")} for i in range(3)]
    assert sum(map(len, parts)) == len(set().union(*parts)) == QUESTIONS
    assert cli("merge", "--output", str(tmp_path)) == 0
    assert report_of(tmp_path) == report_of(reference)
    assert (tmp_path / "report.md").read_text() == (reference / "report.md").read_text()


def test_launched_processes_split_the_questions_and_report_as_one_run(suite, checkpoint, reference, tmp_path):
    """`accelerate launch` with 2 processes on the CPU: each answers its own videos' questions, none is
    answered twice or lost, and the report written when the last one finishes is the one-process report."""
    launch(["eval", "synth", "--model", str(checkpoint), "--data", str(suite), "--frames", "4", "--max-new-tokens", "6",
            "--batch-size", "4", "--num-workers", "0", "--output", str(tmp_path)])
    parts = [[r["id"] for r in read_predictions(tmp_path / f"predictions-{i}-of-2.jsonl")] for i in range(2)]
    assert all(parts) and len(parts[0]) + len(parts[1]) == len(set(parts[0]) | set(parts[1])) == QUESTIONS
    assert not (tmp_path / "predictions.jsonl").exists()
    assert report_of(tmp_path) == report_of(reference)
    assert responses(tmp_path) == responses(reference)


def test_sampling_needs_a_seed_and_repeats_with_it_in_any_batch(suite, checkpoint, settings, loaded, reference, tmp_path):
    assert cli("synth", "--model", str(checkpoint), "--data", str(suite), "--temperature", "1.0") == 2
    sampled = Settings(**{**settings.__dict__, "temperature": 1.0, "seed": 7})
    evaluate(sampled, tmp_path / "a", *loaded, batch_size=4)
    evaluate(sampled, tmp_path / "b", *loaded, batch_size=1)
    evaluate(Settings(**{**sampled.__dict__, "seed": 8}), tmp_path / "c", *loaded, batch_size=4)
    assert responses(tmp_path / "a") == responses(tmp_path / "b")
    assert responses(tmp_path / "a") != responses(tmp_path / "c") != responses(reference)


def test_answers_made_under_other_settings_are_not_mixed(settings, loaded, reference, tmp_path):
    shutil.copytree(reference, tmp_path, dirs_exist_ok=True)
    with pytest.raises(ValueError, match="mode"):
        evaluate(Settings(**{**settings.__dict__, "mode": "reason"}), tmp_path, *loaded)
    with pytest.raises(ValueError, match="i/n"):
        parse_shard("2")
    with pytest.raises(ValueError, match="between 0 and n-1"):
        parse_shard("2/2")


def test_answers_of_another_model_at_the_same_path_are_not_mixed(settings, checkpoint, reference, tmp_path):
    """A model folder rewritten in place (a stage trained again, a rebuilt base model) is another model; the same
    files at another path are the same model."""
    model = tmp_path / "model"
    shutil.copytree(checkpoint, model)
    output = tmp_path / "out"
    shutil.copytree(reference, output)
    moved = dataclasses.replace(settings, model=str(model))
    assert evaluate(moved, output) == output / "predictions.jsonl"  # the same files: every answer kept
    assert responses(output) == responses(reference)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"    ")
    with pytest.raises(InputError, match=r"other settings \(model, the model's files differ\): choose another --output"):
        evaluate(moved, output)


def test_answers_about_other_questions_at_the_same_path_are_not_mixed(settings, reference, tmp_path):
    """The benchmark's folder moved (a demo's folder moved whole): the same questions, every answer kept; other
    questions in the folder now (a suite generated again) are refused, naming them."""
    data = tmp_path / "data"
    shutil.copytree(settings.data, data)
    output = tmp_path / "out"
    shutil.copytree(reference, output)
    moved = dataclasses.replace(settings, data=str(data))
    assert evaluate(moved, output) == output / "predictions.jsonl"
    assert responses(output) == responses(reference)
    annotations = data / "annotations" / "test.jsonl"
    annotations.write_text(annotations.read_text().replace("Question 0:", "Question zero:"))
    with pytest.raises(InputError, match=r"other settings \(data, the questions differ\): choose another --output"):
        evaluate(moved, output)


def test_cloze_mode_picks_the_option_likeliest_as_the_answer(settings, loaded, tmp_path):
    """Each option's text scored as the answer to the bare question, one sequence at a time, unpadded."""
    model, processor = loaded
    cloze = Settings(**{**settings.__dict__, "mode": "cloze"})
    evaluate(cloze, tmp_path, model, processor, batch_size=4)
    records = {r["id"]: r for r in read_predictions(tmp_path / "predictions.jsonl")}
    questions = {q.id: q for q in load_questions(cloze)}
    answered = [r for r in records.values() if r["status"] in ("ok", "truncated")]
    assert len(answered) == QUESTIONS - 3 and len(records) == QUESTIONS
    for record in answered:
        question = questions[record["id"]]
        assert record["prompt"] == question.text + "\nAnswer the question using a single word or phrase."
        _, pixels, _, _ = VideoFrames([(question.video, question.sampling)], cloze, processor.frame_transform)[0]
        prompt = processor.tokenize(processor.chat_prompt(record["prompt"]), [len(pixels)])
        expected = {}
        for letter, text in question.options.items():
            answer = processor.tokenize(f" {text}<|endoftext|>", [])
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([prompt + answer]), pixel_values_videos=pixels).logits[0]
            logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
            expected[letter] = logprobs[torch.arange(len(answer)), torch.tensor(answer)].sum().item()
        assert record["scores"] == pytest.approx(expected, abs=1e-4)
        assert record["letter"] == max(expected, key=expected.get) and record["method"] == "likelihood"
        assert record["response"] == question.options[record["letter"]]
        assert record["correct"] == (record["letter"] == question.answer)
    assert len({round(r["scores"]["A"], 4) for r in answered}) > 1  # the scores depend on the video and question
    assert build_report(tmp_path)["overall"]["total"] == QUESTIONS


def test_cloze_with_the_options_listed_scores_the_same_texts_under_a_prompt_that_shows_them(suite, checkpoint, tmp_path):
    flags = ["synth", "--model", str(checkpoint), "--data", str(suite), "--frames", "4", "--mode", "cloze",
             "--limit", "3", "--num-workers", "0", "--output", str(tmp_path)]
    assert cli(*flags, "--cloze-options") == 0
    report = report_of(tmp_path)
    assert report["settings"]["cloze_options"] and report["overall"]["total"] == 3
    assert (tmp_path / "report.md").read_text().startswith("# synth (cloze mode, options listed)")
    questions = {q.id: q for q in load_questions(Settings("synth", str(suite), str(checkpoint), mode="cloze"))}
    for record in read_predictions(tmp_path / "predictions.jsonl"):
        question = questions[record["id"]]
        lines = "".join(f"\n{letter}. {text}" for letter, text in question.options.items())
        assert record["prompt"] == f"{question.text}{lines}\nAnswer the question using a single word or phrase."
        assert sorted(record["scores"]) == sorted(question.options) and record["method"] == "likelihood"
    with pytest.raises(InputError, match="cloze_options lists the options in the Cloze prompt: it needs mode cloze"):
        Settings("synth", "data", "model", mode="option", cloze_options=True)


def test_frame_status_tells_damage_from_cuts_and_missing_timestamps(tmp_path, caplog):
    """A file with undecodable frames is answered but flagged, its record naming the frames taken; an
    edit-list cut and a file whose timestamps are all equal are read right, so they are not damage."""
    damaged = corrupt_frames(make_indexed_video(tmp_path / "damaged.mp4", 200, 25, gop=25), range(73, 125))
    cut = cut_by_stream_copy(make_indexed_video(tmp_path / "uncut.mp4", 94, 30, gop=100), tmp_path / "cut.mp4", 81)
    untimed = zero_frame_durations(make_indexed_video(tmp_path / "timed.mp4", 96, 25), tmp_path / "untimed.mp4")
    videos = [(str(path), Sampling()) for path in (damaged, cut, untimed)]
    items = VideoFrames(videos, Settings("synth", "data", "model", frames=16), FrameTransform(32))
    (_, pixels, record, status), cut_item, untimed_item = items[0], items[1], items[2]
    assert status == "damaged" and "damaged.mp4 is damaged" in caplog.text
    assert record["missing"] == [79, 92, 106] and len(pixels) == len(record["indices"]) == 13
    assert (record["targets"][6], record["indices"][6]) == (119, 125)
    assert (cut_item[3], cut_item[2]["total_frames"], cut_item[2]["truncated"]) == ("ok", 13, False)
    assert (untimed_item[3], untimed_item[2]["duration"], len(set(untimed_item[2]["indices"]))) == ("ok", None, 16)
    by_rate = VideoFrames(videos[2:], Settings("synth", "data", "model", frames=None, fps=1.0), FrameTransform(32))[0]
    assert by_rate[3] == "unreadable" and "timestamps cannot tell its frames apart" in by_rate[2]["error"]


def test_a_run_refused_at_the_start_leaves_no_run_file(suite, checkpoint, tmp_path, capsys):
    output = tmp_path / "out"
    assert cli("synth", "--model", str(tmp_path / "typo"), "--data", str(suite), "--output", str(output)) == 2
    assert "typo: no such model folder" in capsys.readouterr().err and not (output / "run.json").exists()
    assert cli("synth", "--model", str(checkpoint), "--data", str(tmp_path / "nothing"), "--output", str(output)) == 2
    assert not (output / "run.json").exists()


def test_an_image_too_large_to_decode_is_its_questions_error_and_the_run_goes_on(loaded, checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's limit, lowered: 64 x 48 becomes a bomb
    Image.new("RGB", (64, 48)).save(tmp_path / "bomb.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    rows = [{"id": name, "video": f"{name}.png", "task": "t", "question": "q", "options": ["a", "b"], "answer": "A"}
            for name in ("bomb", "small")]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = Settings("synth", str(tmp_path / "test.jsonl"), str(checkpoint), frames=2, max_new_tokens=2)
    path = evaluate(settings, tmp_path / "out", *loaded, num_workers=1)
    records = {r["id"]: r for r in read_predictions(path)}
    assert records["bomb"]["status"] == "unreadable" and "DecompressionBombError" in records["bomb"]["frames"]["error"]
    assert records["small"]["status"] == "ok" and isinstance(records["small"]["response"], str)


@pytest.mark.parametrize("mode", ["option", "cloze"])
def test_a_question_too_long_for_the_model_keeps_its_options_instruction_and_turn(loaded, settings, mode):
    _, processor = loaded
    question = load_questions(dataclasses.replace(settings, mode=mode))[0]
    text = "what happens to the shape " * 2000
    long = dataclasses.replace(question, text=text, prompt=question.prompt.replace(question.text, text))
    ids = prompt_ids(processor, Asked(long, torch.zeros(4, 1), {}, "ok"))
    end = processor.chat_prompt(question.prompt).split(question.text)[1]
    assert len(ids) <= processor.model_max_length
    assert processor.decode(ids).endswith(processor.decode(processor.tokenize(end, [])))


@pytest.mark.parametrize(
    "change", [{"frames": 0}, {"frames": -3}, {"frames": None, "fps": 0.0}, {"frames": None, "fps": -2.0},
               {"frames": None, "fps": 1.0, "max_frames": 0}, {"limit": -1}, {"max_new_tokens": 0}, {"temperature": -1.0, "seed": 0}],
)
def test_settings_out_of_range_are_refused_before_anything_runs(settings, change):
    with pytest.raises(InputError):
        dataclasses.replace(settings, **change)


def test_a_batch_size_below_one_is_refused(settings, loaded, tmp_path):
    with pytest.raises(InputError, match="batch_size"):
        evaluate(settings, tmp_path, *loaded, batch_size=0)
    assert not any(tmp_path.iterdir())


UNUSED_OPTIONS = [
    (benchmark, name, value)
    for name, value in (("split", "nonsense"), ("split", "test"), ("duration", "short"), ("duration", "all"), ("subtitles", None))
    for benchmark in BENCHMARKS
    if benchmark not in ADAPTER_OPTIONS[name]
]


@pytest.mark.parametrize("benchmark, name, value", UNUSED_OPTIONS)
def test_an_option_the_benchmark_does_not_take_is_refused_never_ignored(tmp_path, capsys, benchmark, name, value):
    flag = [f"--{name}"] if value is None else [f"--{name}", value]
    argv = ["eval", benchmark, "--model", str(tmp_path / "m"), "--data", str(tmp_path / "d"), *flag]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert f"{benchmark} takes no {' '.join(flag)}: --{name} is for " in error and len(error.splitlines()) == 1
    if value not in ("test", "all"):  # the Python API: any value other than the default
        with pytest.raises(InputError, match=f"{benchmark} takes no --{name}"):
            Settings(benchmark, "d", "m", **{name: True if value is None else value})


def test_the_shuffled_video_control_asks_every_question_about_another_video(settings):
    own = load_questions(settings)
    shifted = load_questions(dataclasses.replace(settings, control="shuffled-video"))
    assert [(q.id, q.prompt, q.answer) for q in shifted] == [(q.id, q.prompt, q.answer) for q in own]
    assert all(s.video != q.video for s, q in zip(shifted, own, strict=True))
    assert sorted({q.video for q in shifted}) == sorted({q.video for q in own})
    by_video = {}
    for s, q in zip(shifted, own, strict=True):  # the questions about one video move together
        by_video.setdefault(q.video, set()).add(s.video)
    assert all(len(moved) == 1 for moved in by_video.values())
    with pytest.raises(InputError, match="at least two videos"):
        with_videos_shifted([q for q in own if q.video == own[0].video])
    windowed = [dataclasses.replace(q, sampling=Sampling(bound=(0.0, float(i)))) for i, q in enumerate(own, start=1)]
    moved = with_videos_shifted(windowed)  # one video asked about in several time windows is still one video
    assert all(m.video != q.video for m, q in zip(moved, windowed, strict=True))
    assert all(m.sampling == next(w.sampling for w in windowed if w.video == m.video) for m in moved)


def test_the_last_frame_control_gives_the_last_sampled_frame_as_often_as_frames_are_sampled(suite):
    videos = [(str(suite / "videos" / "test" / "v0.mp4"), Sampling())]
    seen = VideoFrames(videos, Settings("synth", "data", "model", frames=4), FrameTransform(32))[0]
    last = VideoFrames(videos, Settings("synth", "data", "model", frames=4, control="last-frame"), FrameTransform(32))[0]
    assert seen[2]["indices"] == last[2]["indices"] == [0, 6, 12, 19] and last[3] == "ok"
    assert len(last[1]) == 4 and not torch.equal(seen[1][0], seen[1][-1])
    assert all(torch.equal(frame, seen[1][-1]) for frame in last[1])


def test_a_control_run_is_recorded_and_never_mixed_with_a_plain_one(suite, checkpoint, tmp_path, capsys):
    flags = ["synth", "--model", str(checkpoint), "--data", str(suite), "--frames", "4", "--max-new-tokens", "2",
             "--limit", "3", "--num-workers", "0", "--output", str(tmp_path)]
    assert cli(*flags, "--control", "last-frame") == 0
    assert report_of(tmp_path)["settings"]["control"] == "last-frame"
    assert cli(*flags) != 0
    assert "other settings (control differ)" in capsys.readouterr().err
    with pytest.raises(InputError, match="control must be one of shuffled-video, last-frame"):
        Settings("synth", "data", "model", control="blind")
