"""Scores as the leaderboards count them, from a predictions file, as JSON and as a markdown table.

Every question in the predictions counts: one whose video could not be read, or whose answer could
not be read (invalid) or names several options (hedged), is wrong (published parsers would guess a
random letter instead, docs/published-format.md 6, item 12, or take a hedge's first letter).
Accuracies are percentages. Breakdowns are micro accuracies per value of a category field; the
headline is the overall micro accuracy unless the leaderboard says otherwise (MLVU's M-Avg is the
mean of its task accuracies). A category with no questions has no accuracy (None, shown as "-"),
never a division by zero. A run with subtitles is scored with them; the same questions asked without
are scored apart and shown beside (`beside`). The subtitle states of the questions asked with them
(`ok`, or why a question got none: `missing`, `empty`, `unknown schema`, `end before start`, `no frame
times`) are counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tinyvideo.answers import HEDGED

ANSWERED = ("ok", "damaged", "truncated")  # statuses whose question reached the model


@dataclass(frozen=True)
class Scoring:
    """How a benchmark's leaderboard reports it.

    `breakdowns`: the category fields reported value by value. `macro_over`: when set, the headline
    is the unweighted mean of the accuracies of this field's values, named `headline`. `groups`:
    rollups of several values of a field into one figure (NExT-QA's Acc_C, Acc_T, Acc_D), micro within
    the group. `orders`: the display order of a field's values; other values come sorted after them.
    """

    breakdowns: tuple[str, ...] = ()
    headline: str = "accuracy"
    macro_over: str | None = None
    groups: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    orders: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class Tally:
    total: int = 0
    correct: int = 0
    invalid: int = 0
    hedged: int = 0
    unanswered: int = 0

    def add(self, record: dict) -> None:
        self.total += 1
        self.correct += bool(record.get("correct"))
        if record["status"] not in ANSWERED:
            self.unanswered += 1
        elif record.get("method") == HEDGED:
            self.hedged += 1
        else:
            self.invalid += record.get("letter") is None

    def merge(self, other: Tally) -> None:
        self.total += other.total
        self.correct += other.correct
        self.invalid += other.invalid
        self.hedged += other.hedged
        self.unanswered += other.unanswered

    def as_dict(self) -> dict:
        accuracy = 100.0 * self.correct / self.total if self.total else None
        return {
            "accuracy": accuracy,
            "correct": self.correct,
            "total": self.total,
            "invalid": self.invalid,
            "hedged": self.hedged,
            "unanswered": self.unanswered,
        }


def score(records: Iterable[dict], scoring: Scoring, expected: int | None = None) -> dict:
    """The report of a set of prediction records, one per question id.

    A question found more than once (files of two shardings of one run) counts once: its first
    answered record, or its first record if none was answered.
    """
    unique: dict[str, dict] = {}
    for record in records:
        seen = unique.get(record["id"])
        if seen is None or (seen["status"] not in ANSWERED and record["status"] in ANSWERED):
            unique[record["id"]] = record
    records = list(unique.values())

    overall = Tally()
    by_field: dict[str, dict[str, Tally]] = {name: {} for name in scoring.breakdowns}
    for record in records:
        overall.add(record)
        categories = record.get("categories") or {}
        for name in scoring.breakdowns:
            value = str(categories.get(name) or "unknown")
            by_field[name].setdefault(value, Tally()).add(record)

    breakdowns = {name: {v: by_field[name][v].as_dict() for v in _ordered(by_field[name], scoring.orders.get(name, ()))} for name in scoring.breakdowns}
    groups = {}
    for name, rollups in scoring.groups.items():
        groups[name] = {}
        for group, members in rollups.items():
            tally = Tally()
            for value in members:
                part = by_field.get(name, {}).get(value)
                if part is not None:
                    tally.merge(part)
            groups[name][group] = tally.as_dict()

    statuses = Counter(record["status"] for record in records)
    subtitles = Counter(record["subtitles"] for record in records if "subtitles" in record)
    answered = sum(statuses[s] for s in ANSWERED)
    if scoring.macro_over:
        accuracies = [cell["accuracy"] for cell in breakdowns[scoring.macro_over].values() if cell["accuracy"] is not None]
        headline = sum(accuracies) / len(accuracies) if accuracies else None
    else:
        headline = overall.as_dict()["accuracy"]
    return {
        "headline": {"name": scoring.headline, "value": headline},
        "overall": overall.as_dict(),
        "questions": expected if expected is not None else len(records),
        "predicted": len(records),
        "pending": (expected - len(records)) if expected is not None else 0,
        "status": dict(sorted(statuses.items())),
        "invalid_answers": overall.invalid,
        "invalid_rate": overall.invalid / answered if answered else None,
        "hedged_answers": overall.hedged,
        "hedged_rate": overall.hedged / answered if answered else None,
        "breakdowns": breakdowns,
        "groups": groups,
        **({"subtitles": dict(sorted(subtitles.items()))} if subtitles else {}),
    }


def _ordered(values: dict, order: Sequence[str]) -> list[str]:
    first = [v for v in order if v in values]
    return first + sorted(v for v in values if v not in order)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _share(count: int, rate: float | None) -> str:
    return f"{count} ({'-' if rate is None else f'{100 * rate:.1f}%'} of answered questions)"


def _table(title: str, cells: dict[str, dict]) -> list[str]:
    lines = [
        f"| {title} | accuracy | correct / total | invalid answers | hedged answers | unanswered |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, cell in cells.items():
        lines.append(
            f"| {name} | {_pct(cell['accuracy'])} | {cell['correct']} / {cell['total']} | {cell['invalid']} "
            f"| {cell['hedged']} | {cell['unanswered']} |"
        )
    return lines


def markdown(report: dict, title: str) -> str:
    """The report as markdown: headline, counts, then one table per breakdown and rollup."""
    headline = report["headline"]
    lines = [
        f"# {title}",
        "",
        f"**{headline['name']}: {_pct(headline['value'])}**",
        "",
        f"- questions: {report['questions']} (predicted {report['predicted']}, pending {report['pending']})",
        "- status: " + (", ".join(f"{k} {v}" for k, v in report["status"].items()) or "none"),
        f"- invalid answers: {_share(report['invalid_answers'], report['invalid_rate'])}",
        f"- hedged answers: {_share(report['hedged_answers'], report['hedged_rate'])}",
        *([f"- subtitles: {', '.join(f'{k} {v}' for k, v in report['subtitles'].items())}"] if "subtitles" in report else []),
        "",
    ]
    lines += _table("overall", {"all": report["overall"]}) + [""]
    for name, cells in report["breakdowns"].items():
        lines += [f"## by {name}", ""] + _table(name, cells) + [""]
    for name, groups in report["groups"].items():
        lines += [f"## {name} groups", ""] + _table("group", groups) + [""]
    return "\n".join(lines)


def beside(reports: dict[str, dict]) -> str:
    """Markdown: the accuracy of each report (one per setting, e.g. without and with subtitles) side by
    side, overall (with the invalid-answer counts) and for every value of every breakdown."""
    names = list(reports)
    first = reports[names[0]]
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines.append("| overall | " + " | ".join(_pct(r["headline"]["value"]) for r in reports.values()) + " |")
    lines.append("| invalid answers | " + " | ".join(str(r["invalid_answers"]) for r in reports.values()) + " |")
    for field_name, cells in first["breakdowns"].items():
        for value in cells:
            row = [_pct(r["breakdowns"].get(field_name, {}).get(value, {}).get("accuracy")) for r in reports.values()]
            lines.append(f"| {field_name} {value} | " + " | ".join(row) + " |")
    return "\n".join(lines)
