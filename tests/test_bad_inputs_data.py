"""A catalogue of bad input files: each case hands one file to the reader that meets it, and checks the message.

The sibling of `test_bad_inputs.py`, in its style (`Case`, `Expect`: the input, the problem and
the fix as regex fragments), for the readers of data files: training data (`read_records`, what
train.py reads), evaluation exams (`select_exam_jsonl`, where a bad question is left out with its
reason rather than refusing the file), IgakuQA-format predictions (`read_predictions`) and judge
question and answer files (`read_questions`, `read_answers`). No model loads: each case calls the
reader train.py or evaluate.py calls, on a file written under `tmp_path`.

The cases: null, empty and non-string fields; a key given twice in one record; files in UTF-16,
Latin-1 or Shift_JIS; a JSON array saved as `.jsonl`. `ACCEPTED` lists the inputs that must read:
a UTF-8 BOM, a null Alpaca input, full-width and circled answer letters, an empty judge answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from medtune.data.readers import read_records
from medtune.errors import DataError
from medtune.evaluation.predictions import read_predictions, score_prediction
from medtune.exam.jsonl_exam import select_exam_jsonl
from medtune.exam.overrides import AnswerOverrides
from medtune.exam.records import ExcludedQuestion, FieldMapping
from medtune.exam.selection import ExamFilter
from medtune.judge.questions import read_answers, read_questions
from medtune.vocabulary import ExamQuestion, Status
from test_bad_inputs import Case, Expect, Produced, produce

# --- the files a case writes --------------------------------------------------------------------------


class Files:
    """Writes a case's input file under the test's tmp_path (the `user` the catalogue's cases run with)."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path

    def raw(self, name: str, data: bytes) -> Path:
        path = self.tmp / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def text(self, name: str, text: str, encoding: str = "utf-8") -> Path:
        return self.raw(name, text.encode(encoding))

    def jsonl(self, name: str, items: list[Any], encoding: str = "utf-8") -> Path:
        return self.text(name, jsonl_text(items), encoding)


def jsonl_text(items: list[Any]) -> str:
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)


CHOICES = ["fever", "cough", "rash", "headache", "nausea"]
GOOD_ALPACA = {"instruction": "Define fever.", "input": "", "output": "A raised body temperature."}
GOOD_PREDICTION = {"problem_id": "112A1", "prediction": "a"}
GOOD_QUESTION = {"id": "knowledge_01", "category": "Knowledge", "question": "What is a fever?"}
GOOD_ANSWER = {"id": "knowledge_01", "answer": "A raised body temperature."}


def exam_item(answer: Any = ("a",), choices: Any = CHOICES, qid: Any = "T-01", **fields: Any) -> dict:
    item = {
        "problem_id": qid,
        "problem_text": "Which is a symptom of influenza?",
        "choices": choices,
        "answer": list(answer) if isinstance(answer, tuple) else answer,
    }
    return {**item, **fields}


def train_on(name: str, *items: Any) -> Callable[[Files], Any]:
    """train.py dataset.path=<a file of the good record then `items`>: the records train.py reads."""
    return lambda f: read_records(f.jsonl(name, [GOOD_ALPACA, *items]))


def train_on_text(name: str, text: str, encoding: str = "utf-8") -> Callable[[Files], Any]:
    return lambda f: read_records(f.text(name, text, encoding))


def exam_exclusions(*items: dict) -> Callable[[Files], Produced]:
    """evaluate.py exam=jsonl on the good question then `items`: the questions left out, `file:line: reason` a line."""

    def run(f: Files) -> Produced:
        path = f.jsonl("exam.jsonl", [exam_item(), *items])
        selection = select_exam_jsonl(path, FieldMapping(), ExamFilter.everything(), AnswerOverrides())
        if not selection.excluded:
            pytest.fail(f"no question of {path} was excluded; kept {[q.qid for q in selection.questions]}")
        kept = ", ".join(q.qid for q in selection.questions)
        lines = [f"{x.source}: {x.reason} ({x.qid} excluded; kept {kept})" for x in selection.excluded]
        return Produced(ExcludedQuestion.__name__, "\n".join(lines))

    return run


