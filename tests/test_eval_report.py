"""Scores counted as each leaderboard counts them, on prediction records small enough to check by hand."""

from __future__ import annotations

from tinyvideo.eval.benchmarks import mlvu, nextqa, videomme
from tinyvideo.eval.report import Scoring, markdown, score


def record(qid: str, correct: bool, status: str = "ok", letter: str | None = "A", method: str | None = None, **categories) -> dict:
    answered = status in ("ok", "damaged", "truncated")
    return {"id": qid, "status": status, "correct": correct, "letter": letter if answered else None, "method": method, "categories": categories}


def test_mlvu_m_avg_is_the_mean_of_task_accuracies_not_the_pooled_accuracy():
    records = [record(f"p{i}", True, task="plotQA") for i in range(3)] + [record("n0", False, task="needle")]
    report = score(records, mlvu.SCORING)
    assert report["overall"]["accuracy"] == 75.0  # 3 of 4
    assert report["headline"] == {"name": "M-Avg", "value": 50.0}  # (100 + 0) / 2
    assert list(report["breakdowns"]["task"]) == ["plotQA", "needle"]  # the official task order


def test_nextqa_type_groups_and_a_group_without_questions():
    records = [
        record("1", True, type="CW"), record("2", False, type="CW"), record("3", True, type="CH"),
        record("4", False, type="TN"), record("5", True, type="TC"), record("6", True, type="DC"),
    ]
    groups = score(records, nextqa.SCORING)["groups"]["type"]
    assert (groups["Acc_C"]["correct"], groups["Acc_C"]["total"]) == (2, 3)
    assert groups["Acc_T"]["accuracy"] == 50.0
    assert groups["Acc_D"]["accuracy"] == 100.0
    none = score([record("1", True, type="CW")], nextqa.SCORING)["groups"]["type"]["Acc_D"]
    assert none == {"accuracy": None, "correct": 0, "total": 0, "invalid": 0, "hedged": 0, "unanswered": 0}


def test_unreadable_and_hedged_answers_and_videos_count_wrong_and_are_reported():
    records = [
        record("a", True),
        record("b", False, letter=None, method="no_match"),  # the answer could not be read
        record("c", False, status="missing"),
        record("d", False, status="unreadable"),
        record("e", True, status="truncated"),
        record("f", False, letter=None, method="hedged"),  # "A or B"
        record("g", False, status="damaged", letter=None, method="no_match"),  # answered from the frames that decode
    ]
    report = score(records, Scoring(), expected=8)
    assert report["overall"] == {"accuracy": 100 * 2 / 7, "correct": 2, "total": 7, "invalid": 2, "hedged": 1, "unanswered": 2}
    assert report["status"] == {"damaged": 1, "missing": 1, "ok": 3, "truncated": 1, "unreadable": 1}
    assert report["invalid_answers"] == 2 and report["invalid_rate"] == 2 / 5
    assert report["hedged_answers"] == 1 and report["hedged_rate"] == 1 / 5
    assert (report["questions"], report["predicted"], report["pending"]) == (8, 7, 1)
    table = markdown(report, "synth")
    assert "- hedged answers: 1 (20.0% of answered questions)" in table
    assert "| all | 28.6 | 2 / 7 | 2 | 1 | 2 |" in table


def test_empty_reports_and_empty_categories_do_not_break():
    report = score([], mlvu.SCORING, expected=4)
    assert report["headline"]["value"] is None and report["overall"]["accuracy"] is None and report["invalid_rate"] is None
    assert "**M-Avg: -**" in markdown(report, "mlvu")
    unlabelled = score([record("x", True, task=None), record("y", False)], Scoring(breakdowns=("task",)))
    assert unlabelled["breakdowns"]["task"] == {"unknown": {"accuracy": 50.0, "correct": 1, "total": 2, "invalid": 0, "hedged": 0, "unanswered": 0}}


def test_videomme_breakdowns_in_leaderboard_order_and_repeated_ids_counted_once():
    """An id in two files counts once, its answered record first."""
    rows = [
        record("1", True, duration="long", domain="Knowledge", sub_category="Astronomy", task_type="OCR Problems"),
        record("2", False, duration="short", domain="Knowledge", sub_category="Astronomy", task_type="Counting Problem"),
        record("3", True, duration="medium", domain="Multilingual", sub_category="Multilingual", task_type="OCR Problems"),
    ]
    report = score(rows + [record("2", True, duration="short")], videomme.SCORING)
    assert report["predicted"] == 3 and report["overall"]["correct"] == 2
    retried = score([record("4", False, status="missing"), record("4", True, status="ok")], videomme.SCORING)
    assert retried["status"] == {"ok": 1} and retried["overall"]["correct"] == 1
    assert list(report["breakdowns"]["duration"]) == ["short", "medium", "long"]
    assert report["breakdowns"]["task_type"]["OCR Problems"]["accuracy"] == 100.0
    table = markdown(report, "videomme")
    assert "| short | 0.0 | 0 / 1 | 0 | 0 | 0 |" in table and "## by task_type" in table
