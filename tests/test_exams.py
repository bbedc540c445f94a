"""Tests of the exam readers: IgakuQA folders, generic JSONL exams, answer-key overrides, shuffling.

The `shared` tests read the real IgakuQA / JJSIMQA / MedQA files under $MEDTUNE_SHARED/data (default
../shared next to the repo) and skip when they are absent; the rest run on small files written under
`tmp_path` and on the bundled sample exam. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from medtune.errors import DataError
from medtune.evaluation.exams import (
    AnswerOverrides,
    ExamFilter,
    FieldMapping,
    load_overrides,
    read_exam_jsonl,
    read_igakuqa,
    read_sample_exam,
    shuffle_choices,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / os.environ.get("MEDTUNE_SHARED", "../shared")).resolve() / "data"
FIVE = ["fever", "cough", "rash", "headache", "nausea"]
NONE = AnswerOverrides()


def write_jsonl(path: Path, items: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    return path


def q(pid: str, answer, choices=FIVE, text_only=True, points="1", text="Which is a symptom?") -> dict:
    return {"problem_id": pid, "problem_text": text, "choices": choices, "text_only": text_only,
            "answer": answer, "points": points}


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
    assert len(jj) == 460 and all(x.points == 1 for x in jj)
    assert [x.answers for x in jj if x.qid == "107_888-26"] == [("d", "e")]  # written ["d", ",", "e"]
    medqa = read_exam_jsonl(shared("medqa_en", "medqa_en.jsonl"), FieldMapping(), ExamFilter())
    assert len(medqa) == 1273 and medqa[0].qid == "0"


# ---------------------------------------------------------------- a tiny IgakuQA folder


@pytest.fixture()
def igakuqa(tmp_path: Path) -> Path:
    root = tmp_path / "igakuqa"
    write_jsonl(root / "2020" / "114-A.jsonl", [
        q("114A1", ["c"]),
        q("114A2", ["b"], text_only=False),
        q("114A3", ["a", "b", "c"]),
        q("114A4", ["12"], choices=[]),
        q("114A5", ["B", "D"]),
    ])
    write_jsonl(root / "2020" / "114-A_metadata.jsonl", [
        {"problem_id": "114A1", "category": "内科", "kinki": ["ｅ"]},
        {"problem_id": "114A5", "category": "小児科", "kinki": ["ce"]},
    ])
    write_jsonl(root / "2020" / "114-A_translate.jsonl", [
        {"problem_id": f"114A{i}", "problem_text_en": f"English {i}", "choices_en": [c.upper() for c in FIVE]}
        for i in (1, 2, 3, 5)
    ] + [{"problem_id": "114A4", "problem_text_en": "English 4", "choices_en": [], "answer": ["12"]}])
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
        ("114A1", "English 1", "FEVER", ("c",)), ("114A5", "English 5", "FEVER", ("b", "d"))]
    with pytest.raises(DataError, match=r"114-B_translate\.jsonl: no such translation file"):
        read_igakuqa(igakuqa, [2020], ExamFilter(), english=True, overrides=NONE)
    write_jsonl(igakuqa / "2020" / "114-B_translate.jsonl", [{"problem_id": "114B1", "problem_text_en": "E"}])
    with pytest.raises(DataError, match=r"114-B_translate\.jsonl:1: missing field 'choices_en'"):
        read_igakuqa(igakuqa, [2020], ExamFilter(blocks=["B"]), english=True, overrides=NONE)


def test_missing_year_names_folder_and_years_found(igakuqa: Path):
    with pytest.raises(DataError) as err:
        read_igakuqa(igakuqa, [2018], ExamFilter())
    assert str(igakuqa / "2018") in str(err.value) and "2019, 2020" in str(err.value)


def test_overrides_accept_and_void(igakuqa: Path, tmp_path: Path):
    path = write_jsonl(tmp_path / "fix.jsonl", [
        {"problem_id": "114A1", "accept": [["a"], ["D"]], "note": "key corrected"},
        {"problem_id": "114B2", "void": True},
    ])
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


@pytest.mark.parametrize("line, problem", [
    ({"problem_id": "X1", "accept": "a"}, "non-empty list of non-empty answer sets"),
    ({"problem_id": "X1", "accept": [[]]}, "non-empty list of non-empty answer sets"),
    ({"problem_id": "X1", "accept": [["a"]], "void": True}, "not both or neither"),
    ({"problem_id": "X1", "note": "nothing to do"}, "not both or neither"),
    ({"problem_id": "X1", "void": False}, "not both or neither"),
    ({"accept": [["a"]]}, "missing 'problem_id'"),
    ({"problem_id": "X1", "acept": [["a"]]}, "unknown field 'acept'"),
    ({"problem_id": "114A1", "void": True}, "already overridden at .*fix.jsonl:1"),
])
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
    path = write_jsonl(tmp_path / "custom.jsonl", [
        {"id": 7, "q": "Pick one", "opts": FIVE, "gold": "C"},
        {"q": "Pick two", "opts": FIVE, "gold": "a,c", "score": 2.0},
        {"id": "x3", "q": "Pick one", "opts": FIVE, "gold": ["b"], "img": False},
        {"id": "x4", "q": "How many?", "opts": [], "gold": "12"},
        {"id": "x5", "q": "Either", "opts": FIVE, "gold": ["a or d"]},
    ])
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


@pytest.mark.parametrize("record, problem", [
    ({"q": "Pick", "opts": FIVE}, r"missing field 'gold' \(the answer\).*FieldMapping\.answer"),
    ({"gold": "a", "opts": FIVE}, r"missing field 'q' \(the question\).*FieldMapping\.question"),
    ({"q": "Pick", "opts": FIVE, "gold": "f"}, r"'f' is not one of the 5 choice letters \(a–e\)"),
    ({"q": "Pick", "opts": FIVE, "gold": "3"}, r"'3' is not one of the 5 choice letters"),
    ({"q": "Pick", "opts": FIVE, "gold": []}, r"the answer \('gold'\) is empty"),
    ({"q": "Pick", "opts": FIVE, "gold": " "}, r"the answer \('gold'\) is empty"),
    ({"q": "How many?", "opts": [], "gold": "many"}, r"'many' \('gold'\) is not a number"),
    ({"q": " ", "opts": FIVE, "gold": "a"}, r"question text \('q'\) is empty"),
    ({"q": "Pick", "opts": "a,b", "gold": "a"}, r"'opts' is a str, expected a list"),
    ({"q": "Pick", "opts": FIVE, "gold": "a", "points": "x"}, r"points \('points'\) is 'x'"),
    ({"q": "Pick", "opts": FIVE, "gold": "a", "text_only": "yes"}, r"'text_only' is 'yes', expected true or false"),
])
def test_bad_input_names_file_line_and_problem(tmp_path: Path, record: dict, problem: str):
    good = {"q": "Fine", "opts": FIVE, "gold": "a"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, record])
    with pytest.raises(DataError, match=rf"bad\.jsonl:2: .*{problem}"):
        read_exam_jsonl(path, FieldMapping(question="q", choices="opts", answer="gold"), ExamFilter(), NONE)


def test_bad_json_duplicate_ids_and_missing_path(tmp_path: Path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(q("A1", "a")) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl:2: not valid JSON"):
        read_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE)
    write_jsonl(path, [q("A1", "a"), q("A1", "b")])
    with pytest.raises(DataError, match=r"broken\.jsonl:2: problem_id 'A1' is already used at .*broken\.jsonl:1"):
        read_exam_jsonl(path, FieldMapping(), ExamFilter(), NONE)
    with pytest.raises(DataError, match="no such file or folder"):
        read_exam_jsonl(tmp_path / "absent.jsonl", FieldMapping(), ExamFilter(), NONE)


def test_bad_kinki_names_metadata_line(igakuqa: Path):
    write_jsonl(igakuqa / "2020" / "114-B_metadata.jsonl", [{"problem_id": "114B2", "kinki": ["z"]}])
    with pytest.raises(DataError, match=r"114-B_metadata\.jsonl:1: kinki: 'z' is not one of the 5 choice letters"):
        read_igakuqa(igakuqa, [2020], ExamFilter(), overrides=NONE)


# ---------------------------------------------------------------- shuffling and the sample exam


def test_shuffle_is_seeded_and_answers_follow_their_text(igakuqa: Path):
    questions = read_igakuqa(igakuqa, [2020], ExamFilter.everything(), overrides=NONE)
    questions[0] = questions[0].__class__(**{**questions[0].__dict__, "accepted": (("a", "b"),)})
    once, again, other = (shuffle_choices(questions, s) for s in (1, 1, 2))
    assert once == again and once != other
    assert len({x.choices for x in once if not x.is_numeric}) > 1  # a different order per question
    for before, after in [(b, a) for b, a in zip(questions, once) if not b.is_numeric]:
        assert sorted(after.choices) == sorted(before.choices) and after.qid == before.qid
        for letters_before, letters_after in [(before.answers, after.answers), (before.kinki, after.kinki),
                                              *zip(before.accepted, after.accepted)]:
            text = lambda x, ls: sorted(x.choice_of(l) for l in ls)
            assert text(before, letters_before) == text(after, letters_after)
    numeric = next(x for x in questions if x.is_numeric)
    assert [x for x in once if x.qid == numeric.qid] == [numeric]


def test_sample_exam():
    sample = read_sample_exam()
    assert len(sample) == 40
    assert Counter(x.source.rsplit(":", 1)[0].rsplit("/", 1)[-1] for x in sample) == {
        "exam_ja.jsonl": 24, "exam_en.jsonl": 16}
    assert all(x.explanation and x.answers and x.choices for x in sample)
    assert len({x.qid for x in sample}) == 40
