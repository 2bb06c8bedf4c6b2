"""An evaluation's output folder: the run file that pins its settings, and the report scored from every
predictions file in it."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from tinyvideo.errors import InputError
from tinyvideo.eval.benchmarks.common import WITH_SUBTITLES, WITHOUT_SUBTITLES, Question
from tinyvideo.eval.predictions import read_predictions
from tinyvideo.eval.report import beside, markdown, score
from tinyvideo.eval.settings import BENCHMARKS, Settings
from tinyvideo.files import content_sha256, write_text
from tinyvideo.rows import read_json


RUN_FILE = "run.json"
REPORT_LOCK = "report.lock"
# The settings that locate what an evaluation reads, and the digest that tells whether it is the same thing elsewhere.
DIGESTS = {"model": ("model_sha256", "the model's files"), "data": ("questions_sha256", "the questions")}


def questions_sha256(questions: Sequence[Question]) -> str:
    """A sha256 hex digest of the questions as asked: each one's id, video file name, prompt, options, answer and
    categories, in order; not where the benchmark's folder is."""
    asked = [[q.id, Path(q.video).name, q.prompt, q.options, q.answer, q.categories] for q in questions]
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


def run_record(settings: Settings, questions: Sequence[Question]) -> dict:
    """What the output folder's run file holds: the settings, the questions' count and `questions_sha256`, and the
    model's `content_sha256` (None for a model that is not a local file or folder)."""
    model = Path(settings.model)
    try:
        digest = content_sha256(model) if model.exists() else None
    except OSError as error:
        raise InputError(f"cannot read the model: {error}") from None
    return {
        "settings": dataclasses.asdict(settings),
        "num_questions": len(questions),
        "questions_sha256": questions_sha256(questions),
        "model_sha256": digest,
    }


def check_run_file(output: Path, wanted: dict) -> None:
    """Refuse an output folder whose run file records other settings, other questions, or another model at the same
    path (its answers must not be mixed in); the same model files or the same questions at another path (a moved
    folder) are the same."""
    path = output / RUN_FILE
    if not path.is_file():
        return
    found = read_json(path)
    defaults = {f.name: f.default for f in dataclasses.fields(Settings) if f.default is not dataclasses.MISSING}
    found["settings"] = {**defaults, **found.get("settings", {})}  # settings added since: their defaults
    for setting, (digest, _) in DIGESTS.items():
        if found.get(digest) is None or wanted[digest] is None:  # an older run file, or the model is gone
            found[digest] = wanted[digest]
        elif found[digest] == wanted[digest]:  # the same files or questions, wherever they are now
            found["settings"][setting] = wanted["settings"][setting]
    if found != wanted:
        changed = sorted(k for k in wanted["settings"] if found["settings"].get(k) != wanted["settings"][k])
        changed += [what for digest, what in DIGESTS.values() if found[digest] != wanted[digest]]
        raise InputError(
            f"{output} holds predictions made with other settings ({', '.join(changed) or 'question count'} "
            "differ): choose another --output, or delete that folder to start again"
        )


def write_run_file(output: Path, wanted: dict) -> None:
    """Record the settings in the output folder, once the run has everything it needs to start."""
    output.mkdir(parents=True, exist_ok=True)
    if not (output / RUN_FILE).is_file():
        write_text(output / RUN_FILE, json.dumps(wanted, indent=2) + "\n")


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
    listed = ", options listed" if settings.get("cloze_options") else ""
    title = f"{settings['benchmark']} ({settings['mode']} mode{listed})"
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
    write_text(output / "report.json", json.dumps(report, indent=2) + "\n")
    write_text(output / "report.md", text + "\n")
    return report
