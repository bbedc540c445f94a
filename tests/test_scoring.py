"""Tests of answer parsing and scoring (Algorithm 1) and of the aggregate metrics.

Every response is hand-written the way models answer: a bare label, "e. text", full-width and
circled labels, choice text alone, a long chain of thought ending in the final answer, lists of
two answers in several notations, and answers that must come out invalid.
"""

from __future__ import annotations

import difflib

import pytest
from rapidfuzz import fuzz

from medtune.exam.aggregation import aggregate
from medtune.exam.answer_location import answer_segment
from medtune.exam.parsing import split_parts
from medtune.exam.scoring import (
    score_letters,
    score_response,
    similarity_fn,
)
from medtune.reporting.intervals import wilson
from medtune.vocabulary import ExamQuestion, ScoredAnswer, Similarity, Status

UREA_CYCLE = ExamQuestion(
    qid="T-01",
    question="新生児の高アンモニア血症の原因として最も考えられるのはどれか。",
    choices=(
        "フェニルケトン尿症",
        "メープルシロップ尿症",
        "ガラクトース血症",
        "ホモシスチン尿症",
        "オルニチントランスカルバミラーゼ欠損症",
    ),
    answers=("e",),
)
MANHOLE = ExamQuestion(
    qid="T-02",
    question="マンホール内で作業中に意識を失った。最も考えられるのはどれか。",
    choices=("一酸化炭素中毒", "シアン中毒", "酸素欠乏症", "硫化水素中毒", "熱中症"),
    answers=("c",),
)
TWO_GASES = ExamQuestion(
    qid="T-03",
    question="下水処理場の槽内作業で起こりやすいのはどれか。2つ選べ。",
    choices=("酸素欠乏症", "一酸化炭素中毒", "硫化水素中毒", "シアン中毒", "熱中症"),
    answers=("a", "c"),
)
ABDOMEN = ExamQuestion(
    qid="T-04",
    question="A 45-year-old woman has right upper quadrant pain after a fatty meal. Most likely diagnosis?",
    choices=("Acute pancreatitis", "Acute cholecystitis", "Appendicitis", "Diverticulitis", "Peptic ulcer"),
    answers=("b",),
)
NUMERIC = ExamQuestion(qid="T-05", question="BMIを求めよ。", choices=(), answers=("12",))
DECIMAL = ExamQuestion(qid="T-06", question="小数第1位まで求めよ。", choices=(), answers=("3.5",))
VOIDED = ExamQuestion("T-07", "(不適切問題)", MANHOLE.choices, answers=("a",), voided=True)
CORRECTED = ExamQuestion("T-08", "(正解訂正)", MANHOLE.choices, answers=("a",), accepted=(("d",),))
SYMPTOMS = ExamQuestion(
    qid="T-09",
    question="硫化水素中毒の症状はどれか。2つ選べ。",
    choices=("めまい・ふらつき", "徐脈", "眼の刺激、流涙", "多尿", "発疹"),
    answers=("a", "c"),
)

LONG_COT = """この患者はマンホール内での作業中に意識を失っている。選択肢を順に検討する。
a の一酸化炭素中毒は、閉鎖空間での燃焼がなければ考えにくい。
b のシアン中毒は、工場での曝露歴がないため否定的である。
d の硫化水素中毒では腐卵臭を伴うことが多いが、その記載はない。
e の熱中症は、高温環境の記載がないので除外できる。
以上より、換気の悪い地下空間で酸素濃度が低下したと考えるのが最も自然である。
答え: c"""

ENGLISH_COT = """Option A would give epigastric pain radiating to the back and a raised lipase.
Option C starts periumbilical; D is usually left-sided; E is not tied to fatty meals.
Right upper quadrant pain after a fatty meal with a positive Murphy sign fits the gallbladder.
The answer is (b)."""


def check(question: ExamQuestion, response: str, status: Status, parsed: tuple[str, ...], **kwargs) -> ScoredAnswer:
    """Score `response` and assert what it was read as and how it was judged."""
    scored = score_response(question, response, **kwargs)
    assert (scored.status, scored.parsed) == (status, parsed), scored
    return scored


