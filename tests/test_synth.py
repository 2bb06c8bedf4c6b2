"""The synthetic suite: deterministic, balanced, true to its frames, readable as the real readers read it."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tinyvideo.commands import synth as synth_command
from tinyvideo.data import synth
from tinyvideo.data.synth_formats import problem
from tinyvideo.data.synth_questions import FAMILIES, LETTERS, Question
from tinyvideo.data.synth_scenes import COLOURS, FPS, FRAMES, OBJECT, SIZE, where
from tinyvideo.errors import InputError
from tinyvideo.eval.benchmarks import longvideobench, videomme


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> synth.Suite:
    """The smoke suite, made through the command-line entry point."""
    out = tmp_path_factory.mktemp("synth") / "suite"
    parser = argparse.ArgumentParser()
    synth_command.add_arguments(parser)
    assert synth_command.run(parser.parse_args(["--out", str(out), "--scale", "smoke", "--preview"])) == 0
    return synth.load_suite(out)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _colour_at(frame: np.ndarray, x: int, y: int) -> str | None:
    """Nearest palette colour at an object's centre, or None where the background shows."""
    pixel = frame[y + OBJECT // 2, x + OBJECT // 2].astype(int)
    if pixel.max() < 90:
        return None
    return min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - pixel).sum())


def _centroids(frames: np.ndarray, colour: str) -> np.ndarray:
    """Per-frame centre (x, y) of the pixels of one palette colour."""
    near = np.abs(frames.astype(int) - np.array(COLOURS[colour])).sum(-1) < 60
    out = []
    for mask in near:
        ys, xs = np.nonzero(mask)
        out.append((xs.mean(), ys.mean()))
    return np.array(out)


@pytest.mark.parametrize("workers", [1, 2])
def test_same_seed_same_files_whatever_the_workers(suite, tmp_path, workers):
    again = synth.generate_suite(tmp_path / "again", seed=0, scale="smoke", preview=True, workers=workers)
    ours, reference = _digests(again.root), _digests(suite.root)
    assert ours.keys() == reference.keys()
    differ = [name for name in ours if ours[name] != reference[name]]
    videos = [name for name in differ if name.endswith(".mp4")]
    pixels = [name for name in videos if not np.array_equal(_frames(again.root / name), _frames(suite.root / name))]
    assert not differ, (
        f"{len(differ)} files differ in bytes ({len(videos)} videos, {len(pixels)} of them in decoded frames "
        f"too): {differ[:4]}"
    )


def test_other_seed_other_clips_larger_scale_extends_a_split():
    first, other = synth.design_split(0, "test", 4), synth.design_split(1, "test", 4)
    assert [c.question.question for c in first] != [c.question.question for c in other]
    # A larger scale extends a split without changing the clips it already had.
    assert [c.question for c in synth.design_split(0, "test", 8)[: len(first)]] == [c.question for c in first]


def test_videos_are_h264_16_frames_64px(suite):
    for record in suite.records("val")[:7]:
        with av.open(str(suite.video_root / record["video"])) as container:
            assert container.streams.video[0].codec_context.name == "h264"
        assert _frames(suite.video_root / record["video"]).shape == (FRAMES, SIZE, SIZE, 3)


def test_splits_are_disjoint_by_video(suite):
    seen_ids, seen_bytes = set(), set()
    for split in synth.SPLITS:
        records = suite.records(split)
        assert len(records) == suite.manifest["counts"][split]
        ids = {r["video"] for r in records}
        digests = {hashlib.sha256((suite.video_root / v).read_bytes()).hexdigest() for v in ids}
        assert len(ids) == len(records) and not ids & seen_ids and not digests & seen_bytes
        seen_ids |= ids
        seen_bytes |= digests


