"""judge.py: score parsing, the category table's arithmetic, swap, resuming, and end to end
through real HTTP servers: medtune's own server with a tiny judge, and a rubric-following stand-in."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chat_server import ScriptedChatServer
from conftest import REPO
from medtune.judge.aggregate import category_table
from medtune.judge.parsing import parse_scores
from medtune.judge.questions import PAPER_CATEGORIES, read_questions
from medtune.tracking.offline import find_offline_runs, read_offline_run

QUESTIONS = read_questions(None)
CATEGORIES = [*PAPER_CATEGORIES, "Medical"]


@pytest.mark.parametrize(
    "text, scores, how",
    [
        ("8 6\nAssistant 1 is more detailed.", (8, 6), "first_line"),
        ("8, 6", (8, 6), "first_line"),
        ("**8/10 6/10**\nGiải thích: ...", (8, 6), "first_line"),
        ("7.5 9", (7.5, 9), "first_line"),
        ("８ ６", (8, 6), "first_line"),
        ("Assistant 1: 8/10\nAssistant 2: 6/10", (8, 6), "labelled"),
        ("Assistant 1 receives a score of 8 out of 10, and Assistant 2 receives 5 out of 10.", (8, 5), "labelled"),
        ("Đánh giá:\nTrợ lý 1: 7/10, khá đầy đủ.\nTrợ lý 2: 3/10, lạc đề.", (7, 3), "labelled"),
        ("アシスタント1：８点、アシスタント2：６点", (8, 6), "labelled"),
        ("Assistant 1 and 2 both answered. Assistant 1 scores 9 while Assistant 2 scores 4.", (9, 4), "labelled"),
        ("Both are fine.\nScore: 7 and 9", (7, 9), "named_pair"),
        ("Assistant 1's answer is longer than Assistant 2's.\nScores: 8 and 6", (8, 6), "named_pair"),
        ("Nhận xét chung về hai câu trả lời.\nĐiểm: 7 và 9", (7, 9), "named_pair"),
        ("総合評価です。\nスコア：7、9", (7, 9), "named_pair"),
        ("Tôi cho 8 và 6 điểm vì câu trả lời thứ nhất rõ ràng hơn.", (8, 6), "two_numbers"),
    ],
)
def test_parser_reads_the_usual_ways_of_giving_two_scores(text, scores, how):
    parsed = parse_scores(text)
    assert parsed.ok and (parsed.score_1, parsed.score_2) == scores and parsed.how == how


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty judgment"),
        ("   \n ", "empty judgment"),
        ("Tôi không thể chấm điểm câu này.", "no pair of scores found"),
        ("1. Helpfulness: good\n2. Relevance: ok", "no pair of scores found"),
        ("11 3", "score 11 is outside the scale 1-10"),
        ("0 5", "score 0 is outside the scale 1-10"),
        (
            "Assistant 1: 12/10\nAssistant 2: 5/10\nScore: 9 and 5",
            "score 12 is outside",
        ),  # the judge's own pair decides
    ],
)
def test_parser_gives_a_reason_instead_of_scores(text, reason):
    parsed = parse_scores(text)
    assert not parsed.ok and parsed.score_1 is None and reason in parsed.reason


def test_min_score_zero_accepts_the_papers_sub_one_scores():
    assert parse_scores("0 5", min_score=0).ok and not parse_scores("0 5").ok


def row(qid, category, order, score_1=None, score_2=None):
    """A scored judgment row as judging.scored_row leaves it."""
    ok = score_1 is not None
    first_is_a = order == "ab"
    return {
        "id": qid,
        "category": category,
        "order": order,
        "status": "scored" if ok else "unparsable",
        "score_1": score_1,
        "score_2": score_2,
        "score_a": score_1 if first_is_a else score_2,
        "score_b": score_2 if first_is_a else score_1,
    }


def test_category_scores_are_sums_normalised_to_100():
    # Ten Generic questions (a: 5..9, b: 10 minus that) and three Math questions, one order each.
    a_scores, b_scores = [5, 6, 7, 8, 9, 5, 6, 7, 8, 9], [5, 4, 3, 2, 1, 5, 4, 3, 2, 1]
    rows = [row(f"g{i}", "Generic", "ab", a, b) for i, (a, b) in enumerate(zip(a_scores, b_scores))]
    rows += [row("m0", "Math", "ab", 1, 10), row("m1", "Math", "ab", 2, 9), row("m2", "Math", "ab")]
    table = category_table(rows, ["Generic", "Math"])
    generic, math = table["categories"]
    assert (generic.samples, generic.a, generic.b) == (10, 70.0, 30.0)  # 70 / (10 x 10) x 100
    assert (math.samples, math.scored, math.unparsable) == (3, 2, 1)
    assert (math.a, math.b) == (pytest.approx(15.0), pytest.approx(95.0))  # (1 + 2) / 20, (10 + 9) / 20
    total = table["total"]
    assert (total.samples, total.scored, total.unparsable) == (13, 12, 1)
    assert total.a == pytest.approx(73 / 120 * 100) and total.b == pytest.approx(49 / 120 * 100)
    assert table["unparsable_judgments"] == 1 and generic.wins == {"a": 8, "b": 0, "tie": 2}


def test_swap_averages_both_orders_and_counts_disagreements():
    rows = [
        row("q1", "Fermi", "ab", 8, 6),
        row("q1", "Fermi", "ba", 7, 7),  # a: (8+7)/2, b: (6+7)/2; a wins, then a tie
        row("q2", "Fermi", "ab", 9, 5),
        row("q2", "Fermi", "ba", 4, 8),  # both orders say a, by 4
        row("q3", "Fermi", "ab", 6, 6),
        row("q3", "Fermi", "ba"),  # one order read: it alone counts
    ]
    table = category_table(rows, ["Fermi"])
    (fermi,) = table["categories"]
    assert fermi.a == pytest.approx((7.5 + 8.5 + 6) / 30 * 100) and fermi.b == pytest.approx((6.5 + 4.5 + 6) / 30 * 100)
    assert (fermi.order_disagreements, fermi.unparsable, fermi.unparsable_judgments) == (1, 0, 1)
    assert table["position_bias"] == pytest.approx(((8 - 6) + 0 + (9 - 5) + (4 - 8) + 0) / 5)


# -- a rubric-following stand-in for GPT-4: reads a hidden quality mark from each answer ------------------

QUALITY = re.compile(r"\[chất lượng (\d+)\]")
BLOCK = re.compile(r"###The Start of Assistant (\d)'s Answer\n(.*?)\n###The End of Assistant \1's Answer", re.DOTALL)
FORMATS = [
    "{0} {1}\nTrợ lý 1 trả lời ...",
    "Assistant 1: {0}/10\nAssistant 2: {1}/10",
    "Nhận xét ...\nĐiểm: {0} và {1}",
    "アシスタント1：{0}点、アシスタント2：{1}点",
    "**{0}/10 {1}/10**",
]
TRUTH = {"writing_02": (6, 6)}  # (a, b) hidden qualities; every other question: (4, 7)


def stand_in_reply(prompt: str) -> str:
    """Assistant 1 gets +1 (a judge that prefers the first position); math_02's swapped order is off the
    scale and medical_04 is never scored. A request without the rubric is a question: answered as quality 7."""
    if "###Question" not in prompt:
        return f"Đây là câu trả lời cho: {prompt[:30]} [chất lượng 7]"
    question = prompt.split("###Question\n", 1)[1].split("\n###", 1)[0]
    blocks = dict(BLOCK.findall(prompt))
    q1, q2 = (int(QUALITY.search(blocks[k]).group(1)) for k in ("1", "2"))
    if question.startswith("Tôi hay bị ợ nóng"):  # medical_04
        return "Tôi không thể chấm điểm câu này."
    if question.startswith("Một hình chữ nhật") and q1 == 7:  # math_02, b first
        return "11 3"
    return FORMATS[len(question) % len(FORMATS)].format(q1 + 1, q2)


def StandIn(fail_after: int | None = None) -> ScriptedChatServer:
    """A judge that answers in the rubric's format (see `stand_in_reply`)."""
    return ScriptedChatServer(stand_in_reply, fail_after)