def exam_file(path_of: Callable[[Files], Path]) -> Callable[[Files], Any]:
    return lambda f: select_exam_jsonl(path_of(f), FieldMapping(), ExamFilter.everything(), AnswerOverrides())


def predictions(*items: Any) -> Callable[[Files], Any]:
    """evaluate.py predictions=<file>: IgakuQA's baseline format, the good line then `items`."""
    return lambda f: read_predictions(f.jsonl("results_gpt4.jsonl", [GOOD_PREDICTION, *items]))


def judge_questions(*items: Any) -> Callable[[Files], Any]:
    return lambda f: read_questions(str(f.jsonl("questions.jsonl", [GOOD_QUESTION, *items])))


def judge_answers(*items: Any) -> Callable[[Files], Any]:
    return lambda f: read_answers(f.jsonl("answers_base.jsonl", [GOOD_ANSWER, *items]))


PRETTY_ARRAY = json.dumps([GOOD_ALPACA, GOOD_ALPACA], indent=2)
JAPANESE = {"instruction": "発熱とは何ですか。", "output": "体温が上がった状態です。"}
ACCENTED = {"instruction": "Définissez la fièvre.", "output": "Une température élevée."}

# --- the cases ------------------------------------------------------------------------------------

CASES = [
    # --- training data: null, empty and non-string fields ---
    Case(
        "train-null-instruction",
        "data",
        'dataset.path=<alpaca line 2: "instruction": null>',
        train_on("alpaca.jsonl", {"instruction": None, "output": "A rash."}),
        Expect(DataError, r"alpaca\.jsonl:2: 'instruction'", r"is null", r"write the text, or delete the record"),
    ),
    Case(
        "train-null-output",
        "data",
        'dataset.path=<alpaca line 2: "output": null>',
        train_on("alpaca.jsonl", {"instruction": "Define rash.", "output": None}),
        Expect(
            DataError,
            r"alpaca\.jsonl:2: 'output'",
            r"is null",
            r"a record without a target cannot train: write it, or delete the record",
        ),
    ),
    Case(
        "train-empty-output",
        "data",
        'dataset.path=<alpaca line 2: "output": "">',
        train_on("alpaca.jsonl", {"instruction": "Define rash.", "input": "", "output": "  "}),
        Expect(DataError, r"alpaca\.jsonl:2: 'output'", r"is empty", r"a record without a target cannot train"),
    ),
    Case(
        "train-number-instruction",
        "data",
        'dataset.path=<alpaca line 2: "instruction": 12>',
        train_on("alpaca.jsonl", {"instruction": 12, "output": "Twelve."}),
        Expect(
            DataError,
            r"alpaca\.jsonl:2: 'instruction'",
            r"is a number \(12\), not text",
            r'write it as a JSON string \("12"\)',
        ),
    ),
    Case(
        "train-list-instruction",
        "data",
        'dataset.path=<alpaca line 2: "instruction": ["Define", "rash."]>',
        train_on("alpaca.jsonl", {"instruction": ["Define", "rash."], "output": "A change of the skin."}),
        Expect(DataError, r"alpaca\.jsonl:2: 'instruction'", r"is a list, not text", r"join it into one string"),
    ),
    Case(
        "train-list-input",
        "data",
        'dataset.path=<alpaca line 2: "input": ["adult"]>',
        train_on("alpaca.jsonl", {"instruction": "Define rash.", "input": ["adult"], "output": "A change."}),
        Expect(DataError, r"alpaca\.jsonl:2: 'input'", r"is a list, not text", r"join it into one string"),
    ),
    Case(
        "train-null-response",
        "data",
        'dataset.path=<prompt/response line 2: "response": null>',
        train_on("chat.jsonl", {"prompt": "Tôi bị sốt?", "response": None}),
        Expect(DataError, r"chat\.jsonl:2: 'response'", r"is null", r"a record without a target cannot train"),
    ),
    Case(
        "train-null-problem-text",
        "data",
        'dataset.path=<exam record: "problem_text": null>',
        train_on("exam.jsonl", exam_item(problem_text=None)),
        Expect(DataError, r"exam\.jsonl:2: 'problem_text'", r"is null", r"write the text, or delete the record"),
    ),
    Case(
        "train-null-choice",
        "data",
        'dataset.path=<exam record: "choices": ["fever", null, "rash"]>',
        train_on("exam.jsonl", exam_item(choices=["fever", None, "rash"])),
        Expect(DataError, r"exam\.jsonl:2: choice b", r"is null, not text", r"give every choice its text"),
    ),
    Case(
        "train-null-choices",
        "data",
        'dataset.path=<exam record: "choices": null>',
        train_on("exam.jsonl", exam_item(choices=None)),
        Expect(
            DataError,
            r"exam\.jsonl:2: 'choices'",
            r"is null, expected a list of strings",
            r"\[\] for a question with a numeric answer",
        ),
    ),
    Case(
        "train-null-answer",
        "data",
        'dataset.path=<exam record: "answer": null>',
        train_on("exam.jsonl", exam_item(answer=None)),
        Expect(DataError, r"exam\.jsonl:2: the answer", r"is empty \(null\)", r"give the correct letter\(s\)"),
    ),
    # --- training data: duplicate keys, encodings, a JSON array named .jsonl ---
    Case(
        "train-duplicate-key",
        "data",
        'dataset.path=<line 2: {"instruction": ..., "instruction": ...}>',
        train_on_text(
            "alpaca.jsonl",
            jsonl_text([GOOD_ALPACA])
            + '{"instruction": "Define rash.", "instruction": "Define fever.", "output": "A change."}\n',
        ),
        Expect(
            DataError,
            r"alpaca\.jsonl:2: the key 'instruction'",
            r"appears twice in one record",
            r"keep one 'instruction' and delete the other",
        ),
    ),
    Case(
        "train-duplicate-nested-key-in-json-array",
        "data",
        'dataset.path=<a .json array whose item 2 has "meta": {"src": 1, "src": 2}>',
        train_on_text(
            "alpaca.json",
            '[{"instruction": "I", "output": "O"},\n'
            ' {"instruction": "I", "output": "O", "meta": {"src": 1, "src": 2}}]\n',
        ),
        Expect(
            DataError, r"alpaca\.json:item 2: the key 'meta\.src'", r"appears twice in one record", r"keep one 'src'"
        ),
    ),
    Case(
        "train-utf16-bom",
        "data",
        "dataset.path=<a file saved as UTF-16 (with its BOM, as Windows Notepad does)>",
        train_on_text("alpaca.jsonl", jsonl_text([GOOD_ALPACA]), "utf-16"),
        Expect(
            DataError,
            r"alpaca\.jsonl: not UTF-8 text",
            r"looks like UTF-16 LE \(it starts with a UTF-16 LE "
            r"byte-order mark\)",
            r"iconv -f UTF-16 -t UTF-8 \S+alpaca\.jsonl > \S+alpaca\.utf8\.jsonl",
        ),
    ),
    Case(
        "train-utf16-be-no-bom",
        "data",
        "dataset.path=<a file in UTF-16 BE without a BOM>",
        train_on_text("alpaca.jsonl", jsonl_text([GOOD_ALPACA]), "utf-16-be"),
        Expect(
            DataError,
            r"alpaca\.jsonl: not UTF-8 text",
            r"looks like UTF-16 BE \(every other byte is NUL",
            r"iconv -f UTF-16BE -t UTF-8",
        ),
    ),
    Case(
        "train-latin1",
        "data",
        "dataset.path=<a French file saved as Latin-1>",
        train_on_text("alpaca.jsonl", jsonl_text([GOOD_ALPACA, ACCENTED]), "latin-1"),
        Expect(
            DataError,
            r"alpaca\.jsonl:2: not UTF-8 text",
            r"looks like Latin-1 / Windows-1252 or another 8-bit encoding \(byte 0xe9 is not UTF-8\)",
            r"iconv -f WINDOWS-1252 -t UTF-8 \S+alpaca\.jsonl > \S+alpaca\.utf8\.jsonl|re-save it as UTF-8",
        ),
    ),
    Case(
        "train-shift-jis",
        "data",
        "dataset.path=<a Japanese file saved as Shift_JIS>",
        train_on_text("alpaca.jsonl", jsonl_text([GOOD_ALPACA, JAPANESE]), "cp932"),
        Expect(
            DataError, r"alpaca\.jsonl:2: not UTF-8 text", r"looks like Shift_JIS \(CP932\)", r"iconv -f CP932 -t UTF-8"
        ),
    ),
    Case(
        "train-json-array-as-jsonl",
        "data",
        "dataset.path=<a pretty-printed JSON array named data.jsonl>",
        train_on_text("data.jsonl", PRETTY_ARRAY),
        Expect(
            DataError,
            r"data\.jsonl: this is a JSON array",
            r"not JSON lines",
            r"name it \.json \(medtune reads both\), e\.g\. `mv \S+data\.jsonl \S+data\.json`",
        ),
    ),
    Case(
        "train-pretty-object-as-jsonl",
        "data",
        "dataset.path=<one record pretty-printed over several lines>",
        train_on_text("data.jsonl", json.dumps({"data": [GOOD_ALPACA]}, indent=2)),
        Expect(
            DataError,
            r"data\.jsonl: the file is one JSON object spread over several lines",
            r"its records may be the list under 'data'",
            r"save that list as a \.json file",
        ),
    ),
    # --- evaluation exams: a null field leaves the question out, with its reason ---
    Case(
        "exam-null-choices",
        "data",
        'evaluate.py exam=jsonl, question 2 has "choices": null',
        exam_exclusions(exam_item(choices=None, qid="T-02")),
        Expect(
            ExcludedQuestion,
            r"exam\.jsonl:2: 'choices' is null",
            r"expected a list of strings",
            r"T-02 excluded; kept T-01",
        ),
    ),
    Case(
        "exam-null-answer",
        "data",
        'evaluate.py exam=jsonl, question 2 has "answer": null',
        exam_exclusions(exam_item(answer=None, qid="T-02")),
        Expect(
            ExcludedQuestion,
            r"exam\.jsonl:2: the answer \('answer'\)",
            r"is empty \(null\)",
            r"T-02 excluded; kept T-01",
        ),
    ),
    Case(
        "exam-null-question-text",
        "data",
        'evaluate.py exam=jsonl, question 2 has "problem_text": null',
        exam_exclusions(exam_item(problem_text=None, qid="T-02")),
        Expect(
            ExcludedQuestion,
            r"exam\.jsonl:2: the question text \('problem_text'\)",
            r"is empty \(null\) \(a figure-only question\?\)",
            r"T-02 excluded; kept T-01",
        ),
    ),
    Case(
        "exam-null-id",
        "data",
        'evaluate.py exam=jsonl, question 2 has "problem_id": null',
        exam_exclusions(exam_item(qid=None)),
        Expect(
            ExcludedQuestion,
            r"exam\.jsonl:2: the id \('problem_id'\) is null",
            r"give the question an id",
            r"exam:2 excluded; kept T-01",
        ),
    ),
    Case(
        "exam-null-points",
        "data",
        'evaluate.py exam=jsonl, question 2 has "points": null',
        exam_exclusions(exam_item(qid="T-02", points=None)),
        Expect(
            ExcludedQuestion,
            r"exam\.jsonl:2: points \('points'\) is null",
            r"expected a whole number",
            r"T-02 excluded; kept T-01",
        ),
    ),
    Case(
        "exam-list-explanation",
        "data",
        'evaluate.py exam=jsonl, question 2 has "explanation": ["..."]',
        exam_exclusions(exam_item(qid="T-02", explanation=["Influenza causes fever."])),
        Expect(
            ExcludedQuestion,
            r"exam\.jsonl:2: the explanation \('explanation'\)",
            r"is a list, not text",
            r"T-02 excluded; kept T-01",
        ),
    ),
    Case(
        "exam-duplicate-key",
        "data",
        'evaluate.py exam=jsonl, line 2 gives "answer" twice (refused: a JSON problem)',
        exam_file(
            lambda f: f.text(
                "exam.jsonl", jsonl_text([exam_item()]) + '{"problem_id": "T-02", "answer": ["a"], "answer": ["b"]}\n'
            )
        ),
        Expect(DataError, r"exam\.jsonl:2: the key 'answer'", r"appears twice in one record", r"keep one 'answer'"),
    ),
    Case(
        "exam-utf16",
        "data",
        "evaluate.py exam=jsonl exam.path=<an exam saved as UTF-16>",
        exam_file(lambda f: f.jsonl("exam.jsonl", [exam_item()], "utf-16")),
        Expect(DataError, r"exam\.jsonl: not UTF-8 text", r"UTF-16 LE", r"iconv -f UTF-16 -t UTF-8"),
    ),
    Case(
        "exam-json-array-as-jsonl",
        "data",
        "evaluate.py exam=jsonl exam.path=<a JSON array named exam.jsonl>",
        exam_file(lambda f: f.text("exam.jsonl", json.dumps([exam_item()], indent=2))),
        Expect(DataError, r"exam\.jsonl: this is a JSON array", r"not JSON lines", r"name it \.json"),
    ),
    # --- predictions files ---
    Case(
        "predictions-null-prediction",
        "data",
        'evaluate.py predictions=<line 2: "prediction": null>',
        predictions({"problem_id": "112A2", "prediction": None}),
        Expect(
            DataError,
            r"results_gpt4\.jsonl:2: 'prediction'",
            r"is null, not text",
            r'write the answer as a string, e\.g\. "a,b" \(""',
        ),
    ),
    Case(
        "predictions-list-prediction",
        "data",
        'evaluate.py predictions=<line 2: "prediction": ["a", "b"]>',
        predictions({"problem_id": "112A2", "prediction": ["a", "b"]}),
        Expect(
            DataError,
            r"results_gpt4\.jsonl:2: 'prediction'",
            r"is a list, not text",
            r'write the letters as one string, e\.g\. "a,b"',
        ),
    ),
    Case(
        "predictions-null-problem-id",
        "data",
        'evaluate.py predictions=<line 2: "problem_id": null>',
        predictions({"problem_id": None, "prediction": "b"}),
        Expect(DataError, r"results_gpt4\.jsonl:2: 'problem_id'", r"is null", r"give the id of the exam question"),
    ),
    Case(
        "predictions-duplicate-key",
        "data",
        'evaluate.py predictions=<line 2 gives "prediction" twice>',
        lambda f: read_predictions(
            f.text(
                "results_gpt4.jsonl",
                jsonl_text([GOOD_PREDICTION]) + '{"problem_id": "112A2", "prediction": "a", "prediction": "b"}\n',
            )
        ),
        Expect(DataError, r"results_gpt4\.jsonl:2: the key 'prediction'", r"appears twice", r"keep one 'prediction'"),
    ),
    Case(
        "predictions-latin1",
        "data",
        "evaluate.py predictions=<a file saved as Windows-1252>",
        lambda f: read_predictions(
            f.jsonl("results_gpt4.jsonl", [GOOD_PREDICTION, {"problem_id": "112A2", "prediction": "é"}], "cp1252")
        ),
        Expect(
            DataError,
            r"results_gpt4\.jsonl:2: not UTF-8 text",
            r"Latin-1 / Windows-1252",
            r"iconv -f WINDOWS-1252 -t UTF-8",
        ),
    ),
    # --- judge questions and answers ---
    Case(
        "judge-null-question",
        "data",
        'judge.questions=<line 2: "question": null>',
        judge_questions({"id": "knowledge_02", "category": "Knowledge", "question": None}),
        Expect(DataError, r"questions\.jsonl:2: 'question'", r"is null", r"write the question, or delete the line"),
    ),
    Case(
        "judge-number-category",
        "data",
        'judge.questions=<line 2: "category": 3>',
        judge_questions({"id": "knowledge_02", "category": 3, "question": "What is a rash?"}),
        Expect(
            DataError,
            r"questions\.jsonl:2: 'category'",
            r"is a number \(3\), not text",
            r'write it as a JSON string \("3"\)',
        ),
    ),
    Case(
        "judge-null-question-id",
        "data",
        'judge.questions=<line 2: "id": null>',
        judge_questions({"id": None, "category": "Knowledge", "question": "What is a rash?"}),
        Expect(DataError, r"questions\.jsonl:2: 'id'", r"is null", r"give every question an id"),
    ),
    Case(
        "judge-list-reference",
        "data",
        'judge.questions=<line 2: "reference": ["..."]>',
        judge_questions({**GOOD_QUESTION, "id": "knowledge_02", "reference": ["A raised temperature."]}),
        Expect(DataError, r"questions\.jsonl:2: 'reference'", r"is a list, not text", r"join it into one string"),
    ),
    Case(
        "judge-null-answer",
        "data",
        'judge.a.answers=<line 2: "answer": null>',
        judge_answers({"id": "knowledge_02", "answer": None}),
        Expect(
            DataError, r"answers_base\.jsonl:2: 'answer'", r"is null", r'write the system\'s answer as a string \(""'
        ),
    ),
    Case(
        "judge-object-answer",
        "data",
        'judge.a.answers=<line 2: "answer": {"text": "..."}>',
        judge_answers({"id": "knowledge_02", "answer": {"text": "A rash."}}),
        Expect(DataError, r"answers_base\.jsonl:2: 'answer'", r"is an object, not text", r"write it as a JSON string"),
    ),
    Case(
        "judge-duplicate-key",
        "data",
        'judge.questions=<line 2 gives "question" twice>',
        lambda f: read_questions(
            str(
                f.text(
                    "questions.jsonl",
                    jsonl_text([GOOD_QUESTION])
                    + (
                        '{"id": "k2", "category": "Knowledge", "question": "What is a rash?", "question": "What is fever?"}\n'
                    ),
                )
            )
        ),
        Expect(DataError, r"questions\.jsonl:2: the key 'question'", r"appears twice", r"keep one 'question'"),
    ),
]