def test_every_task_present_with_balanced_letters_and_answers(suite):
    for split in synth.SPLITS:
        by_task = defaultdict(list)
        for r in suite.records(split):
            by_task[r["task"]].append(r)
            assert len(set(r["options"])) == len(r["options"]) == FAMILIES[r["task"]].n_options
            assert r["options"][LETTERS.index(r["answer"])] == r["answer_text"]
        assert set(by_task) == set(FAMILIES)
        for task, records in by_task.items():
            letters = Counter(r["answer"] for r in records)
            counts = [letters[letter] for letter in LETTERS[: FAMILIES[task].n_options]]
            assert max(counts) - min(counts) <= 1, (split, task, letters)
    # With 40 clips per task, a multiple of 4 and 5, letters and fixed answer spaces are exactly uniform.
    clips = synth.design_split(3, "test", 40)
    for task in FAMILIES:
        letters = Counter(c.question.answer for c in clips if c.question.task == task)
        assert set(letters.values()) == {40 // FAMILIES[task].n_options}
    for task, space in {"moving_direction": 4, "counting": 4}.items():
        answers = Counter(c.question.answer_text for c in clips if c.question.task == task)
        assert len(answers) == space and set(answers.values()) == {40 // space}


def test_answers_agree_with_the_rendered_frames(suite):
    scenes = suite.scenes("test")
    checked = Counter()
    for record in suite.records("test"):
        scene, task = scenes[record["id"]], record["task"]
        frames = _frames(suite.video_root / record["video"])
        if task == "moving_direction":
            colour = record["question"].split()[4]
            if sum(t.colour[0] == colour for t in scene.tracks) > 1:
                continue
            (x0, y0), (x1, y1) = _centroids(frames[[0, -1]], colour)
            dx, dy = x1 - x0, y1 - y0
            seen = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
            assert seen == record["answer_text"], record
        elif task == "counting":
            colour = record["question"].split()[5]
            if sum(t.colour[0] == colour for t in scene.tracks) > 1:
                continue
            path = _centroids(frames, colour)
            steps = np.diff(path[:, np.argmax(np.ptp(path, axis=0))])
            reversals = int(np.sum(np.sign(steps[1:]) * np.sign(steps[:-1]) < 0))
            assert str(reversals) == record["answer_text"], record
        elif task == "state_change":
            shape = re.search(r"the (\w+)", record["question"]).group(1)
            track = next(t for t in scene.tracks if t.shape == shape)
            frame = frames[-1] if "turn into" in record["question"] else frames[0]
            assert _colour_at(frame, track.x[0], track.y[0]) == record["answer_text"], record
        elif task == "existence_end":
            last = {f"the {t.name()}": _colour_at(frames[-1], t.x[-1], t.y[-1]) is not None for t in scene.tracks}
            survivors = [name for name, shown in last.items() if shown]
            gone = [name for name, shown in last.items() if not shown]
            assert [record["answer_text"]] == (survivors if "still visible" in record["question"] else gone), record
        else:
            continue
        checked[task] += 1
    assert (
        set(checked) == {"moving_direction", "counting", "state_change", "existence_end"} and min(checked.values()) >= 3
    )


def test_training_formats(suite, tmp_path):
    import datasets

    records = {r["id"]: r for r in suite.records("train")}
    for name in ("captions", "qa", "coldstart"):
        items = json.loads(suite.path("train", name).read_text())
        for item in items:
            human, gpt = item["conversations"]
            assert (human["from"], gpt["from"]) == ("human", "gpt") and human["value"].startswith("<image>\n")
            assert (suite.video_root / item["video"]).is_file()
    qa = json.loads(suite.path("train", "qa").read_text())
    assert len(qa) == 3 * len(records)
    for choice, choice_text, short in zip(qa[0::3], qa[1::3], qa[2::3], strict=True):
        record = records[choice["id"]]
        assert short["id"] == record["id"] + "-short" and choice_text["id"] == record["id"] + "-text"
        assert short["video"] == choice_text["video"] == choice["video"]
        human, gpt = (turn["value"] for turn in choice["conversations"])
        assert human.endswith("\nAnswer with the option's letter from the given choices directly.")
        assert "\nA. " in human and gpt == record["answer"]
        lettered = human.removesuffix("Answer with the option's letter from the given choices directly.")
        human, gpt = (turn["value"] for turn in choice_text["conversations"])
        assert human == lettered + "Answer with the option's text from the given choices directly."
        assert gpt == record["answer_text"] == record["options"][LETTERS.index(record["answer"])]
        human, gpt = (turn["value"] for turn in short["conversations"])
        assert human == f"<image>\n{record['question']}\nAnswer the question using a single word or phrase."
        assert gpt == record["answer_text"]
    rotated = iter(json.loads(suite.path("train", "rotated").read_text()))
    for choice in qa[0::3]:
        record = records[choice["id"]]
        n = len(record["options"])
        asked = choice["conversations"][0]["value"]
        for shift in range(1, n):
            row = next(rotated)
            assert row["id"] == f"{record['id']}-rot{shift}" and row["video"] == choice["video"]
            human, gpt = (turn["value"] for turn in row["conversations"])
            options = record["options"][shift:] + record["options"][:shift]
            assert options[LETTERS.index(gpt)] == record["answer_text"]  # the letter moved with its text
            assert gpt == LETTERS[(LETTERS.index(record["answer"]) - shift) % n]
            lines = "".join(f"\n{LETTERS[i]}. {text}" for i, text in enumerate(options))
            assert human == asked.replace("".join(f"\n{LETTERS[i]}. {t}" for i, t in enumerate(record["options"])), lines)
    assert next(rotated, None) is None
    binding = json.loads(suite.path("train", "binding").read_text())
    assert [row["id"] for row in binding] == [choice["id"] + "-told" for choice in qa[0::3]]
    for row, choice in zip(binding, qa[0::3], strict=True):
        assert "video" not in row and "image" not in row
        record = records[choice["id"]]
        (asked, _), (human, gpt) = ((turn["value"] for turn in c["conversations"]) for c in (choice, row))
        assert human == asked.removeprefix("<image>\n") + f"\nThe answer is {record['answer_text']}." and gpt == record["answer"]
    # reading: the clip's caption where its video was, the Option question in every rotation (the first unrotated)
    captions = {row["id"]: row["conversations"][1]["value"] for row in json.loads(suite.path("train", "captions").read_text())}
    reading = iter(json.loads(suite.path("train", "reading").read_text()))
    for choice in qa[0::3]:
        record = records[choice["id"]]
        for shift in range(len(record["options"])):
            row = next(reading)
            human, gpt = (turn["value"] for turn in row["conversations"])
            assert row["id"] == f"{record['id']}-read{shift}" and "video" not in row
            options = record["options"][shift:] + record["options"][:shift]
            assert options[LETTERS.index(gpt)] == record["answer_text"]
            lines = "".join(f"\n{LETTERS[i]}. {text}" for i, text in enumerate(options))
            instruction = "Answer with the option's letter from the given choices directly."
            assert human == f"{captions[record['id']]}\n{record['question']}{lines}\n{instruction}"
    assert next(reading, None) is None
    cold = json.loads(suite.path("train", "coldstart").read_text())
    assert len(cold) == synth.SCALES["smoke"].coldstart and {records[c["id"]]["task"] for c in cold} == set(FAMILIES)
    for item in cold:
        record = records[item["id"]]
        question = Question(record["task"], record["question"], record["options"], record["answer"], "")
        human, gpt = (turn["value"] for turn in item["conversations"])
        instruction = "Output the thinking process in <think> </think> and final answer (option) in <answer> </answer> tags."
        assert human == "<image>\n" + problem(question) + " " + instruction
        # The answer's text first, the evidence, the text again, then its letter (`synth_text.reasoning`).
        text = re.escape(record["answer_text"])
        worked = rf"<think>The answer is {text}\. [^<]+ So the answer is {text}\.</think> <answer>{record['answer']}</answer>"
        assert re.fullmatch(worked, gpt)
    assert 1 <= sum("Let me check again: " in c["conversations"][1]["value"] for c in cold) <= len(cold) // 3
    grpo = datasets.Dataset.from_json(str(suite.path("train", "grpo")), cache_dir=str(tmp_path), keep_in_memory=True)
    assert {"problem", "solution", "video_filename"} <= set(grpo.column_names) and len(grpo) == len(records)
    root = str(suite.video_root)
    for row in grpo:
        assert re.fullmatch(r"<answer>[A-E]</answer>", row["solution"]) and row["solution"][8] == row["answer"]
        assert row["video_filename"].startswith("./") and Path(root + row["video_filename"][1:]).is_file()
        assert row["problem"].startswith(records[row["id"]]["question"] + "\nOptions:\nA. ")


def test_frame_captions_name_what_each_frame_shows(suite):
    """Every captioned frame: each object named is drawn in its colour at its place, and nothing else is."""
    scenes = suite.scenes("train")
    rows = json.loads(suite.path("train", "frames").read_text())
    assert [r["id"] for r in rows] == list(scenes)
    for row in rows:
        frames = _frames(suite.video_root / row["video"])
        assert [f["index"] for f in row["frames"]] == [0, 5, 10, 15]
        for item in row["frames"]:
            t, caption = item["index"], item["caption"]
            visible = [track for track in scenes[row["id"]].tracks if track.visible(t)]
            for track in visible:
                assert f"a {track.colour[t]} {track.shape} at the {where(track.x[t], track.y[t])}" in caption
                assert _colour_at(frames[t], track.x[t], track.y[t]) == track.colour[t]
            assert caption.count(" at the ") == len(visible)


def test_videomme_layout(suite):
    table = pd.read_parquet(suite.path("eval", "videomme", "parquet"))
    assert list(table.columns) == [
        "video_id",
        "duration",
        "domain",
        "sub_category",
        "url",
        "videoID",
        "question_id",
        "task_type",
        "question",
        "options",
        "answer",
    ]
    assert set(table["duration"]) == {"short", "medium", "long"}
    assert (table.groupby("videoID").size() == 3).all()
    assert table["question_id"].is_unique
    for row in table.itertuples():
        assert [o[:3] for o in row.options] == ["A. ", "B. ", "C. ", "D. "] and row.answer in "ABCD"
        assert (suite.root / "eval/videomme/data" / f"{row.videoID}.mp4").is_file()


def test_videomme_subtitles(suite):
    questions = videomme.load(suite.path("eval", "videomme", "root"), "option", subtitles=True)
    states = Counter(q.subtitles.status for q in questions if q.id.endswith("/subs"))
    videos = len({q.video for q in questions})
    assert states == {"ok": 3 * (videos - videos // 3), "missing": 3 * (videos // 3)}  # two videos in three have one
    with_lines = next(q for q in questions if q.id.endswith("/subs") and q.subtitles.status == "ok")
    asked, _ = with_lines.at_frames([k / FPS for k in range(FRAMES)])  # every frame: every caption shows
    listed = asked.prompt[: -len(with_lines.prompt)].split("\n")[1:-1]
    assert listed == [cue.text for cue in with_lines.subtitles.cues] and all(t.startswith(("A frame", "An empty")) for t in listed)


def test_longvideobench_layout_in_both_packagings_and_subtitle_schemas(suite, tmp_path):
    root = suite.path("eval", "longvideobench", "root")
    items = json.loads((root / "lvb_val.json").read_text())
    assert {type(item["correct_choice"]) for item in items} == {int} and {len(i["candidates"]) for i in items} == {4, 5}
    assert {item["duration_group"] for item in items} == {15, 60, 600, 3600}
    first, second = (json.loads((root / "subtitles" / items[k]["subtitle_path"]).read_text()) for k in (0, 1))
    assert set(first[0]) == {"start", "end", "line"} and items[0]["starting_timestamp_for_subtitles"] == 0.0
    assert set(second[0]) == {"timestamp", "text"} and second[-1]["timestamp"][1] is None
    assert items[1]["starting_timestamp_for_subtitles"] == second[0]["timestamp"][0] == 30.0
    table = pd.read_parquet(root / "validation-00000-of-00001.parquet")
    assert "candidates" not in table and (table["option4"] == "N/A").any()

    repack = tmp_path / "repack"  # the parquet alone, as lmms-eval downloads it
    repack.mkdir()
    (repack / "validation-00000-of-00001.parquet").symlink_to(root / "validation-00000-of-00001.parquet")
    (repack / "videos").symlink_to(root / "videos")
    from_json = longvideobench.load(root, "option", subtitles=True)
    from_parquet = longvideobench.load(repack, "option")
    assert [(q.prompt, q.options, q.answer) for q in from_json if not q.id.endswith("/subs")] == [
        (q.prompt, q.options, q.answer) for q in from_parquet
    ]
    subtitled = [q for q in from_json if q.id.endswith("/subs")]
    assert {q.subtitles.status for q in subtitled} == {"ok"}
    for question in subtitled[:2]:  # one file in each schema: captions on the video's clock, the last to its end
        cues = question.subtitles.cues
        assert cues[0].start == 0 and cues[-1].end == 2.0 and all(a.end == b.start for a, b in zip(cues, cues[1:]))
        asked, _ = question.at_frames([k / FPS for k in range(FRAMES)])
        assert asked.prompt.count("[image]") == FRAMES and cues[0].text in asked.prompt


def test_mvbench_layout(suite):
    prefixes = suite.manifest["eval"]["mvbench"]["prefixes"]
    names = defaultdict(set)
    for stem, folder in prefixes.items():
        items = json.loads((suite.path("eval", "mvbench", "json") / f"{stem}.json").read_text())
        for item in items:
            assert item["answer"] in item["candidates"]
            assert (suite.path("eval", "mvbench", "video") / folder / item["video"]).is_file()
            assert ("start" in item) == (stem in {"action_sequence", "object_interaction"})
            names[folder].add(item["video"])
    assert {
        len(items["candidates"])
        for stem in prefixes
        for items in json.loads((suite.path("eval", "mvbench", "json") / f"{stem}.json").read_text())
    } == {4, 5}
    assert names["clevrer/video_validation"] & names["perception/videos"]  # same file name, different folders


def test_mlvu_layout(suite):
    folder = suite.path("eval", "mlvu", "json")
    stems = ["1_plotQA", "2_needle", "3_ego", "4_count", "5_order", "6_anomaly_reco", "7_topic_reasoning"]
    assert sorted(p.stem for p in folder.glob("*.json")) == stems
    for stem in stems:
        for item in json.loads((folder / f"{stem}.json").read_text()):
            assert len(item["candidates"]) == 4 and item["answer"] in item["candidates"]
            assert item["question_type"] == ("findNeedle" if stem == "2_needle" else stem.split("_", 1)[1])
            assert (suite.path("eval", "mlvu", "video") / stem / item["video"]).is_file()


def test_mmvu_layout(suite):
    entry = suite.manifest["eval"]["mmvu"]
    items = json.loads(suite.path("eval", "mmvu", "annotations").read_text())
    kinds = Counter(item["question_type"] for item in items)
    assert kinds["multiple-choice"] and kinds["open-ended"]
    for item in items:
        assert list(item["choices"]) == list("ABCDE") and item["id"].startswith("validation_")
        if item["question_type"] == "multiple-choice":
            assert item["answer"] in item["choices"] and item["choices"][item["answer"]]
        else:
            assert set(item["choices"].values()) == {""} and item["answer"]
        local = Path(item["video"].replace(entry["url_prefix"], str(suite.path("eval", "mmvu", "root"))))
        assert local.is_file() and local.parent.name == item["metadata"]["subject"].replace(" ", "_")


def test_nextqa_layout(suite):
    table = pd.read_csv(suite.path("eval", "nextqa", "csv"))
    assert list(table.columns) == [
        "video",
        "frame_count",
        "width",
        "height",
        "question",
        "answer",
        "qid",
        "type",
        "a0",
        "a1",
        "a2",
        "a3",
        "a4",
    ]
    assert (
        table["video"].dtype == np.int64 and table["answer"].dtype == np.int64 and table["answer"].between(0, 4).all()
    )
    assert set(table["type"]) == {"CW", "DO", "TN", "TP", "DC"} and not table["question"].str.endswith("?").any()
    assert (table["video"].astype(str) + "_" + table["qid"].astype(str)).is_unique
    mapping = json.loads(suite.path("eval", "nextqa", "map").read_text())
    for video in set(table["video"]):
        assert (suite.path("eval", "nextqa", "video") / f"{mapping[str(video)]}.mp4").is_file()


def _bag(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_text_only_baselines_score_at_chance():
    """Question and options without the video carry no signal: text-only learners fit on train are at chance on test."""
    train, test = synth.design_split(0, "train", 200), synth.design_split(0, "test", 200)

    majority_letter = defaultdict(Counter)
    option_prior = defaultdict(lambda: [1, 2])  # (correct + 1, seen + 2) per task and option text
    pair_weight = defaultdict(lambda: [1, 2])  # the same per (question word, option word, letter)
    for clip in train:
        q = clip.question
        majority_letter[q.question][q.answer] += 1
        for i, option in enumerate(q.options):
            hit = int(i == q.answer_index)
            stats = option_prior[q.task, option]
            stats[0] += hit
            stats[1] += 1
            for feature in {(a, b) for a in _bag(q.question) for b in _bag(option)} | {("letter", LETTERS[i])}:
                pair_weight[feature][0] += hit
                pair_weight[feature][1] += 1

    def bag_score(q, i):
        features = {(a, b) for a in _bag(q.question) for b in _bag(q.options[i])} | {("letter", LETTERS[i])}
        return sum(math.log(pair_weight[f][0] / pair_weight[f][1]) for f in features)

    predictors = {
        "majority letter per question": lambda q: LETTERS.index(
            (majority_letter[q.question] or Counter("A")).most_common(1)[0][0]
        ),
        "option prior": lambda q: max(
            range(len(q.options)),
            key=lambda i: option_prior[q.task, q.options[i]][0] / option_prior[q.task, q.options[i]][1],
        ),
        "bag of word pairs": lambda q: max(range(len(q.options)), key=lambda i: bag_score(q, i)),
    }
    chance = float(np.mean([1 / len(c.question.options) for c in test]))
    tolerance = 3.5 * math.sqrt(chance * (1 - chance) / len(test))  # ~3.5 standard errors, about 0.04 here
    for name, predict in predictors.items():
        accuracy = float(np.mean([predict(c.question) == c.question.answer_index for c in test]))
        assert abs(accuracy - chance) <= tolerance, (name, accuracy, chance)


def test_preview_png(suite):
    with Image.open(suite.path("preview")) as image:
        assert image.format == "PNG" and image.width > image.height > len(FAMILIES) * SIZE


def test_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="holds no synthetic suite"):
        synth.generate_suite(tmp_path, scale="smoke")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_a_suite_written_by_an_older_tinyvideo_is_refused_not_reused(suite, tmp_path):
    old = json.loads((suite.root / synth.MANIFEST).read_text())
    (tmp_path / synth.MANIFEST).write_text(json.dumps({**old, "version": synth.VERSION - 1}))
    with pytest.raises(InputError, match=f"holds a suite of version {synth.VERSION - 1}.*delete that folder"):
        synth.open_suite(tmp_path, old["seed"], old["scale"])
    assert synth.open_suite(suite.root, old["seed"], old["scale"]).manifest == old