# --- one answer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        "e",
        "e. オルニチントランスカルバミラーゼ欠損症",
        "ｅ",
        "E",
        "⑤",
        "(e)",
        "（ｅ）",
        "答え：ｅ。",
        "正解はeです。",
        "**Answer:** E",
        "Đáp án: E",
    ],
)
def test_single_answer_label_forms(response):
    check(UREA_CYCLE, response, Status.correct, ("e",))


def test_choice_text_without_label_is_matched_by_similarity():
    scored = check(UREA_CYCLE, "オルニチントランスカルバミラーゼ欠損", Status.correct, ("e",))
    assert scored.similarities["e"] == max(scored.similarities.values()) > 0.9
    assert scored.similarities["a"] < 0.5


def test_long_japanese_chain_of_thought_reads_only_the_final_answer():
    scored = check(MANHOLE, LONG_COT, Status.correct, ("c",))
    assert scored.answer_text == "c"


def test_english_answer_is_parenthesised_letter():
    scored = check(ABDOMEN, ENGLISH_COT, Status.correct, ("b",))
    assert scored.answer_text == "(b)"
    check(ABDOMEN, "Final answer: **A**", Status.wrong, ("a",))
    # A capital that starts a word is not a label: "Acute cholecystitis" is choice text.
    check(ABDOMEN, "Answer: Acute cholecystitis", Status.correct, ("b",))


def test_choice_text_that_starts_like_a_label_is_read_as_text():
    lymphoma = ExamQuestion("T-12", "?", ("B cell lymphoma", "T cell lymphoma", "Hodgkin lymphoma"), ("a",))
    check(lymphoma, "B cell lymphoma", Status.correct, ("a",))
    check(lymphoma, "B. T cell lymphoma", Status.wrong, ("b",))


def test_answer_marker_at_the_end_of_the_line_reads_the_text_before_it():
    check(MANHOLE, "換気不良の空間なので、cが正解。", Status.correct, ("c",))


def test_explanation_after_the_final_label_does_not_add_answers():
    check(MANHOLE, "答え: c\nこれは酸素濃度の低下によるものである。", Status.correct, ("c",))


def test_wrong_single_answer_says_why():
    scored = check(MANHOLE, "答え: d", Status.wrong, ("d",))
    assert scored.reason == "read as d, the answer is c"


def test_threshold_is_a_keyword_argument():
    check(MANHOLE, "酸素欠乏", Status.correct, ("c",))
    check(MANHOLE, "酸素欠乏", Status.invalid, (), threshold=0.95)


# --- two answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        "a,c",
        "a、c",
        "a and c",
        "a と c",
        "a c",
        "A，C",
        "答え: a. 酸素欠乏症、c. 硫化水素中毒",
        "a. 酸素欠乏症\nc. 硫化水素中毒",
    ],
)
def test_two_answers_in_several_notations(response):
    check(TWO_GASES, response, Status.correct, ("a", "c"))


def test_two_answers_as_choice_texts():
    check(TWO_GASES, "酸素欠乏症、硫化水素中毒", Status.correct, ("a", "c"))


def test_two_answers_in_the_wrong_order_are_still_correct():
    check(TWO_GASES, "c,a", Status.correct, ("c", "a"))


def test_one_of_two_right_is_wrong():
    scored = check(TWO_GASES, "a,b", Status.wrong, ("a", "b"))
    assert scored.reason == "read as a,b, the answer is a,c"


def test_one_answer_when_two_are_asked_is_invalid():
    scored = check(TWO_GASES, "答え: a", Status.invalid, ("a",))
    assert scored.reason == "gave 1 answer, the question asks for 2"


def test_three_answers_when_two_are_asked_is_invalid():
    scored = check(TWO_GASES, "a, b, c", Status.invalid, ("a", "b", "c"))
    assert scored.reason == "gave 3 answers, the question asks for 2"