# --- inputs that must read -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    id: str
    what: str  # the input, as a user would meet it
    read: Callable[[Files], Any]  # writes the input and returns what the reader made of it
    expected: Any


def question(answers: tuple[str, ...] = ("c",)) -> ExamQuestion:
    return ExamQuestion("112A1", "Which is a symptom?", tuple(CHOICES), answers)


def records_of(name: str, text: str) -> Callable[[Files], list[tuple[str, str, str]]]:
    """train.py dataset.path=<`text` saved as `name`>: (instruction, input, output) of each record."""
    return lambda f: [(r.instruction, r.input, r.output) for r in read_records(f.text(name, text))]


def training_targets(*answers: Any) -> Callable[[Files], list[str]]:
    """The training targets of exam records with these answers (one record each)."""
    return lambda f: [r.output for r in read_records(f.jsonl("exam.jsonl", [exam_item(a) for a in answers]))]


def exam_keys(*answers: Any, bom: str = "") -> Callable[[Files], list[tuple[str, ...]]]:
    """evaluate.py exam=jsonl on questions with these answers: the key each is scored by."""

    def run(f: Files) -> list[tuple[str, ...]]:
        items = [exam_item(answer, qid=f"T-{i}") for i, answer in enumerate(answers)]
        path = f.text("exam.jsonl", bom + jsonl_text(items))
        return [
            q.answers
            for q in select_exam_jsonl(path, FieldMapping(), ExamFilter.everything(), AnswerOverrides()).questions
        ]

    return run


