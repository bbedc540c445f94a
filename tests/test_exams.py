"""Tests of the exam readers: IgakuQA folders, generic JSONL exams, answer-key overrides, shuffling.

The `shared` tests read the real IgakuQA / JJSIMQA / MedQA files under $MEDTUNE_SHARED/data (default
../shared next to the repo) and skip when they are absent; the rest run on small files written under
`tmp_path` and on the bundled sample exam. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from medtune.config.eval_schema import ExamConfig, ExamFormat
from medtune.errors import DataError
from medtune.exam.igakuqa import read_igakuqa, select_igakuqa
from medtune.exam.jsonl_exam import read_exam_jsonl, read_sample_exam, select_exam_jsonl, select_sample_exam
from medtune.exam.loading import exclusion_summary, load_exam, select_exam
from medtune.exam.overrides import AnswerOverrides, load_overrides
from medtune.exam.records import REASON_KINDS, ExcludedQuestion, FieldMapping
from medtune.exam.scoring import score_letters
from medtune.exam.selection import ExamFilter, shuffle_choices
from medtune.vocabulary import Status

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / os.environ.get("MEDTUNE_SHARED", "../shared")).resolve() / "data"
FIVE = ["fever", "cough", "rash", "headache", "nausea"]
NONE = AnswerOverrides()


def write_jsonl(path: Path, items: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    return path


def q(pid: str, answer, choices=FIVE, text_only=True, points="1", text="Which is a symptom?") -> dict:
    return {
        "problem_id": pid,
        "problem_text": text,
        "choices": choices,
        "text_only": text_only,
        "answer": answer,
        "points": points,
    }


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path}; set MEDTUNE_SHARED to the folder that holds data/")
    return path


# ---------------------------------------------------------------- the real data (skipped without it)


def test_shared_igakuqa_2018_paper_subset_is_277():
    questions = read_igakuqa(shared("igakuqa"), [2018], ExamFilter())
    assert len(questions) == 277
    assert Counter(x.block for x in questions) == {"A": 37, "B": 43, "C": 51, "D": 35, "E": 44, "F": 67}
    assert all(x.text_only and 1 <= x.num_answers <= 2 and x.choices for x in questions)


def test_shared_igakuqa_2018_relaxed_is_400_in_order():
    questions = read_igakuqa(shared("igakuqa"), ["2018"], ExamFilter.everything())
    assert len(questions) == 400
    assert Counter(x.block for x in questions) == {"A": 75, "B": 49, "C": 66, "D": 75, "E": 51, "F": 84}
    assert [x.block for x in questions] == sorted(x.block for x in questions)
    assert questions[0].qid == "112A1" and questions[0].source.endswith("112-A.jsonl:1")
    assert {x.qid: x.answers for x in questions if x.is_numeric} == {"112C66": ("26",), "112F84": ("1.2",)}
    assert {x.points for x in questions} <= {0, 1, 3} and all(x.year == "2018" for x in questions)


def test_shared_112b30_accepts_a_or_d_via_bundled_overrides():
    assert "112B30" in load_overrides(None).accept
    (b30,) = [x for x in read_igakuqa(shared("igakuqa"), [2018], ExamFilter.everything()) if x.qid == "112B30"]
    assert b30.answers == ("a",) and b30.accepted == (("d",),)
    assert set(b30.gold_sets()) == {frozenset("a"), frozenset("d")}


def test_shared_metadata_joined_and_essential_blocks():
    questions = read_igakuqa(shared("igakuqa"), [2018], ExamFilter.everything())
    assert all(x.category for x in questions)
    with_kinki = {x.qid: x.kinki for x in questions if x.kinki}
    assert with_kinki["112C9"] == ("a", "b", "c", "d")  # written "abcd" in the metadata
    assert with_kinki["112F66"] == ("b",)  # written as a full-width letter
    assert {x.block for x in questions if x.essential} == {"B", "E"}
    assert not any(x.essential for x in questions if x.block not in "BE")


def test_shared_english_version():
    ja = {x.qid: x for x in read_igakuqa(shared("igakuqa"), [2018], ExamFilter())}
    en = {x.qid: x for x in read_igakuqa(shared("igakuqa"), [2018], ExamFilter(), english=True)}
    assert ja.keys() == en.keys()
    assert en["112A1"].question == "What disease causes hyperammonemia?"
    assert en["112A1"].choices[4] == "Ornithine transcarbamylase deficiency"
    assert all(en[k].answers == ja[k].answers and en[k].points == ja[k].points for k in ja)
    assert en["112A1"].category == ja["112A1"].category and en["112A1"].source.endswith("112-A_translate.jsonl:1")


def test_shared_jjsimqa_and_medqa():
    jj = read_exam_jsonl(shared("jjsimqa", "jjsimqa.jsonl"), FieldMapping(), ExamFilter.everything())
    # 460 records; 107_1514-57 repeats the text of its key (a) as choice b: left out (duplicate_choices).
    assert len(jj) == 459 and all(x.points == 1 for x in jj) and "107_1514-57" not in {x.qid for x in jj}
    assert [x.answers for x in jj if x.qid == "107_888-26"] == [("d", "e")]  # written ["d", ",", "e"]
    medqa = read_exam_jsonl(shared("medqa_en", "medqa_en.jsonl"), FieldMapping(), ExamFilter())
    assert len(medqa) == 1273 and medqa[0].qid == "0"


# ---------------------------------------------------------------- a tiny IgakuQA folder


@pytest.fixture()
def igakuqa(tmp_path: Path) -> Path:
    root = tmp_path / "igakuqa"
    write_jsonl(
        root / "2020" / "114-A.jsonl",
        [
            q("114A1", ["c"]),
            q("114A2", ["b"], text_only=False),
            q("114A3", ["a", "b", "c"]),
            q("114A4", ["12"], choices=[]),
            q("114A5", ["B", "D"]),
        ],
    )
    write_jsonl(
        root / "2020" / "114-A_metadata.jsonl",
        [
            {"problem_id": "114A1", "category": "内科", "kinki": ["ｅ"]},
            {"problem_id": "114A5", "category": "小児科", "kinki": ["ce"]},
        ],
    )
    write_jsonl(
        root / "2020" / "114-A_translate.jsonl",
        [
            {"problem_id": f"114A{i}", "problem_text_en": f"English {i}", "choices_en": [c.upper() for c in FIVE]}
            for i in (1, 2, 3, 5)
        ]
        + [{"problem_id": "114A4", "problem_text_en": "English 4", "choices_en": [], "answer": ["12"]}],
    )
    write_jsonl(root / "2020" / "114-B.jsonl", [q("114B1", ["e"], points="3"), q("114B2", ["a"])])
    write_jsonl(root / "2019" / "113-C.jsonl", [q("113C1", ["d"])])
    return root


def test_filters(igakuqa: Path):
    ids = lambda filt: [x.qid for x in read_igakuqa(igakuqa, [2020], filt, overrides=NONE)]
    assert ids(ExamFilter()) == ["114A1", "114A5", "114B1", "114B2"]
    assert ids(ExamFilter.everything()) == ["114A1", "114A2", "114A3", "114A4", "114A5", "114B1", "114B2"]
    assert ids(ExamFilter(blocks=["b"])) == ["114B1", "114B2"]
    assert ids(ExamFilter(max_questions=2)) == ["114A1", "114A5"]
    assert ids(ExamFilter(require_choices=False)) == ["114A1", "114A4", "114A5", "114B1", "114B2"]
    assert ids(ExamFilter(text_only=False, max_answers=1)) == ["114A1", "114A2", "114B1", "114B2"]
    both = read_igakuqa(igakuqa, [2020, "2019"], ExamFilter(), overrides=NONE)
    assert [x.year for x in both] == ["2019"] + ["2020"] * 4


def test_fields_metadata_and_essential(igakuqa: Path):
    by_id = {x.qid: x for x in read_igakuqa(igakuqa, [2020], ExamFilter.everything(), overrides=NONE)}
    assert by_id["114A5"].answers == ("b", "d") and by_id["114A5"].kinki == ("c", "e")
    assert by_id["114A5"].category == "小児科" and by_id["114A1"].kinki == ("e",)
    assert by_id["114A3"].category == "" and by_id["114A3"].kinki == ()
    assert by_id["114B1"].points == 3 and by_id["114B1"].essential and by_id["114B1"].block == "B"
    assert not by_id["114A1"].essential and by_id["114A1"].year == "2020"
    assert by_id["114A1"].source.endswith("114-A.jsonl:1") and by_id["114A5"].source.endswith("114-A.jsonl:5")


def test_english_tiny(igakuqa: Path):
    en = read_igakuqa(igakuqa, [2020], ExamFilter(blocks=["A"]), english=True, overrides=NONE)
    assert [(x.qid, x.question, x.choices[0], x.answers) for x in en] == [
        ("114A1", "English 1", "FEVER", ("c",)),
        ("114A5", "English 5", "FEVER", ("b", "d")),
    ]
    with pytest.raises(DataError, match=r"114-B_translate\.jsonl: no such translation file"):
        read_igakuqa(igakuqa, [2020], ExamFilter(), english=True, overrides=NONE)
    write_jsonl(
        igakuqa / "2020" / "114-B_translate.jsonl",
        [
            {"problem_id": "114B1", "problem_text_en": "E"},
            {"problem_id": "114B2", "problem_text_en": "E2", "choices_en": FIVE[:4]},
        ],
    )
    with pytest.raises(
        DataError,
        match=r"114-B\.jsonl: no record can be read as a question \(2 tried; the first, "
        r".*114-B\.jsonl:1: its translation \(.*114-B_translate\.jsonl:1\) lacks 'choices_en'",
    ):
        read_igakuqa(igakuqa, [2020], ExamFilter(blocks=["B"]), english=True, overrides=NONE)


def test_english_question_without_translation_is_excluded(igakuqa: Path):
    write_jsonl(
        igakuqa / "2020" / "114-B_translate.jsonl",
        [
            {"problem_id": "114B1", "problem_text_en": "English B1", "choices_en": FIVE},
            {"problem_id": "114B2", "problem_text_en": "English B2", "choices_en": FIVE[:4]},
        ],
    )
    write_jsonl(
        igakuqa / "2020" / "114-A_translate.jsonl",
        [{"problem_id": "114A1", "problem_text_en": "English 1", "choices_en": FIVE}],
    )
    got = select_igakuqa(igakuqa, [2020], ExamFilter(), english=True, overrides=NONE)
    assert [x.qid for x in got.questions] == ["114A1", "114B1"]
    assert [(x.qid, x.kind) for x in got.excluded] == [("114A5", "no_translation"), ("114B2", "bad_translation")]
    assert got.excluded[0].source.endswith("114-A.jsonl:5")
    assert "no record in the _translate file" in got.excluded[0].reason
    assert re.search(r"translation \(.*114-B_translate\.jsonl:2\) has 4 choices for the 5", got.excluded[1].reason)


def test_missing_year_names_folder_and_years_found(igakuqa: Path):
    with pytest.raises(DataError) as err:
        read_igakuqa(igakuqa, [2018], ExamFilter())
    assert str(igakuqa / "2018") in str(err.value) and "2019, 2020" in str(err.value)


def test_overrides_accept_and_void(igakuqa: Path, tmp_path: Path):
    path = write_jsonl(
        tmp_path / "fix.jsonl",
        [
            {"problem_id": "114A1", "accept": [["a"], ["D"]], "note": "key corrected"},
            {"problem_id": "114B2", "void": True},
        ],
    )
    overrides = load_overrides(path)
    assert overrides.notes["114A1"] == "key corrected" and overrides.sources["114B2"] == f"{path}:2"
    by_id = {x.qid: x for x in read_igakuqa(igakuqa, [2020], ExamFilter(), overrides=overrides)}
    assert by_id["114A1"].answers == ("a",) and by_id["114A1"].accepted == (("d",),)
    assert by_id["114B2"].voided and by_id["114B2"].answers == ("a",)
    assert not by_id["114B1"].voided and by_id["114B1"].accepted == ()
    generic = read_exam_jsonl(igakuqa / "2020" / "114-B.jsonl", FieldMapping(), ExamFilter(), overrides)
    assert [x.voided for x in generic] == [False, True]


def test_bundled_overrides():
    bundled = load_overrides(None)
    assert bundled.accept == {"112B30": (("a",), ("d",))} and bundled.void == {"116A71"}
    assert bundled.notes["112B30"] and bundled.notes["116A71"]


@pytest.mark.parametrize(
    "line, problem",
    [
        ({"problem_id": "X1", "accept": "a"}, "non-empty list of non-empty answer sets"),
        ({"problem_id": "X1", "accept": [[]]}, "non-empty list of non-empty answer sets"),
        ({"problem_id": "X1", "accept": [["a"]], "void": True}, "not both or neither"),
        ({"problem_id": "X1", "note": "nothing to do"}, "not both or neither"),
        ({"problem_id": "X1", "void": False}, "not both or neither"),
        ({"accept": [["a"]]}, "missing 'problem_id'"),
        ({"problem_id": "X1", "acept": [["a"]]}, "unknown field 'acept'"),
        ({"problem_id": "114A1", "void": True}, "already overridden at .*fix.jsonl:1"),
    ],
)
def test_malformed_override_line(tmp_path: Path, line: dict, problem: str):
    path = write_jsonl(tmp_path / "fix.jsonl", [{"problem_id": "114A1", "void": True}, line])
    with pytest.raises(DataError, match=rf"fix\.jsonl:2: .*{problem}"):
        load_overrides(path)


def test_override_letter_outside_choices(igakuqa: Path, tmp_path: Path):
    path = write_jsonl(tmp_path / "fix.jsonl", [{"problem_id": "114A1", "accept": [["f"]]}])
    with pytest.raises(DataError, match=r"fix\.jsonl:1 \(override of 114A1.*'f' is not one of the 5 choice letters"):
        read_igakuqa(igakuqa, [2020], ExamFilter(), overrides=load_overrides(path))


# ---------------------------------------------------------------- the generic reader


def test_generic_reader_with_custom_fields(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "custom.jsonl",
        [
            {"id": 7, "q": "Pick one", "opts": FIVE, "gold": "C"},
            {"q": "Pick two", "opts": FIVE, "gold": "a,c", "score": 2.0},
            {"id": "x3", "q": "Pick one", "opts": FIVE, "gold": ["b"], "img": False},
            {"id": "x4", "q": "How many?", "opts": [], "gold": "12"},
            {"id": "x5", "q": "Either", "opts": FIVE, "gold": ["a or d"]},
        ],
    )
    fields = FieldMapping(id="id", question="q", choices="opts", answer="gold", points="score", text_only="img")
    got = read_exam_jsonl(path, fields, ExamFilter.everything(), NONE)
    assert [x.qid for x in got] == ["7", "custom:2", "x3", "x4", "x5"]
    assert [x.answers for x in got] == [("c",), ("a", "c"), ("b",), ("12",), ("a",)]
    assert got[4].accepted == (("d",),) and got[3].is_numeric
    assert [x.points for x in got] == [1, 2, 1, 1, 1] and [x.text_only for x in got] == [True, True, False, True, True]
    assert [x.qid for x in read_exam_jsonl(path, fields, ExamFilter(), NONE)] == ["7", "custom:2", "x5"]


def test_generic_reader_reads_a_folder(igakuqa: Path):
    got = read_exam_jsonl(igakuqa / "2020", FieldMapping(), ExamFilter.everything(), NONE)
    assert [x.qid for x in got][:2] == ["114A1", "114A2"] and len(got) == 7  # side files skipped


GOOD = {"q": "Fine", "opts": FIVE, "gold": "a"}
QOG = FieldMapping(question="q", choices="opts", answer="gold")


@pytest.mark.parametrize(
    "record, kind, reason",
    [
        ({"q": "Pick", "opts": FIVE}, "missing_answer", r"missing field 'gold' \(the answer\).*exam\.fields\.answer"),
        (
            {"gold": "a", "opts": FIVE},
            "missing_question",
            r"missing field 'q' \(the question\).*exam\.fields\.question",
        ),
        ({"q": "Pick", "gold": "a"}, "missing_choices", r"missing field 'opts' \(the choices\)"),
        (
            {"q": "Pick", "opts": FIVE, "gold": "f"},
            "answer_outside_choices",
            r"^answer 'f' \('gold'\) is not one of the 5 choice letters \(a-e\)$",
        ),
        (
            {"q": "Pick", "opts": FIVE, "gold": "a or z"},
            "answer_outside_choices",
            r"answer 'z' \('gold'\) is not one of",
        ),
        ({"q": "Pick", "opts": FIVE, "gold": "3"}, "unparsable_answer", r"answer '3' \('gold'\) is not one of the 5"),
        ({"q": "Pick", "opts": FIVE, "gold": "b?"}, "unparsable_answer", r"answer 'b\?' \('gold'\) is not one"),
        ({"q": "Pick", "opts": FIVE, "gold": []}, "empty_answer", r"^the answer \('gold'\) is empty$"),
        ({"q": "Pick", "opts": FIVE, "gold": " "}, "empty_answer", r"the answer \('gold'\) is empty"),
        ({"q": "Pick", "opts": FIVE, "gold": None}, "empty_answer", r"the answer \('gold'\) is empty"),
        ({"q": "Pick", "opts": FIVE, "gold": "a or"}, "empty_answer", r"^the answer \('gold'\) is empty$"),
        (
            {"q": "How many?", "opts": [], "gold": "many"},
            "unparsable_answer",
            r"answer 'many' \('gold'\) is not a number, and the question has no choices",
        ),
        (
            {"q": " ", "opts": FIVE, "gold": "a"},
            "empty_question",
            r"question text \('q'\) is empty \(a figure-only question\?\)",
        ),
        ({"q": None, "opts": FIVE, "gold": "a"}, "empty_question", r"question text \('q'\) is empty"),
        ({"q": ["Pick"], "opts": FIVE, "gold": "a"}, "bad_question", r"question text \('q'\) is a list, not text"),
        ({"q": 12, "opts": FIVE, "gold": "a"}, "bad_question", r"question text \('q'\) is a int, not text"),
        ({"q": "Pick", "opts": "a,b", "gold": "a"}, "bad_choices", r"'opts' is a str, expected a list"),
        (
            {"q": "Pick", "opts": [["x"], "y"], "gold": "a"},
            "bad_choices",
            r"'opts' is a list, expected a list of strings",
        ),
        ({"q": "Pick", "opts": FIVE, "gold": "a", "points": "x"}, "bad_points", r"points \('points'\) is 'x'"),
        # "NA" is not the letters n and a: the key says the question has none
        (
            {"q": "Pick", "opts": FIVE, "gold": "NA"},
            "no_answer_key",
            r"'gold' is 'NA': the record says it has no answer key",
        ),
        ({"q": "Pick", "opts": FIVE, "gold": "N/A"}, "no_answer_key", r"cannot be scored and is left out"),
        ({"q": "Pick", "opts": FIVE, "gold": " なし "}, "no_answer_key", r"no answer key"),
        (
            {"q": "Pick", "opts": FIVE, "gold": "a", "text_only": "yes"},
            "bad_text_only",
            r"'text_only' is 'yes', expected true or false",
        ),
    ],
)
def test_a_bad_question_is_excluded_with_its_reason(tmp_path: Path, record: dict, kind: str, reason: str):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, record, {**GOOD, "gold": "b"}])
    got = select_exam_jsonl(path, QOG, ExamFilter.everything(), NONE)
    assert [x.qid for x in got.questions] == ["bad:1", "bad:3"]
    (excluded,) = got.excluded
    assert (excluded.qid, excluded.source, excluded.kind) == ("bad:2", f"{path}:2", kind)
    assert re.search(reason, excluded.reason), excluded.reason
    assert kind in REASON_KINDS
    assert [x.qid for x in read_exam_jsonl(path, QOG, ExamFilter.everything(), NONE)] == ["bad:1", "bad:3"]


def test_excluded_question_keeps_its_id_and_file_order(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "exam.jsonl",
        [q("A1", ["f"]), q("A2", ["a"]), q("A3", [], text=""), q("A4", ["b"]), q("A5", ["c"], choices=[""] * 5)],
    )
    got = select_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE)
    assert [x.qid for x in got.questions] == ["A2", "A4"]
    assert [(x.qid, x.kind) for x in got.excluded] == [
        ("A1", "answer_outside_choices"),
        ("A3", "empty_question"),
        ("A5", "blank_choices"),
    ]
    assert [x.source for x in got.excluded] == [f"{path}:1", f"{path}:3", f"{path}:5"]
    assert select_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE) == got  # deterministic


def test_blank_choice_texts_excluded_or_kept_for_letters(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "exam.jsonl",
        [
            q("B1", ["a"]),
            q("B2", ["c"], choices=["", "", "", "", ""]),
            q("B3", ["d"]),
            q("B4", ["a"], choices=["fever", "", None, "rash"]),
            q("B5", ["b"], choices=["x", " "]),
        ],
    )
    needs_text = select_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE)
    assert [x.qid for x in needs_text.questions] == ["B1", "B3"]
    assert [(x.qid, x.reason) for x in needs_text.excluded] == [
        ("B2", "choice texts a-e are blank (printed in a figure?)"),
        ("B4", "choice texts b, c are blank (of a-d)"),
        ("B5", "choice text b is blank (of a-b)"),
    ]
    assert {x.kind for x in needs_text.excluded} == {"blank_choices"}
    letters_only = select_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE, needs_choice_text=False)
    assert [x.qid for x in letters_only.questions] == ["B1", "B2", "B3", "B4", "B5"] and letters_only.excluded == []
    b2 = letters_only.questions[1]
    assert b2.choices == ("",) * 5 and b2.answers == ("c",) and letters_only.questions[3].choices[2] == ""
    assert score_letters(b2, ["c"]).status is Status.correct and score_letters(b2, ["a"]).status is Status.wrong
    assert score_letters(b2, ["f"]).status is Status.invalid


def test_blank_choices_in_an_igakuqa_year(igakuqa: Path):
    """The issue: a later year with one question whose choices are printed in a figure."""
    write_jsonl(
        igakuqa / "2021" / "115-A.jsonl",
        [q("115A1", ["a"]), q("115A2", ["b"], choices=[""] * 5, text_only=False), q("115A3", ["c"], choices=[""] * 5)],
    )
    write_jsonl(
        igakuqa / "2021" / "115-A_metadata.jsonl", [{"problem_id": "115A3", "kinki": ["e"], "category": "内科"}]
    )
    paper = select_igakuqa(igakuqa, [2021], ExamFilter(), overrides=NONE)
    assert [x.qid for x in paper.questions] == ["115A1"]
    assert [(x.qid, x.reason) for x in paper.excluded] == [
        ("115A3", "choice texts a-e are blank (printed in a figure?)")
    ]
    replay = select_igakuqa(igakuqa, [2021], ExamFilter.everything(), overrides=NONE, needs_choice_text=False)
    assert [x.qid for x in replay.questions] == ["115A1", "115A2", "115A3"] and replay.excluded == []
    assert replay.questions[2].kinki == ("e",) and replay.questions[2].category == "内科"
    assert [x.qid for x in read_igakuqa(igakuqa, [2020, 2021], ExamFilter(), overrides=NONE)] == [
        "114A1",
        "114A5",
        "114B1",
        "114B2",
        "115A1",
    ]


def test_filters_select_and_are_not_exclusions(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "exam.jsonl",
        [
            q("F1", ["a"]),
            q("F2", ["z"], text_only=False),  # broken, but text_only drops it anyway
            {**q("F3", "a", choices=[]), "answer": "many"},  # broken, but require_choices drops it anyway
            q("F4", ["a", "b", "c"], choices=[""] * 5),  # blank choices, but max_answers=2 drops it anyway
            q("F5", ["b"]),
            q("F6", ["q"]),  # broken, selected: excluded
            q("F7", ["c"]),
            q("F8", ["z"]),  # after the max_questions=3rd question: not reached
        ],
    )
    got = select_exam_jsonl(path, FieldMapping(), ExamFilter(max_questions=3), NONE)
    assert [x.qid for x in got.questions] == ["F1", "F5", "F7"]
    assert [x.qid for x in got.excluded] == ["F6"]
    everything = select_exam_jsonl(path, FieldMapping(), ExamFilter.everything(), NONE)
    assert [x.qid for x in everything.excluded] == ["F2", "F3", "F4", "F6", "F8"]


def test_an_answer_override_does_not_rescue_a_broken_record(tmp_path: Path):
    path = write_jsonl(tmp_path / "exam.jsonl", [q("O1", ["a"]), q("O2", ["z"])])
    fix = write_jsonl(tmp_path / "fix.jsonl", [{"problem_id": "O2", "accept": [["b"]]}])
    got = select_exam_jsonl(path, FieldMapping(), ExamFilter(), load_overrides(fix))
    assert [x.qid for x in got.questions] == ["O1"] and [x.qid for x in got.excluded] == ["O2"]


def test_a_file_with_no_readable_question_is_refused(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "results.jsonl", [{"problem_id": "X1", "prediction": "a"}, {"problem_id": "X2", "prediction": "b"}]
    )
    with pytest.raises(
        DataError,
        match=r"results\.jsonl: no record can be read as a question \(2 tried; the first, "
        r".*results\.jsonl:1: missing field 'problem_text'.*\); fix the records, or .*exam\.fields",
    ):
        select_exam_jsonl(path, FieldMapping(), ExamFilter.everything(), NONE)
    write_jsonl(tmp_path / "folder" / "good.jsonl", [q("G1", ["a"])])
    write_jsonl(tmp_path / "folder" / "stray.jsonl", [{"problem_id": "X1", "prediction": "a"}])
    with pytest.raises(DataError, match=r"stray\.jsonl: no record can be read as a question"):
        select_exam_jsonl(tmp_path / "folder", FieldMapping(), ExamFilter(), NONE)


def test_every_selected_question_excluded_is_refused(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "figures.jsonl",
        [q("P1", ["a"], choices=[""] * 5), q("P2", ["b"], choices=[""] * 5), q("P3", ["a", "b", "c"])],
    )
    with pytest.raises(
        DataError,
        match=r"figures\.jsonl: every question the filters select has a problem of its data "
        r"\(2 excluded; the first, .*figures\.jsonl:1: choice texts a-e are blank",
    ):
        select_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE)
    letters_only = select_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE, needs_choice_text=False)
    assert [x.qid for x in letters_only.questions] == ["P1", "P2"]


def test_bad_json_duplicate_ids_and_missing_path(tmp_path: Path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(q("A1", "a")) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl:2: not valid JSON"):
        read_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE)
    write_jsonl(path, [q("A1", "a"), q("A1", "b")])
    with pytest.raises(DataError, match=r"broken\.jsonl:2: problem_id 'A1' is already used at .*broken\.jsonl:1"):
        read_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE)
    write_jsonl(path, [q("A1", "a"), q("A2", "a"), q("A1", "z", choices=[""] * 5)])  # a broken duplicate too
    with pytest.raises(DataError, match=r"broken\.jsonl:3: problem_id 'A1' is already used at .*broken\.jsonl:1"):
        select_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE, needs_choice_text=False)
    write_jsonl(path, [q("A1", "a"), q("A2", "f")])
    path.write_text(path.read_text() + "[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl:3: a list, expected a JSON object per line"):
        select_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE)
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl: the file is empty"):
        select_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE)
    with pytest.raises(DataError, match="no such file or folder"):
        read_exam_jsonl(tmp_path / "absent.jsonl", FieldMapping(), ExamFilter(), NONE)


def test_bad_kinki_excludes_its_question_naming_the_metadata_line(igakuqa: Path):
    write_jsonl(igakuqa / "2020" / "114-B_metadata.jsonl", [{"problem_id": "114B2", "kinki": ["z"]}])
    got = select_igakuqa(igakuqa, [2020], ExamFilter(), overrides=NONE)
    assert [x.qid for x in got.questions] == ["114A1", "114A5", "114B1"]
    (excluded,) = got.excluded
    assert excluded.qid == "114B2" and excluded.kind == "bad_kinki" and excluded.source.endswith("114-B.jsonl:2")
    assert re.search(
        r"^kinki 'z' \(.*114-B_metadata\.jsonl:1\) is not one of the 5 choice letters \(a-e\)$", excluded.reason
    )


# ---------------------------------------------------------------- shuffling and the sample exam


def test_shuffle_is_seeded_and_answers_follow_their_text(igakuqa: Path):
    questions = read_igakuqa(igakuqa, [2020], ExamFilter.everything(), overrides=NONE)
    questions[0] = questions[0].__class__(**{**questions[0].__dict__, "accepted": (("a", "b"),)})
    once, again, other = (shuffle_choices(questions, s) for s in (1, 1, 2))
    assert once == again and once != other
    assert len({x.choices for x in once if not x.is_numeric}) > 1  # a different order per question
    for before, after in [(b, a) for b, a in zip(questions, once) if not b.is_numeric]:
        assert sorted(after.choices) == sorted(before.choices) and after.qid == before.qid
        for letters_before, letters_after in [
            (before.answers, after.answers),
            (before.kinki, after.kinki),
            *zip(before.accepted, after.accepted),
        ]:
            text = lambda x, ls: sorted(x.choice_of(label) for label in ls)
            assert text(before, letters_before) == text(after, letters_after)
    numeric = next(x for x in questions if x.is_numeric)
    assert [x for x in once if x.qid == numeric.qid] == [numeric]


def test_sample_exam():
    sample = read_sample_exam()
    assert len(sample) == 40
    assert Counter(x.source.rsplit(":", 1)[0].rsplit("/", 1)[-1] for x in sample) == {
        "exam_ja.jsonl": 24,
        "exam_en.jsonl": 16,
    }
    assert all(x.explanation and x.answers and x.choices for x in sample)
    assert len({x.qid for x in sample}) == 40


def test_sample_exam_has_nothing_excluded():
    assert select_sample_exam().excluded == [] and select_sample_exam(ExamFilter()).excluded == []


# ---------------------------------------------------------------- the exam config and the summary


def test_select_exam_from_config_and_the_summary(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "exam.jsonl",
        [
            q("C1", ["a"]),
            q("C2", ["c"], choices=[""] * 5),
            q("C3", ["f"]),
            {"problem_text": "No answer", "choices": FIVE},
            q("C5", ["b"]),
        ],
    )
    exam = ExamConfig(name="mine", format=ExamFormat.jsonl, path=str(path), shuffle_choices=True)
    got = select_exam(exam)
    assert [x.qid for x in got.questions] == ["C1", "C5"] and [x.qid for x in load_exam(exam)] == ["C1", "C5"]
    assert [x.qid for x in select_exam(exam, needs_choice_text=False).questions] == ["C1", "C2", "C5"]
    summary = exclusion_summary(got.excluded)
    assert summary == {
        "n": 3,
        "by_reason": {"answer_outside_choices": 1, "blank_choices": 1, "missing_answer": 1},
        "questions": [
            {
                "id": "C2",
                "source": f"{path}:2",
                "reason": "choice texts a-e are blank (printed in a figure?)",
                "kind": "blank_choices",
            },
            {"id": "C3", "source": f"{path}:3", "reason": got.excluded[1].reason, "kind": "answer_outside_choices"},
            {"id": "exam:4", "source": f"{path}:4", "reason": got.excluded[2].reason, "kind": "missing_answer"},
        ],
    }
    assert json.loads(json.dumps(summary)) == summary
    assert exclusion_summary([]) == {"n": 0, "by_reason": {}, "questions": []}
    assert exclusion_summary([ExcludedQuestion("x", "f:1", "why")])["by_reason"] == {"other": 1}


def test_select_exam_igakuqa_config_finds_years(igakuqa: Path, tmp_path: Path):
    # The paper's subset, as conf/exam/igakuqa.yaml sets it (ExamConfig's own defaults keep every question).
    exam = ExamConfig(
        name="igakuqa",
        format=ExamFormat.igakuqa,
        path=str(igakuqa),
        answer_overrides=None,
        text_only=True,
        max_answers=2,
        require_choices=True,
    )
    assert [x.year for x in select_exam(exam).questions] == ["2019"] + ["2020"] * 4
    with pytest.raises(DataError, match=r"absent: no such IgakuQA folder; point exam\.path"):
        select_exam(ExamConfig(name="igakuqa", format=ExamFormat.igakuqa, path=str(tmp_path / "absent")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no year folders"):
        select_exam(ExamConfig(name="igakuqa", format=ExamFormat.igakuqa, path=str(tmp_path / "empty")))


def test_shared_igakuqa_2018_has_nothing_excluded():
    assert select_igakuqa(shared("igakuqa"), [2018], ExamFilter.everything()).excluded == []


def test_shared_a_later_year_with_choices_in_a_figure(tmp_path: Path):
    """The real 112-A block as a later year in which one question's choices are printed in a figure."""
    lines = shared("igakuqa", "2018", "112-A.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    records[9]["choices"] = [""] * len(records[9]["choices"])
    write_jsonl(tmp_path / "igakuqa" / "2030" / "112-A.jsonl", records)
    everything = select_igakuqa(tmp_path / "igakuqa", [2030], ExamFilter.everything(), overrides=NONE)
    assert len(everything.questions) == 74 and [x.qid for x in everything.excluded] == ["112A10"]
    assert everything.excluded[0].reason == "choice texts a-e are blank (printed in a figure?)"
    replay = select_igakuqa(
        tmp_path / "igakuqa", [2030], ExamFilter.everything(), overrides=NONE, needs_choice_text=False
    )
    assert len(replay.questions) == 75 and replay.excluded == []


def test_a_question_with_thirty_choices_loads_with_numbered_labels_and_scores(tmp_path):
    """Past 26 choices the labels are numbers: nothing indexes past z (it used to raise IndexError)."""
    from medtune.data.readers import format_choices
    from medtune.exam.jsonl_exam import select_exam_jsonl
    from medtune.exam.records import FieldMapping
    from medtune.exam.scoring import score_response

    choices = [f"option number {i}" for i in range(1, 31)]
    path = tmp_path / "wide.jsonl"
    path.write_text(
        json.dumps({"problem_id": "W-1", "problem_text": "Pick one.", "choices": choices, "answer": ["27"]}) + "\n",
        encoding="utf-8",
    )
    selection = select_exam_jsonl(path, FieldMapping(), ExamFilter.everything())
    (question,) = selection.questions
    assert question.answers == ("27",) and not selection.excluded
    assert "27. option number 27" in format_choices(choices)
    assert score_response(question, "Answer: 27. option number 27").status.value == "correct"
    assert score_response(question, "Answer: 3").status.value == "wrong"