def test_choice_text_containing_a_separator_is_not_cut():
    # Verbatim choice texts are kept whole; labelled ones decide the count even when reworded.
    check(SYMPTOMS, "めまい・ふらつき、眼の刺激、流涙", Status.correct, ("a", "c"))
    check(SYMPTOMS, "a. めまい・ふらつき感、c. 眼の刺激・流涙", Status.correct, ("a", "c"))


def test_split_parts_cuts_labelled_answers_only_at_their_labels():
    # Once labels are marked, the statement is cut only where a label starts: "眼の刺激・流涙" (the
    # choice reads "眼の刺激、流涙") stays whole inside part c instead of being cut at "・".
    parts = split_parts("a. めまい・ふらつき感、c. 眼の刺激・流涙", SYMPTOMS.choices, 2)
    assert [(p.label, p.text) for p in parts] == [("a", "a. めまい・ふらつき感"), ("c", "c. 眼の刺激・流涙")]


def test_answer_segment_takes_the_last_marker():
    assert answer_segment("答えはaかもしれない。\n最終的な答え: b") == "b"
    assert answer_segment("no marker here\n\n  d.  \n") == "d"


# --- invalid answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("response", ["わかりません", "", "   \n"])
def test_garbage_is_invalid(response):
    scored = check(MANHOLE, response, Status.invalid, ())
    assert not scored.exact_match


# --- numeric questions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "response", "status", "parsed"),
    [
        (NUMERIC, "答え: 12", Status.correct, ("12",)),
        (NUMERIC, "答え：１２ kg/m2", Status.correct, ("12",)),
        (NUMERIC, "答え: 1,200", Status.wrong, ("1200",)),
        (NUMERIC, "計算すると 12.0 になる。\n答え: 12.0", Status.correct, ("12.0",)),
        (NUMERIC, "答え: 15", Status.wrong, ("15",)),
        (NUMERIC, "答え: 12 または 15", Status.invalid, ("12", "15")),
        (NUMERIC, "わかりません", Status.invalid, ()),
        (DECIMAL, "The answer is 3.50.", Status.correct, ("3.50",)),
        (DECIMAL, "答え: 3.4", Status.wrong, ("3.4",)),
    ],
)
def test_numeric_questions(question, response, status, parsed):
    scored = check(question, response, status, parsed)
    assert scored.exact_match == (status is Status.correct)
    assert scored.gestalt_score == (1.0 if status is Status.correct else 0.0)
    assert scored.similarities == {}


# --- voided questions and accepted alternatives -------------------------------------------------


@pytest.mark.parametrize(("response", "letter"), [("a", "a"), ("d", "d"), ("熱中症", "e")])
def test_voided_question_accepts_any_single_answer(response, letter):
    check(VOIDED, response, Status.correct, (letter,))


def test_voided_question_still_needs_an_answer():
    check(VOIDED, "", Status.invalid, ())
    check(VOIDED, "a,b", Status.invalid, ("a", "b"))


def test_accepted_alternative_set():
    check(CORRECTED, "d", Status.correct, ("d",))
    check(CORRECTED, "a", Status.correct, ("a",))
    check(CORRECTED, "b", Status.wrong, ("b",))


# --- JMedLoRA metrics ---------------------------------------------------------------------------


def test_exact_match_and_gestalt_score():
    assert score_response(UREA_CYCLE, "e. オルニチントランスカルバミラーゼ欠損症").exact_match
    assert score_response(UREA_CYCLE, "e").exact_match
    text_only = score_response(UREA_CYCLE, "オルニチントランスカルバミラーゼ欠損症")
    assert text_only.exact_match and text_only.gestalt_score == 1.0
    assert score_response(TWO_GASES, "c, a").exact_match
    assert score_response(TWO_GASES, "答え:\n酸素欠乏症\n硫化水素中毒").exact_match
    assert not score_response(TWO_GASES, "a and c").exact_match
    assert not score_response(MANHOLE, LONG_COT.replace("答え: c", "答え: c です。以上。")).exact_match
    # "酸素欠乏" against the gold text "酸素欠乏症": 2·4/(4+5).
    assert score_response(MANHOLE, "酸素欠乏").gestalt_score == pytest.approx(8 / 9)
    assert score_response(MANHOLE, "b").gestalt_score == 0.0


