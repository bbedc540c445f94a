"""Tests of the two readings of a response: the paper's (Algorithm 1) and the strict one.

The labelled corpus (tests/data/answer_corpus.jsonl) holds hand-written responses for every case
the strict reading handles and real outputs of the embedded model (SmolLM2-135M-Instruct); each
line says what a careful reader takes from the output under each reading. The other tests pin
the cases of the issue: gibberish, hedges, negations, "none of the above", echoed choice lists,
English articles, and questions with more than 26 choices.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest

from medtune.data.readers import format_choices
from medtune.evaluation.records import prediction_row, scored_from_row
from medtune.exam.aggregation import aggregate
from medtune.exam.scoring import score_letters, score_response
from medtune.vocabulary import ExamQuestion, ScoredAnswer, Status, choice_labels

CORPUS = Path(__file__).parent / "data" / "answer_corpus.jsonl"
CORPUS_LINES = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
SYMPTOMS = ("fever", "cough", "rash", "headache", "nausea")
GIBBERISH_SEED = 20240611


def symptom_question(gold: str = "a") -> ExamQuestion:
    return ExamQuestion("S-01", "Which symptom is most likely?", SYMPTOMS, (gold,))


def corpus_question(line: dict) -> ExamQuestion:
    return ExamQuestion(line["id"], line.get("question", ""), tuple(line["choices"]), tuple(line["answers"]))


# --- the labelled corpus ------------------------------------------------------------------------


def test_corpus_is_large_and_mixed():
    assert len(CORPUS_LINES) >= 60
    kinds = {(line["lang"], line["source"]) for line in CORPUS_LINES}
    assert {("en", "hand"), ("ja", "hand"), ("en", "smollm2_135m"), ("ja", "smollm2_135m")} <= kinds
    for line in CORPUS_LINES:
        assert {"id", "lang", "source", "choices", "answers", "output", "paper", "strict", "note"} <= set(line)


@pytest.mark.parametrize("line", CORPUS_LINES, ids=[line["id"] for line in CORPUS_LINES])
def test_corpus_line(line):
    scored = score_response(corpus_question(line), line["output"])
    paper = {"status": scored.status.value, "parsed": list(scored.parsed)}
    strict = {"status": scored.strict_status.value, "parsed": list(scored.strict_parsed)}
    assert (paper, strict) == (line["paper"], line["strict"]), (line["note"], scored.reason, scored.strict_reason)


# --- gibberish ----------------------------------------------------------------------------------


def gibberish_lines(seed: int, count: int = 2000) -> list[str]:
    """`count` lines of random 3-10 letter words in any case: half single words, half 2-6 words."""
    rng = random.Random(seed)

    def word() -> str:
        letters = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10)))
        return rng.choice([letters, letters.capitalize(), letters.upper()])

    singles = [word() for _ in range(count // 2)]
    phrases = [" ".join(word() for _ in range(rng.randint(2, 6))) for _ in range(count - count // 2)]
    return singles + phrases


@pytest.mark.parametrize("gold", ["a", "b", "c", "d", "e"])
def test_gibberish_is_never_strict_correct(gold):
    lines = gibberish_lines(GIBBERISH_SEED)
    print(f"gibberish seed {GIBBERISH_SEED}, {len(lines)} lines, gold {gold}")
    results = [score_response(symptom_question(gold), line) for line in lines]
    strict_correct = [line for line, r in zip(lines, results) if r.strict_status is Status.correct]
    assert strict_correct == []
    # The paper's reading keeps its rule (any part at least 0.2 similar to a choice), so some land right.
    assert sum(r.status is Status.correct for r in results) > 0


# --- hedges, negations, none of the above -------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        "a or b",
        "Answer: a/b",
        "either a or b",
        "The answer is a or possibly b.",
        "aまたはb",
        "答え: aかb",
        "fever or cough",
    ],
)
def test_hedges_are_strict_invalid_and_never_paper_correct(response):
    scored = score_response(symptom_question("a"), response)
    assert scored.strict_status is Status.invalid and "hedges" in scored.strict_reason
    assert scored.status is Status.invalid and set(scored.parsed) == {"a", "b"}


@pytest.mark.parametrize("response", ["not a", "Answer: not a", "a is incorrect.", "答えはaではない。"])
def test_negations_are_invalid(response):
    scored = score_response(symptom_question("e"), response)
    assert (scored.strict_status, scored.status) == (Status.invalid, Status.invalid)
    assert "rules out a" in scored.strict_reason


@pytest.mark.parametrize(
    "response", ["none of the above", "Answer: None of the above.", "All of the above", "該当なし"]
)
def test_none_or_all_of_the_above_is_invalid(response):
    scored = score_response(symptom_question("a"), response)
    assert (scored.strict_status, scored.status) == (Status.invalid, Status.invalid)
    assert "not one of the choices" in scored.strict_reason


def test_none_of_the_above_counts_when_it_is_a_choice():
    question = ExamQuestion("S-02", "?", ("fever", "cough", "None of the above"), ("c",))
    scored = score_response(question, "Answer: none of the above")
    assert (scored.status, scored.strict_status, scored.strict_parsed) == (Status.correct, Status.correct, ("c",))


# --- echoes, articles, answer statements --------------------------------------------------------


def test_echoed_choice_list_is_no_answer():
    echo = "a. fever\nb. cough\nc. rash\nd. headache\ne. nausea"
    scored = score_response(symptom_question("e"), echo)
    assert (scored.status, scored.strict_status) == (Status.invalid, Status.invalid)
    assert "re-types" in scored.strict_reason
    answered = score_response(symptom_question("b"), f"{echo}\nAnswer: b")
    assert (answered.status, answered.strict_status) == (Status.correct, Status.correct)


def test_two_answer_lines_are_not_an_echo():
    question = ExamQuestion("S-03", "Choose two.", SYMPTOMS, ("a", "c"))
    scored = score_response(question, "a. fever\nc. rash")
    assert (scored.status, scored.strict_status, scored.strict_parsed) == (Status.correct, Status.correct, ("a", "c"))


@pytest.mark.parametrize("response", ["A patient with these findings needs care.", "A 45-year-old woman.", "A 38"])
def test_an_english_article_is_not_label_a(response):
    scored = score_response(symptom_question("a"), response)
    assert "a" not in scored.strict_parsed
    assert scored.strict_status is Status.invalid


def test_marked_letter_a_is_still_a_label():
    for response in ("A", "A.", "(A)", "Answer: A", "The answer is a.", "option A", "A) fever"):
        scored = score_response(symptom_question("a"), response)
        assert (scored.status, scored.strict_status) == (Status.correct, Status.correct), response


def test_final_statement_wins_over_the_question_repeated_after_it():
    question = ExamQuestion("S-04", "Which symptom is most likely after exposure to poison ivy?", SYMPTOMS, ("c",))
    response = "The correct answer is c.\nWhich symptom is most likely after exposure to poison ivy?"
    scored = score_response(question, response)
    assert (scored.status, scored.parsed, scored.strict_status) == (Status.correct, ("c",), Status.correct)


def test_choice_text_with_slash_and_and_is_one_answer():
    choices = ("Cross-links DNA", "Induces the formation of G/T and A/C pair formation", "Intercalates", "Alkylates")
    question = ExamQuestion("S-05", "?", choices, ("b",))
    scored = score_response(question, "b. Induces the formation of G/T and A/C pair formation")
    assert (scored.status, scored.parsed, scored.strict_parsed) == (Status.correct, ("b",), ("b",))


def test_strict_threshold_is_the_fifth_positional_argument():
    question = symptom_question("a")
    assert score_response(question, "The answer is feverish.").strict_status is Status.invalid  # 0.77 < 0.8
    loose = score_response(question, "The answer is feverish.", "rapidfuzz", 0.2, 0.7)
    assert (loose.strict_status, loose.strict_parsed) == (Status.correct, ("a",))


def test_score_letters_commits_both_readings():
    scored = score_letters(symptom_question("c"), ["c"])
    assert (scored.strict_status, scored.strict_parsed, scored.strict_reason) == (scored.status, ("c",), "")


# --- more than 26 choices -----------------------------------------------------------------------


@pytest.mark.parametrize("count", [27, 30, 40])
def test_many_choices_are_numbered_and_score_without_error(count):
    choices = tuple(f"Disorder number {i}" for i in range(1, count + 1))
    last = str(count)
    question = ExamQuestion("S-06", "Which disorder?", choices, (last,))
    assert question.labels() == choice_labels(count) == tuple(str(i) for i in range(1, count + 1))
    assert (question.label(count - 1), question.index_of(last), question.choice_of(last)) == (
        last,
        count - 1,
        choices[-1],
    )
    assert format_choices(list(choices)).splitlines()[-1] == f"{last}. {choices[-1]}"
    for response in (
        f"Answer: {last}",
        f"({last})",
        f"{last}. {choices[-1]}",
        choices[-1],
        f"The answer is option {last}.",
    ):
        scored = score_response(question, response)
        assert (scored.status, scored.parsed, scored.strict_status) == (Status.correct, (last,), Status.correct), (
            response
        )
    assert score_response(question, "Answer: z").status is Status.invalid
    assert score_response(question, "Answer: 3 or 4").strict_status is Status.invalid
    assert score_letters(question, [last]).status is Status.correct
    with pytest.raises(ValueError):
        question.index_of("z")


def test_up_to_26_choices_keep_letters():
    assert choice_labels(26)[-1] == "z" and choice_labels(5) == ("a", "b", "c", "d", "e")
    assert format_choices(["x", "y"]) == "a. x\nb. y"


# --- prediction rows and aggregation ------------------------------------------------------------


def test_prediction_row_round_trips_the_strict_reading():
    question = symptom_question("a")
    scored = score_response(question, "Answer: a or b")
    row = prediction_row(question, "prompt", "Answer: a or b", scored)
    assert row["strict"] == {"status": "invalid", "parsed": [], "reason": "hedges between a and b"}
    back = scored_from_row(json.loads(json.dumps(row)))
    assert (back.strict_status, back.strict_parsed, back.strict_reason) == (
        scored.strict_status,
        scored.strict_parsed,
        scored.strict_reason,
    )
    old = {key: value for key, value in row.items() if key != "strict"}
    legacy = scored_from_row(old)
    assert (legacy.strict_status, legacy.strict_parsed, legacy.strict_reason) == (
        legacy.status,
        legacy.parsed,
        legacy.reason,
    )


def test_aggregate_reports_both_readings():
    question = symptom_question("c")
    responses = ["Answer: c", "Kqmrn", "Answer: a", "not a"]  # strict: correct, invalid, wrong, invalid
    results = [score_response(question, r) for r in responses]
    metrics = aggregate([question] * 4, results)
    assert (metrics["correct"], metrics["invalid"], metrics["wrong"]) == (2, 1, 1)
    strict = dict(metrics["strict"])
    assert strict.pop("accuracy_interval")["value"] == 0.25  # Wilson, as the paper reading's
    assert strict == {"n": 4, "correct": 1, "invalid": 2, "wrong": 1, "accuracy": 0.25}
    assert metrics["strict_accuracy"] == 0.25
    assert metrics["paper_minus_strict"] == pytest.approx(0.25)
    assert isinstance(results[0], ScoredAnswer)