def lenient_score(prediction: str) -> Callable[[Files], Status]:
    """evaluate.py predictions=<file> exam.predictions_format=lenient: the status of one prediction of c."""

    def run(f: Files) -> Status:
        read = read_predictions(f.jsonl("r_gpt4.jsonl", [{"problem_id": "112A1", "prediction": prediction}]))
        return score_prediction(question(("c",)), read["112A1"], strict=False).status

    return run


ALPACA_ROW = ("Define fever.", "", "A raised body temperature.")
ODD_LINE_ENDS = jsonl_text([{**GOOD_ALPACA, "output": "a\u2028b\x85c"}] * 2).replace("\n", "\r\n")

ACCEPTED = [
    Accepted(
        "train-utf8-bom",
        "dataset.path=<a UTF-8 file with a BOM (Excel, Notepad)>",
        records_of("bom.jsonl", "\ufeff" + jsonl_text([GOOD_ALPACA, GOOD_ALPACA])),
        [ALPACA_ROW] * 2,
    ),
    Accepted(
        "train-utf8-bom-json-array",
        "dataset.path=<a .json array with a BOM>",
        records_of("bom.json", "\ufeff" + PRETTY_ARRAY),
        [ALPACA_ROW] * 2,
    ),
    Accepted(
        "train-json-array-renamed",
        "dataset.path=<the array of train-json-array-as-jsonl, named data.json>",
        records_of("data.json", PRETTY_ARRAY),
        [ALPACA_ROW] * 2,
    ),
    Accepted(
        "train-line-separator-in-text",
        "dataset.path=<outputs holding U+2028 and U+0085, CRLF line ends>",
        records_of("a.jsonl", ODD_LINE_ENDS),
        [(*ALPACA_ROW[:2], "a\u2028b\x85c")] * 2,
    ),
    Accepted(
        "train-null-input",
        'dataset.path=<alpaca record with "input": null>',
        records_of("a.jsonl", jsonl_text([{**GOOD_ALPACA, "input": None}])),
        [ALPACA_ROW],
    ),
    Accepted(
        "train-full-width-answer",
        'dataset.path=<exam records answering "ｃ", "Ｃ", "③", "a,c", "ac", ["A", "ｃ"]>',
        training_targets(["ｃ"], "Ｃ", ["③"], "a,c", "ac", ["A", "ｃ"]),
        ["c. rash"] * 3 + ["a. fever, c. rash"] * 3,
    ),
    Accepted(
        "exam-full-width-answer",
        'evaluate.py exam=jsonl with answers "ｃ", "③", "a,c", "ac"',
        exam_keys(["ｃ"], ["③"], "a,c", "ac"),
        [("c",), ("c",), ("a", "c"), ("a", "c")],
    ),
    Accepted(
        "exam-utf8-bom",
        "evaluate.py exam=jsonl exam.path=<an exam with a BOM>",
        exam_keys(["a"], bom="\ufeff"),
        [("a",)],
    ),
    Accepted(
        "predictions-full-width-lenient",
        "evaluate.py predictions=<a file predicting ｃ> (lenient format)",
        lenient_score("ｃ"),
        Status.correct,
    ),
    Accepted(
        "judge-empty-answer",
        'judge.a.answers=<a line with "answer": "" (the system said nothing)>',
        lambda f: read_answers(f.jsonl("answers_base.jsonl", [{"id": "k1", "answer": ""}])),
        {"k1": ""},
    ),
    Accepted(
        "judge-utf8-bom",
        "judge.questions=<a questions file with a BOM>",
        lambda f: [
            q.qid for q in read_questions(str(f.text("questions.jsonl", "\ufeff" + jsonl_text([GOOD_QUESTION]))))
        ],
        ["knowledge_01"],
    ),
]


# --- running the catalogue ---------------------------------------------------------------------------


@pytest.fixture()
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_file(case: Case, files: Files):
    produced = produce(case, files)
    expect = case.expect
    assert produced.error == expect.error.__name__, produced
    assert "Traceback" not in produced.message
    for part in ("input", "problem", "fix"):
        pattern = getattr(expect, part)
        if pattern is not None:
            assert re.search(pattern, produced.message), f"{case.id}: no /{pattern}/ in:\n{produced.message}"
    start = re.escape(f"{files.tmp / 'data'}/") + expect.input  # the message starts with the file and the field
    assert re.match(start, produced.message), f"{case.id}: the message does not start /{start}/:\n{produced.message}"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ACCEPTED])
def test_input_that_must_read(case: Accepted, files: Files):
    assert case.read(files) == case.expected


def test_the_catalogue_names_each_case_once():
    ids = [c.id for c in CASES] + [c.id for c in ACCEPTED]
    assert len(ids) == len(set(ids)) and len(CASES) >= 30