# --- score_letters ------------------------------------------------------------------------------


def test_score_letters():
    scored = score_letters(TWO_GASES, "a,b".split(","))
    assert (scored.status, scored.parsed, scored.answer_text) == (Status.wrong, ("a", "b"), "a,b")
    assert score_letters(TWO_GASES, "c,a".split(",")).status is Status.correct
    assert score_letters(TWO_GASES, ["Ａ", " C "]).status is Status.correct
    assert score_letters(TWO_GASES, ["a"]).status is Status.invalid
    assert score_letters(TWO_GASES, ["a", "z"]).parsed == ("a",)
    assert score_letters(TWO_GASES, [""]).reason == "no answer found"
    assert score_letters(VOIDED, ["b"]).status is Status.correct
    assert score_letters(CORRECTED, ["d"]).status is Status.correct


# --- rapidfuzz against difflib ------------------------------------------------------------------

HEDGE = "hypothyroidism hyperthyroidism"
BOTH = "hyperthyroidism hypoparathyroidism"
THYROID = ExamQuestion(
    qid="T-10",
    question="Which diagnosis?",
    choices=("hyperthyroidism", BOTH, "hypothyroidism", "thyroiditis", "hypopituitarism"),
    answers=("a",),
)


def test_rapidfuzz_and_difflib_differ():
    """Where the two similarity options disagree, pinned so a change in either library shows.

    rapidfuzz's ratio is the normalised Indel similarity 2·LCS/(|a|+|b|), LCS being the longest
    common subsequence. difflib's ratio (Ratcliff/Obershelp) first takes the longest common
    contiguous block and then recurses only left and right of it. In HEDGE against BOTH that
    block is "hyperthyroidism" (15 characters), at the end of one string and the start of the
    other, so difflib has nothing left to match: 2·15/64 = 0.46875. The longest common
    subsequence ("hyp…thyroidism hyp…thyroidism") has 28 characters: 2·28/64 = 0.875.
    Against "hyperthyroidism" alone both give 2·15/45 = 2/3, so the two options pick different
    choices for the answer HEDGE: rapidfuzz b (0.875 > 2/3), difflib a (2/3 > 0.46875).
    """
    assert fuzz.ratio(HEDGE, BOTH) / 100 == 0.875
    assert difflib.SequenceMatcher(None, HEDGE, BOTH).ratio() == 0.46875
    assert similarity_fn(Similarity.rapidfuzz)(HEDGE, BOTH) == 0.875
    assert similarity_fn(Similarity.difflib)(HEDGE, BOTH) == 0.46875

    indel = check(THYROID, f"Answer: {HEDGE}", Status.wrong, ("b",), similarity=Similarity.rapidfuzz)
    gestalt = check(THYROID, f"Answer: {HEDGE}", Status.correct, ("a",), similarity=Similarity.difflib)
    assert indel.similarities["a"] == pytest.approx(2 / 3)
    assert indel.similarities["b"] == 0.875
    assert gestalt.similarities["a"] == pytest.approx(2 / 3)
    assert gestalt.similarities["b"] == 0.46875


def test_similarity_fn_ties_go_to_the_earlier_choice():
    twins = ExamQuestion(qid="T-11", question="?", choices=("abcx", "abcy", "zzzz"), answers=("a",))
    check(twins, "abc", Status.correct, ("a",))


# --- aggregate ----------------------------------------------------------------------------------


def answered(status: Status, parsed: tuple[str, ...], exact: bool, gestalt: float) -> ScoredAnswer:
    return ScoredAnswer(status, parsed, ",".join(parsed), exact_match=exact, gestalt_score=gestalt)


def question(qid: str, block: str, category: str, points: int, essential: bool, kinki=()) -> ExamQuestion:
    return ExamQuestion(
        qid,
        "?",
        MANHOLE.choices,
        ("a",),
        points=points,
        block=block,
        category=category,
        essential=essential,
        kinki=kinki,
    )


