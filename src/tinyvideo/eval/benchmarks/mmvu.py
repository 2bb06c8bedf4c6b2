"""MMVU validation, multiple-choice part: 625 five-option expert questions in 27 subjects, 4 disciplines.

Annotation: `validation.json`, a list of `{id, video, question_type, metadata: {subject, ...},
question, choices: {"A": ..., "E": ...}, answer}`. Open-ended items (which still carry empty
choices) are left out, as in TinyLLaVA-Video-R1's "MMVU (mc)". `video` is a Hugging Face URL;
the published script replaces its prefix with the data folder, giving
`videos/<Subject_Folder>/<n>.mp4`. The discipline comes from the folder name (underscores, where
the metadata uses spaces), as lmms-eval does. Prompt (docs/published-format.md 5.4): the question, then
"A. text" lines, in both modes. Frames: uniform over the whole video, repeats kept (path A).
"""

from __future__ import annotations

from pathlib import Path

from tinyvideo.answers import format_options
from tinyvideo.eval.benchmarks.common import AnnotationError, Question, Sampling, answer_letter, require
from tinyvideo.eval.report import Scoring
from tinyvideo.prompts import question_with_instruction
from tinyvideo.rows import read_json

URL_PREFIX = "https://huggingface.co/datasets/yale-nlp/MMVU/resolve/main"
DISCIPLINES = {
    "Science": ("Biology", "Chemistry", "Modern_Physics", "Astronomy", "Geography", "Materials_Science",
                "Neurobiology", "Electromagnetism", "Thermodynamics", "Mechanics"),
    "Engineering": ("Civil_Engineering", "Electrical_Engineering", "Mechanical_Engineering", "Biomedical_Engineering",
                    "Electronics_and_Communication", "Computer_Science"),
    "Healthcare": ("Clinical_Medicine", "Basic_Medicine", "Preventive_Medicine", "Pharmacy", "Dentistry"),
    "Humanities_and_Social_Science": ("Art", "Literature", "History", "Law", "Economics", "Management"),
}
DISCIPLINE_OF = {subject: discipline for discipline, subjects in DISCIPLINES.items() for subject in subjects}
SCORING = Scoring(breakdowns=("discipline", "subject"), orders={"discipline": tuple(DISCIPLINES)})


def prompt(question: str, choices: dict[str, str], mode: str) -> str:
    return question_with_instruction(question + "\n" + format_options(choices, "dot"), mode)


def video_path(root: Path, video: str) -> Path:
    relative = video[len(URL_PREFIX):] if video.startswith(URL_PREFIX) else video
    return root / relative.lstrip("/")


def load(root: Path, mode: str) -> list[Question]:
    path = root / "validation.json"
    if not path.is_file():
        raise AnnotationError(f"{root}: no MMVU validation.json")
    questions = []
    for number, item in enumerate(read_json(path)):
        where = f"{path}, item {number}"
        require(item, ("id", "video", "question_type", "question", "choices", "answer"), where)
        if item["question_type"] != "multiple-choice":
            continue
        if not isinstance(item["choices"], dict) or not item["choices"]:
            raise AnnotationError(f"{where}: choices must be an object of letter: text, got {item['choices']!r:.80}")
        choices = {str(k): str(v) for k, v in item["choices"].items()}
        if not all(choices.values()):
            raise AnnotationError(f"{where}: a multiple-choice item with an empty choice")
        video = video_path(root, str(item["video"]))
        subject = video.parent.name
        questions.append(
            Question(
                id=str(item["id"]),
                video=str(video),
                prompt=prompt(str(item["question"]), choices, mode),
                text=str(item["question"]),
                options=choices,
                answer=answer_letter(item["answer"], choices, where),
                categories={"discipline": DISCIPLINE_OF.get(subject, "unknown"), "subject": subject},
                sampling=Sampling("uniform"),
            )
        )
    return questions