@pytest.fixture()
def stand_in():
    servers = []

    def start(fail_after=None):
        servers.append(StandIn(fail_after))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture()
def answer_files(tmp_path):
    paths = {}
    for role, index in (("base", 0), ("chat", 1)):
        path = tmp_path / f"answers_{role}.jsonl"
        marks = {q.qid: TRUTH.get(q.qid, (4, 7))[index] for q in QUESTIONS}
        lines = [
            json.dumps(
                {"id": q.qid, "answer": f"Trả lời của {role} cho {q.qid}. [chất lượng {marks[q.qid]}]"},
                ensure_ascii=False,
            )
            for q in QUESTIONS
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[role] = path
    return paths


def judge_args(url, answers, out, *extra):
    return [
        f"judge.a.answers={answers['base']}",
        f"judge.b.answers={answers['chat']}",
        f"judge.judge.url={url}",
        "judge.judge.max_retries=0",
        f"judge.output_dir={out}",
        "logger=none",
        *extra,
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_rubric_following_judge_gives_the_exact_category_table(run_judge, stand_in, answer_files, tmp_path):
    server = stand_in()
    metrics = run_judge(judge_args(server.url, answer_files, tmp_path / "swap"))
    rows = {r["category"]: r for r in metrics["categories"]}
    assert list(rows) == CATEGORIES and server.calls == 2 * len(QUESTIONS)
    for category in ("Generic", "Knowledge", "Roleplay", "Common-Sense", "Fermi", "Counterfactual", "Coding"):
        assert (rows[category]["a"], rows[category]["b"]) == (45.0, 75.0)  # (4 + 5) / 2 and (7 + 8) / 2, per question
    assert (rows["Math"]["a"], rows["Math"]["b"]) == (pytest.approx(47.5), pytest.approx(72.5))  # math_02: "ab" only
    assert (rows["Math"]["unparsable"], rows["Math"]["unparsable_judgments"]) == (0, 1)
    writing = rows["Writing"]  # writing_02: 6.5 each
    assert (writing["a"], writing["b"]) == (pytest.approx(55.0), pytest.approx(70.0))
    assert writing["order_disagreements"] == 1  # equal answers: each order prefers whoever sits first
    assert (rows["Medical"]["a"], rows["Medical"]["b"], rows["Medical"]["unparsable"]) == (45.0, 75.0, 1)
    total = metrics["total"]
    assert (total["samples"], total["scored"], total["unparsable"]) == (22, 21, 1)
    assert total["a"] == pytest.approx(97 / 210 * 100) and total["b"] == pytest.approx(156 / 210 * 100)
    assert metrics["unparsable_judgments"] == 3 and metrics["order_disagreements"] == 1
    assert metrics["position_bias"] == pytest.approx(38 / 41)  # the judge's +1 for Assistant 1, seen through the swap
    assert metrics["objective"] == total["b"]

    judgments = read_jsonl(tmp_path / "swap" / "judgments.jsonl")
    assert len(judgments) == 44 and {(r["id"], r["order"]) for r in judgments} == {
        (q.qid, o) for q in QUESTIONS for o in ("ab", "ba")
    }
    off_scale = next(r for r in judgments if r["id"] == "math_02" and r["order"] == "ba")
    assert off_scale["status"] == "unparsable" and off_scale["raw"] == "11 3"
    assert "outside the scale" in off_scale["reason"]
    swapped = next(r for r in judgments if r["id"] == "generic_01" and r["order"] == "ba")
    assert (swapped["assistant_1"], swapped["score_a"], swapped["score_b"]) == ("chat", 4, 8)
    table = (tmp_path / "swap" / "judge_table.md").read_text()
    assert "| Tasks | Samples | base | chat | Unparsable | Order disagreements |" in table
    assert "| Generic | 2 | 45.00 | 75.00 | 0 | 0 |" in table
    assert "| **Total** | **22** | **46.19** | **74.29** |" in table
    assert (tmp_path / "swap" / "judge_table.csv").read_text().splitlines()[-1].startswith("Total,22,46.19,74.29,1,1")
    assert not (tmp_path / "swap" / "judgments.partial.jsonl").exists()

    # Without swap the judge's preference for the first position stays in system a's score.
    once = run_judge(judge_args(server.url, answer_files, tmp_path / "once", "judge.swap=false"), name="once")
    assert {(r["a"], r["b"]) for r in once["categories"] if r["category"] in ("Generic", "Fermi")} == {(50.0, 70.0)}
    assert server.calls == 3 * len(QUESTIONS)


def test_endpoint_down_keeps_the_judgments_made_and_the_rerun_finishes(run_judge, stand_in, answer_files, tmp_path):
    from medtune.llm.protocol import EndpointError

    out = tmp_path / "judge"
    flaky = stand_in(fail_after=5)
    with pytest.raises(EndpointError) as stopped:
        run_judge(judge_args(flaky.url, answer_files, out, "judge.judge.concurrency=1"))
    message = str(stopped.value)
    assert f"judge.judge.url={flaky.url}" in message and "HTTP 503" in message and "5 of 44 judgments" in message
    assert len(read_jsonl(out / "judgments.partial.jsonl")) == 5 and not (out / "judgments.jsonl").exists()

    nobody = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(EndpointError, match=re.escape(nobody)):
        run_judge(judge_args(nobody, answer_files, tmp_path / "nobody"), name="nobody")

    healthy = stand_in()  # the judge back, at another address: where it is served may change
    metrics = run_judge(judge_args(healthy.url, answer_files, out, "judge.judge.concurrency=1"), name="again")
    assert healthy.calls == 44 - 5 and metrics["total"]["b"] == pytest.approx(156 / 210 * 100)
    assert len(read_jsonl(out / "judgments.jsonl")) == 44 and not (out / "judgments.partial.jsonl").exists()

    from medtune.errors import ConfigError

    with pytest.raises(ConfigError, match="changed: endpoint_model"):  # same directory, another judge: refused
        run_judge(judge_args(healthy.url, answer_files, out, "judge.judge.endpoint_model=gpt-4"), name="other")


def test_a_system_answering_through_an_endpoint_is_asked_once(run_judge, stand_in, answer_files, tmp_path):
    server = stand_in()
    out = tmp_path / "judge"
    args = [
        f"judge.a.answers={answer_files['base']}",
        "judge.b.generator.kind=endpoint",
        f"judge.b.generator.url={server.url}",
        "judge.b.generator.endpoint_model=vi-chat",
        f"judge.judge.url={server.url}",
        "judge.max_questions=4",
        f"judge.output_dir={out}",
        "logger=none",
    ]
    metrics = run_judge(args)
    assert metrics["systems"] == {"a": "base", "b": "vi-chat"} and metrics["sources"]["b"] == "endpoint"
    assert server.calls == 4 + 2 * 4 and metrics["total"]["b"] == 75.0
    answers = read_jsonl(out / "answers_vi-chat.jsonl")
    assert [r["id"] for r in answers] == [q.qid for q in QUESTIONS[:4]]
    assert "[chất lượng 7]" in answers[0]["answer"]
    run_judge([*args, "judge.max_questions=5"], name="more")  # one more question: one answer and two judgments
    assert server.calls == 12 + 1 + 2


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_settings_are_reported_together(run_judge, tmp_path):
    from medtune.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        run_judge(
            [
                f"judge.a.answers={tmp_path}/none.jsonl",
                "judge.a.model_path=/nowhere",
                "judge.judge.url=null",
                "logger=none",
            ]
        )
    text = str(error.value)
    assert "judge.b names no system" in text and "judge.a sets answers and model_path" in text
    assert "judge.judge.kind=endpoint needs judge.judge.url" in text


def test_the_bundled_questions_cover_the_papers_categories():
    counts = {c: sum(q.category == c for q in QUESTIONS) for c in CATEGORIES}
    assert all(n >= 2 for n in counts.values()) and sum(counts.values()) == len(QUESTIONS)
    assert len({q.qid for q in QUESTIONS}) == len(QUESTIONS)


# -- end to end: two tiny systems judged by a tiny model behind medtune's own server ----------------------


@pytest.fixture()
def tiny_server(compose, tiny_cache):
    from medtune.config.eval_schema import EvalRunConfig
    from medtune.jobs import to_typed
    from medtune.modeling.tiny import tiny_checkpoint

    cfg = to_typed(compose([f"paths.cache_dir={tiny_cache}"], config_name="evaluate"), EvalRunConfig)
    arch = cfg.model.architecture
    judge_dir = tiny_checkpoint(arch, tiny_cache)
    other_dir = tiny_checkpoint(arch, tiny_cache, seed=1)  # a second tiny "system": the same shape, other weights
    process = subprocess.Popen(
        [sys.executable, "-m", "medtune.llm.server", "--model-path", str(judge_dir), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("medtune server: "), line
        yield line.split()[-1], other_dir, process
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_two_tiny_systems_judged_through_the_local_server(run_judge, tiny_server, tmp_path):
    url, other_checkpoint, server = tiny_server
    questions = tmp_path / "questions.jsonl"  # one question of each category keeps the tiny judge's work small
    firsts = {q.category: q for q in reversed(QUESTIONS)}
    questions.write_text(
        "".join(
            json.dumps({"id": q.qid, "category": q.category, "question": q.question}, ensure_ascii=False) + "\n"
            for q in firsts.values()
        ),
        encoding="utf-8",
    )
    out = tmp_path / "judge"
    args = [
        f"judge.questions={questions}",
        f"judge.b.model_path={other_checkpoint}",
        "judge.b.name=tiny-seed1",
        "judge.a.generator.max_new_tokens=16",
        "judge.b.generator.max_new_tokens=16",
        f"judge.judge.url={url}",
        "judge.judge.max_new_tokens=6",
        f"judge.output_dir={out}",
    ]
    from medtune.judge.judging import UnreadableJudge

    # A random tiny judge never writes two scores: the run fails, saying so, with every raw judgment kept.
    with pytest.raises(UnreadableJudge, match=r"all 20 judgments were unparsable: the judge model did not follow"):
        run_judge(args)
    judgments = read_jsonl(out / "judgments.jsonl")
    assert len(judgments) == 2 * len(CATEGORIES) and {r["category"] for r in judgments} == set(CATEGORIES)
    assert all(r["status"] == "unparsable" and r["reason"] for r in judgments)
    assert all(isinstance(r["raw"], str) and isinstance(r["answer_1"], str) for r in judgments)
    assert {r["system"] for r in read_jsonl(out / "answers_tiny-seed1.jsonl")} == {"tiny-seed1"}
    assert len(read_jsonl(out / "answers_tiny.jsonl")) == len(CATEGORIES)
    assert not (out / "judge_table.md").exists() and not (out / "metrics.json").exists()

    (run_path,) = find_offline_runs(out)
    run = read_offline_run(run_path)
    assert run.job_type == "judge" and "judge/Total/samples" not in run.summary

    # Judging again in the same directory neither regenerates answers nor asks the judge (now gone) again.
    server.terminate()
    server.wait(timeout=30)
    answers_before = (out / "answers_tiny.jsonl").read_text()
    with pytest.raises(UnreadableJudge, match=r"all 20 judgments were unparsable"):
        run_judge([*args, "logger=none"], name="again")
    assert (out / "answers_tiny.jsonl").read_text() == answers_before