def test_aggregate_hand_computed():
    questions = [
        question("q1", "A", "循環器", 1, False, kinki=("b",)),
        question("q2", "B", "循環器", 1, True),
        question("q3", "B", "", 3, True, kinki=("d",)),
        question("q4", "C", "呼吸器", 1, False, kinki=("d", "e")),
        question("q5", "", "呼吸器", 1, False),
    ]
    hedged = answered(Status.correct, ("a",), True, 1.0)
    hedged.strict_status, hedged.strict_parsed, hedged.strict_reason = Status.invalid, (), "hedges between a and b"
    results = [
        hedged,  # correct on the paper's reading, invalid on the strict one
        answered(Status.wrong, ("c",), False, 0.5),
        answered(Status.correct, ("a",), True, 1.0),
        answered(Status.wrong, ("d",), False, 0.25),  # picks a contraindicated choice
        answered(Status.invalid, (), False, 0.0),
    ]
    metrics = aggregate(questions, results)
    assert metrics.pop("exact_match") == pytest.approx(2 / 5)
    assert metrics.pop("gestalt_score") == pytest.approx(2.75 / 5)
    # 95% intervals: Wilson for each reading's accuracy, a question bootstrap for the points score
    assert metrics.pop("accuracy_interval") == wilson(2, 5).to_dict()
    points = metrics.pop("points_interval")
    assert points["value"] == pytest.approx(4 / 7) and points["method"] == "bootstrap"
    assert 0.0 <= points["low"] < 4 / 7 < points["high"] <= 1.0
    strict = metrics.pop("strict")
    assert strict.pop("accuracy_interval") == wilson(1, 5).to_dict()
    # The strict reading: answers left without strict fields read the same as the paper's.
    assert strict == {"n": 5, "correct": 1, "invalid": 2, "wrong": 2, "accuracy": 1 / 5}
    assert metrics.pop("strict_accuracy") == 1 / 5
    assert metrics.pop("paper_minus_strict") == pytest.approx(1 / 5)
    assert metrics == {
        "n": 5,
        "correct": 2,
        "invalid": 1,
        "wrong": 2,
        "accuracy": 2 / 5,
        "points": 4,  # q1 (1) + q3 (3)
        "points_total": 7,
        "essential": {"n": 2, "correct": 1, "accuracy": 1 / 2, "points": 3, "points_total": 4},
        "general": {"n": 3, "correct": 1, "accuracy": 1 / 3, "points": 1, "points_total": 3},
        "by_block": {
            "A": {"n": 1, "correct": 1, "accuracy": 1.0, "points": 1, "points_total": 1},
            "B": {"n": 2, "correct": 1, "accuracy": 0.5, "points": 3, "points_total": 4},
            "C": {"n": 1, "correct": 0, "accuracy": 0.0, "points": 0, "points_total": 1},
        },
        "by_category": {
            "循環器": {"n": 2, "correct": 1, "accuracy": 0.5},
            "呼吸器": {"n": 2, "correct": 0, "accuracy": 0.0},
        },
        "kinki_picked": 1,
        "kinki_questions": 3,
    }


def test_aggregate_of_nothing_and_of_mismatched_lengths():
    empty = aggregate([], [])
    assert (empty["n"], empty["accuracy"], empty["exact_match"], empty["gestalt_score"]) == (0, 0.0, 0.0, 0.0)
    assert empty["essential"]["accuracy"] == 0.0 and empty["by_block"] == {}
    assert (empty["accuracy_interval"]["low"], empty["accuracy_interval"]["high"]) == (0.0, 1.0)
    assert empty["strict"].pop("accuracy_interval")["high"] == 1.0
    assert empty["strict"] == {"n": 0, "correct": 0, "invalid": 0, "wrong": 0, "accuracy": 0.0}
    assert (empty["strict_accuracy"], empty["paper_minus_strict"]) == (0.0, 0.0)
    with pytest.raises(ValueError):
        aggregate([MANHOLE], [])
