"""Bad inputs hidden in exam files: a gold answer written as a choice's text, and choices that repeat a text.

A key written as the text of one choice is read as its letter, and said once in a warning (the count
and the first file:line); one whose text fits several letters (twins, a text that also reads as
letters, a number that may be a position) leaves its question out, naming the text and the letters.
A question whose choices repeat a text is left out where the key is one of the twins, and scored,
with a warning, where it is not (see medtune.data.choice_texts). Each is checked where the
exam is read (`select_exam`, as evaluate.py composes it), in an evaluation's metrics, and once
through the real evaluate.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli

DRUGS = ["Aspirin", "Heparin", "Insulin", "Metformin", "Salbutamol"]


def item(qid: str, answer, choices=DRUGS, **extra) -> dict:
    return {"problem_id": qid, "problem_text": f"Question {qid}?", "choices": choices, "answer": answer, **extra}


ENGLISH = ("exam.language=en", "prompt=medpalm2_cot_en")  # the exams written here are in English


def write_exam(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    return path


@pytest.fixture()
def select(compose, tmp_path):
    """select(items) -> the ExamSelection evaluate.py would score for an exam=jsonl file of `items`."""
    from medtune.config.eval_schema import EvalRunConfig
    from medtune.exam.loading import select_exam
    from medtune.jobs import to_typed

    def _select(items: list[dict]):
        path = write_exam(tmp_path / "exam.jsonl", items)
        overrides = [f"paths.output_root={tmp_path}", "logger=none", "exam=jsonl", f"exam.path={path}", *ENGLISH]
        return select_exam(to_typed(compose(overrides, config_name="evaluate"), EvalRunConfig).exam)

    return _select


def test_a_key_written_as_one_choices_text_is_read_as_its_letter_with_one_warning(select, tmp_path, capsys):
    selection = select(
        [
            item("Q1", "heparin"),  # case
            item("Q2", ["a", "d"]),  # IgakuQA's two-answer questions, as letters: unchanged
            item("Q3", [" ASPIRIN ", "Insulin"]),  # a two-answer key as texts
            item("Q4", "ｍｅｔｆｏｒｍｉｎ"),  # full-width
            item("Q5", "c"),
        ]
    )
    answers = {q.qid: q.answers for q in selection.questions}
    assert answers == {"Q1": ("b",), "Q2": ("a", "d"), "Q3": ("a", "c"), "Q4": ("d",), "Q5": ("c",)}
    assert [a.qid for a in selection.answers_from_text] == ["Q1", "Q3", "Q4"] and not selection.excluded
    warnings = [line for line in capsys.readouterr().err.splitlines() if "written as a choice's text" in line]
    assert len(warnings) == 1
    assert "exam=jsonl: 3 gold answers are written as a choice's text, not its letter" in warnings[0]
    assert f"the first: {tmp_path / 'exam.jsonl'}:1 (Q1): 'heparin' -> b" in warnings[0]


@pytest.mark.parametrize(
    "answer, choices, names",
    [
        ("aspirin", ["Aspirin", "Heparin", "aspirin ", "Insulin", "Metformin"], "is the text of choices a and c"),
        (
            "bad",
            ["ace", "cab", "bad", "dab", "ebb"],
            "is the text of choice c and also reads as the choice letter(s) a, b and d",
        ),
        ("2", ["5", "4", "3", "2", "1"], "is the text of choice d and may also be the position of choice b"),
    ],
    ids=["text-of-two-choices", "text-that-reads-as-letters", "number-that-may-be-a-position"],
)
def test_a_key_text_that_fits_several_letters_leaves_its_question_out_naming_them(
    select, tmp_path, answer, choices, names
):
    selection = select([item("Q1", "b"), item("Q2", answer, choices)])
    assert [q.qid for q in selection.questions] == ["Q1"]
    (left,) = selection.excluded
    assert left.kind == "ambiguous_answer" and left.source == f"{tmp_path / 'exam.jsonl'}:2"
    assert f"answer {answer!r} ('answer') {names}" in left.reason and "give the letter" in left.reason


def test_repeated_choice_texts_are_left_out_where_the_key_is_a_twin_and_scored_with_a_warning_elsewhere(
    select, tmp_path, capsys
):
    twins = ["Aspirin", "Heparin", "aspirin", "Insulin", "Metformin"]
    selection = select(
        [
            item("T1", "a", twins),  # the key is a twin: a response "Aspirin" fits the key and c alike
            item("T2", ["b", "c"], twins),  # a two-answer key with one twin
            item("T3", "d", twins),  # the key is neither twin: any reading scores the same
            item("T4", "b", ["", "Heparin", "", "Insulin", "Metformin"]),  # blank texts are not twins
            item("T5", "e"),
        ]
    )
    assert [q.qid for q in selection.questions] == ["T3", "T5"]
    kinds = {x.qid: x.kind for x in selection.excluded}
    assert kinds == {"T1": "duplicate_choices", "T2": "duplicate_choices", "T4": "blank_choices"}
    t1 = next(x for x in selection.excluded if x.qid == "T1")
    assert t1.source == f"{tmp_path / 'exam.jsonl'}:1"
    assert "choices a and c have the same text 'Aspirin' (case and spaces aside) and the key names one" in t1.reason
    assert "left out of scoring" in t1.reason
    assert [r.qid for r in selection.repeated_choices] == ["T3"]
    err = capsys.readouterr().err
    assert err.count("with the same text") == 1
    assert (
        "exam=jsonl: 1 question has two choices with the same text, and is scored as written because the key is "
        f"neither of them (a response naming that text is wrong either way); the first: {tmp_path / 'exam.jsonl'}:3 "
        "(T3): choices a and c have the same text 'Aspirin'"
    ) in err


EXAM = [
    item("K1", "Heparin"),  # scored, as b
    item("K2", ["a", "d"]),  # scored: two answers
    item("K3", "bad", ["ace", "cab", "bad", "dab", "ebb"]),  # left out: ambiguous_answer
    item("K4", "a", ["Aspirin", "Heparin", "ASPIRIN", "Insulin", "Metformin"]),  # left out: duplicate_choices
    item("K5", "b", ["Aspirin", "Heparin", "ASPIRIN", "Insulin", "Metformin"]),  # scored, with a warning
    item("K6", "e"),  # scored
]


def check_run(out: Path, metrics: dict) -> None:
    """metrics.json counts the four scored questions, and lists the two left out with their kinds."""
    assert metrics["n"] == 4 and metrics["correct"] + metrics["invalid"] + metrics["wrong"] == 4
    excluded = metrics["excluded"]
    assert excluded["n"] == 2 and excluded["by_reason"] == {"ambiguous_answer": 1, "duplicate_choices": 1}
    assert [x["id"] for x in excluded["questions"]] == ["K3", "K4"]
    gold = {row["id"]: row["gold"] for row in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert gold == {"K1": ["b"], "K2": ["a", "d"], "K5": ["b"], "K6": ["e"]}
    assert json.loads((out / "metrics.json").read_text())["n"] == 4


def test_an_evaluation_scores_them_as_said(run_eval, tmp_path):
    path = write_exam(tmp_path / "exam.jsonl", EXAM)
    metrics = run_eval(
        ["exam=jsonl", f"exam.path={path}", *ENGLISH, "eval.max_new_tokens=8", "logger=none"], name="eval"
    )
    check_run(tmp_path / "eval", metrics)


@pytest.mark.slow
def test_evaluate_py_warns_lists_and_counts_them(tmp_path, tiny_cache):
    path = write_exam(tmp_path / "exam.jsonl", EXAM)
    out = tmp_path / "run"
    done = cli(
        "evaluate.py",
        "exam=jsonl",
        f"exam.path={path}",
        *ENGLISH,
        "eval.max_new_tokens=8",
        "logger=none",
        f"paths.output_root={tmp_path}",
        f"paths.cache_dir={tiny_cache}",
        f"hydra.run.dir={out}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = " ".join((done.stdout + done.stderr).split())  # the console wraps long lines at spaces
    assert "medtune: warning: exam=jsonl: 1 gold answer is written as a choice's text" in said
    assert f"the first: {path}:1 (K1): 'Heparin' -> b" in said
    assert "exam=jsonl: 1 question has two choices with the same text" in said and f"{path}:5 (K5)" in said
    assert "2 question(s) left out of exam=jsonl" in said
    assert f"K3 ({path}:3): answer 'bad' ('answer') is the text of choice c and also reads as" in said
    assert f"K4 ({path}:4): choices a and c have the same text 'Aspirin'" in said
    check_run(out, json.loads((out / "metrics.json").read_text()))
