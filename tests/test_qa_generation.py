"""generate_qa.py: chunking, parsing, dedupe and validation on their own, then the whole chain on the
bundled article: a generator server -> qa_pairs.jsonl -> an interrupted run that resumes -> training on it.

The generator servers are real HTTP servers. ChatGPT cannot run here, so `FakeChatGPT` (http.server in a
thread) answers each chat-completions request with pairs made from the chunk it was sent, in a format
that varies by chunk, with one repeated and one too-short pair per answer. The tiny random model is
also served by `python -m medtune.llm.server`: its text is noise, and the run must count it as such.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chat_server import ScriptedChatServer
from conftest import cli
from medtune.config.job import JobContext
from medtune.data.readers import read_records
from medtune.errors import ConfigError, DataError
from medtune.qa.chunking import (
    char_measure,
    chunk_documents,
    chunk_spans,
    chunk_text,
    load_documents,
    token_measure,
)
from medtune.qa.dedupe import Deduper, normalize
from medtune.qa.parsing import parse_pairs
from medtune.qa.prompt import load_template, render
from medtune.qa.store import ResumeMismatchError, RunStore
from medtune.qa.validate import Limits, rejection

CHARS = char_measure(1.0)  # one character = one token: sizes below read as characters
REPEATED_QUESTION = "高血圧の診断基準は何ですか？"


# ------------------------------------------------------------------------------------------- chunking


def test_a_document_shorter_than_a_chunk_is_one_chunk_with_its_text_intact():
    text = "高血圧は脳卒中の危険因子である。減塩が勧められる。"
    assert chunk_text(text, 100, 10, CHARS) == [text]
    assert chunk_text("  \n\n  ", 100, 10, CHARS) == []


def test_chunks_fit_the_budget_end_at_japanese_sentence_ends_and_overlap():
    sentences = [f"第{i}の文では血圧{120 + i}mmHgについて述べる。" for i in range(30)]
    text = "".join(sentences[:15]) + "\n\n" + "".join(sentences[15:])
    chunks = chunk_text(text, 80, 15, CHARS)
    assert len(chunks) > 5
    for chunk in chunks:
        assert len(chunk.replace("\n\n", "")) <= 80
        assert chunk.endswith("。")  # never mid-sentence: every sentence here fits the budget
    for before, after in itertools.pairwise(chunks):
        head = after.split("。")[0]
        assert head and head in before  # the next chunk starts with text the previous one ended with
    joined = "".join(chunks)
    assert all(s in joined for s in sentences)  # nothing is lost


def test_paragraphs_are_kept_whole_when_they_fit_and_headings_open_chunks():
    text = "## 診断\n\n" + "診断の段落です。" * 5 + "\n\n## 治療\n\n" + "治療の段落です。" * 5
    chunks = chunk_text(text, 60, 0, CHARS)
    assert chunks == [text[: text.index("\n\n## 治療")], text[text.index("## 治療") :]]


def test_sentences_without_ends_are_cut_between_characters_never_inside_one():
    decomposed = "Be\u0301nh nhân " * 40  # Vietnamese with combining accents: é is e + U+0301
    for chunk in chunk_text(decomposed, 23, 0, CHARS):
        assert len(chunk) <= 23
        assert not ("\u0300" <= chunk[0] <= "\u036f")  # no chunk starts with a lone combining mark
    spans = chunk_spans("あ" * 250, 100, 0, CHARS)
    assert [end - start for start, end in spans] == [100, 100, 50]


def test_chunking_by_a_real_tokenizer_keeps_each_chunk_within_its_token_budget(typed, tiny_cache):
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_tokenizer

    cfg = typed([f"paths.cache_dir={tiny_cache}"])
    tokenizer = load_tokenizer(resolve_checkpoint(cfg.model, tiny_cache), cfg.model)
    measure = token_measure(tokenizer, "tiny")
    chunks = chunk_documents(load_documents(None), 64, 8, measure)
    assert len(chunks) >= 5
    assert all(measure.size(c.text) <= 64 + 8 for c in chunks)  # units are counted apart: joins can add a few
    assert chunks[0].id == "hypertension_review_ja.md#0"


def test_documents_from_a_folder_of_text_markdown_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("本文A。", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# B\n\n本文B。", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text('{"text": "本文C。"}\n\n{"text": "本文D。"}\n', encoding="utf-8")
    docs = load_documents(tmp_path)
    assert [d.name for d in docs] == ["a.txt", "c.jsonl:1", "c.jsonl:3", "sub/b.md"]
    (tmp_path / "c.jsonl").write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.jsonl:1: no string field 'text'.*qa\.text_field"):
        load_documents(tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        load_documents(tmp_path / "missing")


# -------------------------------------------------------------------------------------------- parsing

PARSE_CASES = {
    "json_lines": (
        '{"instruction": "高血圧の基準は？", "output": "140/90mmHg以上"}\n{"instruction": "減塩の目標は？", "output": "6g未満"}',
        2,
    ),
    "json_list": (
        '[{"question": "What is BP?", "answer": "Blood pressure."}, {"question": "Q2?", "answer": "A2."}]',
        2,
    ),
    "json_fence_with_prose": (
        'Here are the pairs:\n```json\n[{"instruction": "a?", "output": "b"}]\n```\nHope this helps.',
        1,
    ),
    "json_object_with_a_list": ('{"pairs": [{"質問": "高血圧とは？", "回答": "血圧が高い状態。"}]}', 1),
    "python_dicts": (
        "{'instruction': 'What is it?', 'output': 'A thing.'}\n{'instruction': 'And this?', 'output': 'Another.'}",
        2,
    ),
    "q_a_blocks": (
        "Q: What is hypertension?\nA: Blood pressure of 140/90 or more.\nIt is common.\n\nQ: Salt target?\nA: Under 6 g.",
        2,
    ),
    "japanese_labels": ("質問：高血圧とは？\n回答：血圧が高い状態。\n\n質問2: 減塩の目標は？\n回答2: 一日6g未満。", 2),
    "instruction_output_headings": (
        "### Instruction:\nWhat is X?\n\n### Output:\nX is Y.\n\n### Instruction\nWhat is Z?\n### Response:\nZ is W.",
        2,
    ),
    "numbered_lines": (
        "1. 高血圧の診断基準は何ですか？\n   診察室血圧140/90mmHg以上です。\n2. 減塩の目標は？\n   一日6g未満です。",
        2,
    ),
    "numbered_inline": (
        "1) What is the salt target? Under 6 g a day.\n2) 降圧目標は何ですか？ 130/80mmHg未満です。",
        2,
    ),
    "bold_numbered_labels": ("**Q1:** What is A?\n**A1:** It is B.\n\n**Q2.** What is C?\n**A2.** D.", 2),
    "inline_q_and_a": ("Q: What is BP? A: Blood pressure.\n質問: 高血圧とは？回答:血圧が高いこと。", 2),
}


@pytest.mark.parametrize("name", sorted(PARSE_CASES))
def test_parser_reads_the_usual_shapes_of_generated_pairs(name):
    text, expected = PARSE_CASES[name]
    parsed = parse_pairs(text)
    assert len(parsed.pairs) == expected, parsed
    assert parsed.rejected == 0 and not parsed.unparsable
    assert all(q.strip() and a.strip() and "\n" not in q for q, a in parsed.pairs)


def test_parser_keeps_multi_line_answers_and_alpaca_input():
    (pair,) = parse_pairs('{"instruction": "Explain.", "input": "Context here.", "output": ["one", "two"]}').pairs
    assert pair == ("Explain.\nContext here.", "one\ntwo")
    (_, answer), _ = parse_pairs("Q: What is it?\nA: First line.\nSecond line.\n\nQ: Next?\nA: Yes.").pairs
    assert answer == "First line.\nSecond line."


@pytest.mark.parametrize(
    "text, rejected",
    [
        ("", 0),
        ("の の血圧 mmHg 、、、 a the of 高 ### ] [ }", 0),  # what a random model writes
        ('{"foo": 1}\n{"bar": 2}', 2),  # JSON, but no question / answer fields
        ('{"instruction": "cut off?", "outp', 1),  # a line cut by max_tokens
        ("Q: a question with no answer?\n\nsome text", 1),
        ("A: an answer with no question", 1),
    ],
)
def test_garbage_is_counted_as_unparsable_never_raised(text, rejected):
    parsed = parse_pairs(text)
    assert parsed.unparsable and parsed.pairs == [] and parsed.rejected == rejected


def test_a_cut_off_last_line_loses_only_that_pair():
    parsed = parse_pairs(
        '{"instruction": "a?", "output": "b"}\n{"instruction": "c?", "output": "d"}\n{"instruction": "e?", "ou'
    )
    assert parsed.pairs == [("a?", "b"), ("c?", "d")] and parsed.rejected == 1


# -------------------------------------------------------------------------------- dedupe and validation


def test_dedupe_drops_exact_repeats_after_normalisation_and_near_repeats():
    deduper = Deduper(0.9)
    assert deduper.check("高血圧の診断基準は何ですか？") is None
    assert deduper.check("高血圧の診断基準は何ですか?") == "exact"  # full-width / half-width punctuation
    assert deduper.check(" 高血圧の 診断基準は 何ですか ") == "exact"
    assert deduper.check("高血圧の診断の基準は何ですか？") == "near"
    assert deduper.check("低血圧の治療方針は何ですか？") is None  # a different question
    assert deduper.check("What is the SALT target?") is None
    assert deduper.check("what is the salt target") == "exact"
    exact_only = Deduper(1.0)
    assert exact_only.check("高血圧の診断基準は何ですか？") is None
    assert exact_only.check("高血圧の診断の基準は何ですか？") is None
    assert normalize("ＡＢＣ　１２３！") == "abc123"


def test_dedupe_compares_only_lengths_that_can_reach_the_threshold():
    deduper = Deduper(0.9)
    for i in range(2000):
        deduper.add(f"question number {i} about {'x' * (i % 50)}")
    assert deduper._candidates(10) == []
    assert deduper.check("question number 7 about xxxxxxx") == "exact"
    assert deduper.check("question number 7 about xxxxxxy") == "near"


@pytest.mark.parametrize(
    "question, answer, reason",
    [
        ("", "answer text", "empty"),
        ("What is it?", "？？", "empty"),
        ("質問", "回答", "template_echo"),
        ("BP?", "Blood pressure.", "question_too_short"),
        ("What is the unit of blood pressure?", "m", "answer_too_short"),
        ("What is hypertension?", "what is hypertension", "same_question_and_answer"),
        (
            "この文章を要約してください。",
            "高血圧は脳卒中の危険因子である。減塩が勧められる。降圧薬を使う。",
            "copies_chunk",
        ),
        ("高血圧の危険性は？", "脳卒中の危険因子です。", None),
    ],
)
def test_validation_names_one_reason_per_dropped_pair(question, answer, reason):
    chunk = "高血圧は脳卒中の危険因子である。減塩が勧められる。降圧薬を使う。"
    assert rejection(question, answer, chunk, Limits(min_question_chars=5, min_answer_chars=2)) == reason


def test_templates_are_bundled_per_language_and_a_custom_one_needs_its_placeholders(tmp_path):
    from medtune.config.qa_schema import QAGenerationConfig

    ja, en = load_template(QAGenerationConfig(language="ja")), load_template(QAGenerationConfig(language="en"))
    assert "質問(instruction)と回答(output)" in ja and "question (instruction)" in en
    prompt = render(en, "Text with {n} and {document} inside.", 4)
    assert "write 4 pairs" in prompt and "Text with {n} and {document} inside." in prompt
    assert '{"instruction": "question", "output": "answer"}' in prompt
    own = tmp_path / "mine.txt"
    own.write_text("Make {n} pairs about:\n{document}\n", encoding="utf-8")
    assert load_template(QAGenerationConfig(template=str(own))).startswith("Make {n}")
    own.write_text("Make pairs about:\n{document}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lacks \{n\}"):
        load_template(QAGenerationConfig(template=str(own)))
    with pytest.raises(ConfigError, match="no bundled template"):
        load_template(QAGenerationConfig(language="vi"))


def test_a_resumed_store_drops_half_written_chunks_and_refuses_changed_text_or_settings(tmp_path):
    settings = {"pairs_per_chunk": 3, "generator": {"temperature": 0.0}}
    store = RunStore(tmp_path)
    assert store.open(settings, {"doc#0": "h0", "doc#1": "h1"}) == ({}, [])
    store.append([{"instruction": "q0", "output": "a0", "source": "doc#0"}], {"chunk": "doc#0", "hash": "h0"})
    # Killed while writing chunk 1: its record is there, its progress line is cut short.
    with store.pairs_path.open("a", encoding="utf-8") as handle:
        handle.write('{"instruction": "q1", "output": "a1", "source": "doc#1"}\n')
    with store.progress_path.open("a", encoding="utf-8") as handle:
        handle.write('{"chunk": "doc#1", "ha')
    finished, kept = RunStore(tmp_path).open(settings, {"doc#0": "h0", "doc#1": "h1"})
    assert list(finished) == ["doc#0"] and [r["source"] for r in kept] == ["doc#0"]
    assert len(store.pairs_path.read_text(encoding="utf-8").splitlines()) == 1
    assert store.progress_path.read_text(encoding="utf-8").endswith("}\n")  # the next append starts a clean line
    with pytest.raises(ResumeMismatchError, match="doc#0\\) have different text"):
        RunStore(tmp_path).open(settings, {"doc#0": "changed", "doc#1": "h1"})
    with pytest.raises(ResumeMismatchError, match=r"qa\.generator\.temperature: 0\.0 -> 0\.7"):
        RunStore(tmp_path).open({**settings, "generator": {"temperature": 0.7}}, {"doc#0": "h0"})


def test_a_dry_run_shows_the_chunks_and_the_first_prompt_and_asks_nothing(typed, compose, tiny_cache, tmp_path, capsys):
    assert run_generate_qa(compose, tiny_cache, tmp_path / "dry", ["dry_run=true", "qa.language=en"]) is None
    out = capsys.readouterr().out
    assert "1 document(s) -> " in out and "### Instructions:" in out and "高血圧は、脳卒中" in out
    assert not (tmp_path / "dry").exists()


# ------------------------------------------------------------------------------------------ end to end


class FakeChatGPT(ScriptedChatServer):
    """A generator whose answers are pairs made from the chunk in each request (see `answer`)."""

    FORMATS = ("json_lines", "json_fence", "labelled")

    def __init__(self, fail_after: int | None = None):
        super().__init__(self.answer, fail_after)

    @staticmethod
    def answer(prompt: str) -> str:
        chunk = re.search(r"### 入力:\n(.*)\n+### 出力:", prompt, re.DOTALL).group(1).strip()
        lines = [s.strip().splitlines()[-1].strip() for s in chunk.split("。") if s.strip()]
        facts = [line + "。" for line in lines if len(line) >= 12 and not line.startswith("#")][:3]
        pairs = [(REPEATED_QUESTION, "診察室血圧140/90mmHg以上、家庭血圧135/85mmHg以上です。")]
        pairs += [(f"「{fact[:10]}」で始まる説明の内容は何ですか？", fact) for fact in facts]
        pairs.append(("血圧の単位に使われる記号は何ですか？", "m"))  # too short: dropped
        style = FakeChatGPT.FORMATS[sum(map(ord, chunk)) % 3]
        if style == "json_lines":
            return "\n".join(json.dumps({"instruction": q, "output": a}, ensure_ascii=False) for q, a in pairs)
        if style == "json_fence":
            items = [{"question": q, "answer": a} for q, a in pairs]
            return "以下が作成したデータです。\n```json\n" + json.dumps(items, ensure_ascii=False, indent=1) + "\n```"
        return "\n\n".join(f"質問: {q}\n回答: {a}" for q, a in pairs)


QA_ARGS = [
    "qa.chunk_tokens=150",
    "qa.chunk_overlap_tokens=20",
    "qa.generator.kind=endpoint",
    "qa.generator.max_retries=0",
]


def run_generate_qa(compose, tiny_cache, run_dir: Path, overrides: list[str]):
    """A real in-process generate_qa.py job (entry layer included: lock, tracker) on the tiny model."""
    from medtune.config.qa_schema import GenerateQARunConfig
    from medtune.entry import execute
    from medtune.jobs import GENERATE_QA, to_typed

    overrides = ["model=tiny", f"paths.output_root={run_dir.parent}", f"paths.cache_dir={tiny_cache}", *overrides]
    cfg = to_typed(compose(overrides, config_name="generate_qa"), GenerateQARunConfig)
    return execute(GENERATE_QA, cfg, JobContext(run_dir=run_dir, task_name="generate_qa", override_dirname="qa"))


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "qa_summary.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_generate_from_the_bundled_article_resume_after_an_outage_then_train_on_it(
    typed, compose, run_train, tiny_cache, tmp_path
):
    from medtune.tracking.offline import find_offline_runs, read_offline_run

    # An uninterrupted reference run, in-process.
    reference = tmp_path / "reference"
    with FakeChatGPT() as server:
        written = run_generate_qa(
            compose, tiny_cache, reference, [*QA_ARGS, f"qa.generator.url={server.url}", "logger=none"]
        )
    ref = summary_of(reference)
    chunks = ref["chunks"]
    assert chunks >= 6 and server.calls == chunks and ref["status"] == "complete"
    assert written == ref["written"] > chunks
    assert ref["duplicates_exact"] >= chunks - 1  # the question every answer repeats is kept once
    assert ref["dropped"]["answer_too_short"] == chunks
    assert (
        ref["pairs_parsed"] == ref["written"] + ref["dropped_total"] + ref["duplicates_exact"] + ref["duplicates_near"]
    )
    assert ref["responses_unparsable"] == 0 and len(ref["formats"]) >= 2

    # The same command as a user runs it, against a provider that goes down after 3 answers.
    run_dir = tmp_path / "interrupted"
    common = [*QA_ARGS, f"hydra.run.dir={run_dir}", f"paths.output_root={tmp_path}"]
    with FakeChatGPT(fail_after=3) as failing:
        down = cli(
            "generate_qa.py", *common, f"qa.generator.url={failing.url}", "qa.generator.concurrency=1", "logger=none"
        )
    assert down.returncode == 2, down.stderr[-2000:]
    assert f"generator.url={failing.url}: HTTP 503" in down.stderr
    progress = (run_dir / "qa_progress.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(progress) == 3 and summary_of(run_dir)["status"] == "interrupted"

    # Rerun in the same dir with a healthy provider: only the missing chunks are asked.
    with FakeChatGPT() as healthy:
        resumed = cli("generate_qa.py", *common, f"qa.generator.url={healthy.url}", "qa.generator.concurrency=3")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert healthy.calls == chunks - 3
    summary = summary_of(run_dir)
    assert summary["chunks_resumed"] == 3 and summary["chunks_done"] == chunks and summary["status"] == "complete"
    assert "records written" in resumed.stdout and "dataset=generated_qa" in resumed.stdout

    records = read_records(run_dir / "qa_pairs.jsonl")  # Alpaca, with the provenance fields ignored
    rows = [json.loads(line) for line in (run_dir / "qa_pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(rows) == summary["written"] == ref["written"]
    keyed = [(r["source"], r["instruction"], r["output"]) for r in rows]
    assert keyed == [
        (r["source"], r["instruction"], r["output"])
        for r in map(json.loads, (reference / "qa_pairs.jsonl").read_text(encoding="utf-8").splitlines())
    ]
    assert sum(r["instruction"] == REPEATED_QUESTION for r in rows) == 1
    assert len({normalize(r["instruction"]) for r in rows}) == len(rows)
    assert all(r["input"] == "" and re.fullmatch(r"hypertension_review_ja\.md#\d+", r["source"]) for r in rows)
    (offline,) = find_offline_runs(run_dir)
    tracked = read_offline_run(offline)
    assert tracked.job_type == "generate_qa" and tracked.summary["qa/written"] == summary["written"]

    # Other settings in the finished dir are refused, not mixed in, and nothing there changes.
    from medtune.finished import ResultsOfOtherSettings

    before = {f.name: f.read_bytes() for f in run_dir.iterdir() if f.is_file()}
    with pytest.raises(ResultsOfOtherSettings, match=r"finished QA generation.*qa\.pairs_per_chunk: 3 -> 5"):
        run_generate_qa(
            compose,
            tiny_cache,
            run_dir,
            [*QA_ARGS, "qa.pairs_per_chunk=5", "qa.generator.url=http://127.0.0.1:9/v1", "logger=none"],
        )
    assert {f.name: f.read_bytes() for f in run_dir.iterdir() if f.is_file()} == before

    # Train the tiny model on what was generated.
    result = run_train(
        [
            "dataset=generated_qa",
            f"dataset.path={run_dir / 'qa_pairs.jsonl'}",
            "train.max_steps=3",
            "exam_eval.enabled=false",
            "logger=none",
        ],
        name="trained",
    )
    trained = result.summary
    assert trained["train/steps"] == 3
    assert trained["data/train_records"] + trained.get("data/eval_records", 0) == len(records)


@pytest.mark.slow
def test_the_tiny_model_served_over_http_writes_noise_that_is_counted_not_crashed_on(
    typed, compose, tiny_cache, tmp_path
):
    from medtune.modeling.description import resolve_checkpoint

    checkpoint = resolve_checkpoint(typed([f"paths.cache_dir={tiny_cache}"]).model, tiny_cache)
    server = subprocess.Popen(
        [sys.executable, "-m", "medtune.llm.server", "--model-path", checkpoint, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert line.startswith("medtune server: "), server.stderr.read()[-2000:]
        url = line.split()[-1]
        run_dir = tmp_path / "noise"
        run_generate_qa(
            compose,
            tiny_cache,
            run_dir,
            [*QA_ARGS, f"qa.generator.url={url}", "qa.max_chunks=2", "qa.generator.max_new_tokens=24", "logger=none"],
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    summary = summary_of(run_dir)
    assert summary["requests"] == 2 and summary["chunks_done"] == 2 and summary["chunks"] == 2
    assert summary["chunks_in_documents"] > 2  # qa.max_chunks cut the run short
    assert (
        summary["pairs_parsed"]
        == summary["written"] + summary["dropped_total"] + summary["duplicates_exact"] + summary["duplicates_near"]
    )
    assert (run_dir / "qa_pairs.jsonl").is_file()
    progress = [json.loads(line) for line in (run_dir / "qa_progress.jsonl").read_text(encoding="utf-8").splitlines()]
    # Greedy noise: whatever the responses hold, every unparsable one is counted and kept to look at.
    assert summary["responses_unparsable"] == sum(bool(row["unparsable"]) for row in progress)
    assert all(isinstance(row["response"], str) for row in progress if row["unparsable"])


def test_a_local_generator_chunks_by_its_own_tokenizer(typed, compose, tiny_cache, tmp_path):
    run_dir = tmp_path / "local"
    run_generate_qa(
        compose,
        tiny_cache,
        run_dir,
        ["qa.max_chunks=1", "qa.chunk_tokens=96", "qa.generator.max_new_tokens=8", "logger=none"],
    )
    summary = summary_of(run_dir)
    assert summary["requests"] == 1 and summary["generator"] == "tiny"
    state = json.loads((run_dir / "qa_state.json").read_text(encoding="utf-8"))
    assert state["settings"]["chunk_measure"] == "tokenizer of tiny"
    with pytest.raises(ConfigError, match=r"qa.chunk_tokens=4000 .* more than tiny reads \(2048\)"):
        run_generate_qa(compose, tiny_cache, tmp_path / "too_long", ["qa.chunk_tokens=4000", "logger=none"])


def test_bad_settings_are_reported_together_before_anything_loads(typed, compose, tiny_cache, tmp_path):
    with pytest.raises(ConfigError) as error:
        run_generate_qa(
            compose,
            tiny_cache,
            tmp_path / "bad",
            [
                "qa.chunk_tokens=0",
                "qa.pairs_per_chunk=0",
                "qa.dedupe_threshold=1.5",
                "qa.generator.kind=endpoint",
                "logger=none",
            ],
        )
    assert len(error.value.problems) == 5
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------- a tiny local generator that works
#
# The tiny random model writes noise, so a local generator made from it writes no pairs. Here it is first
# taught, by the real trainer, the answers to the very requests generate_qa.py will send for the bundled
# article; greedy decoding then gives them back, the run parses and keeps them, and they train a model.

# Chunks for teaching the generator and for asking it (4 of the article's 13): no overlap, so no sentence is
# taught twice; 2 pairs per chunk keep the answers short.
TAUGHT_QA = ["qa.chunk_tokens=110", "qa.chunk_overlap_tokens=0", "qa.max_chunks=4", "qa.pairs_per_chunk=2"]
# Measured with these settings (seed 42, lr 1e-2): 20 steps give back 6 of the 8 pairs, 30 to 80 steps all 8
# (loss < 1e-3 from step 40); at lr 2e-2 the loss is still 0.13 after 30 steps and no pair comes back.
GENERATOR_STEPS, GENERATOR_LR = 40, "1e-2"
MIN_RECALLED = 0.75  # of the taught pairs written back word for word (measured: 8 of 8)


def taught_pairs(chunk: str, n: int) -> list[tuple[str, str]]:
    """A chunk's first n sentences as answers, each asked about by its opening words (headings skipped)."""
    lines = [piece.strip().splitlines()[-1].strip() for piece in chunk.split("。") if piece.strip()]
    sentences = [line + "。" for line in lines if not line.startswith("#")]  # a heading above a sentence drops off
    return [(f"「{sentence[:8]}」について説明してください。", sentence) for sentence in sentences[:n]]


def taught_response(pairs: list[tuple[str, str]]) -> str:
    """The JSON Lines the bundled template asks for."""
    return "\n".join(json.dumps({"instruction": q, "output": a}, ensure_ascii=False) for q, a in pairs)


@pytest.mark.slow
def test_a_tiny_generator_taught_the_qa_requests_writes_pairs_that_train_a_model(
    typed, compose, run_train, tiny_cache, tmp_path
):
    from medtune.config.qa_schema import GenerateQARunConfig
    from medtune.data.readers import InstructionRecord
    from medtune.data.templates import render_prompt
    from medtune.jobs import to_typed
    from medtune.llm.access import make_generator
    from medtune.llm.hf import LocalGenerator
    from medtune.llm.protocol import ChatRequest
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_tokenizer
    from medtune.modeling.trained import load_run_config

    # 1. The requests generate_qa.py will send, by its own chunking (the local model's tokenizer) and template.
    cfg = typed([f"paths.cache_dir={tiny_cache}"])  # the tiny model, and the alpaca prompt the teacher trains in
    qa = to_typed(
        compose(["model=tiny", f"paths.cache_dir={tiny_cache}", *TAUGHT_QA], config_name="generate_qa"),
        GenerateQARunConfig,
    ).qa
    tokenizer = load_tokenizer(resolve_checkpoint(cfg.model, tiny_cache), cfg.model)
    assert not getattr(tokenizer, "chat_template", None)  # so a run's prompt template will render each request
    all_chunks = chunk_documents(
        load_documents(None), qa.chunk_tokens, qa.chunk_overlap_tokens, token_measure(tokenizer, "tiny")
    )
    chunks = all_chunks[: qa.max_chunks]
    template, n = load_template(qa), qa.pairs_per_chunk
    requests = {c.id: render(template, c.text, n) for c in chunks}
    taught = {c.id: taught_pairs(c.text, n) for c in chunks}
    deduper = Deduper(qa.dedupe_threshold)
    limits = Limits(qa.min_question_chars, qa.min_answer_chars)
    for chunk in chunks:  # each taught pair passes validation and dedupe: a perfect recall writes them all
        assert len(taught[chunk.id]) == n
        for question, answer in taught[chunk.id]:
            assert rejection(question, answer, chunk.text, limits) is None and deduper.check(question) is None
    teach = tmp_path / "teach.jsonl"
    teach.write_text(
        "".join(
            json.dumps({"prompt": requests[c.id], "response": taught_response(taught[c.id])}, ensure_ascii=False) + "\n"
            for c in chunks
        ),
        encoding="utf-8",
    )
    prompt_tokens = max(
        len(tokenizer(render_prompt(cfg.prompt, InstructionRecord(r, "", "", "teach")))["input_ids"])
        for r in requests.values()
    )
    answer_tokens = max(
        len(tokenizer(taught_response(p), add_special_tokens=False)["input_ids"]) for p in taught.values()
    )

    # 2. Teach the tiny model those answers: every weight, in the alpaca template, nothing truncated or dropped.
    teacher = run_train(
        [
            "adapter=full",
            "dataset=prompt_response_json",
            f"dataset.path={teach}",
            "dataset.eval_fraction=0",
            "prompt=alpaca",
            f"train.max_steps={GENERATOR_STEPS}",
            f"train.learning_rate={GENERATOR_LR}",
            "train.save_steps=0",
            f"train.max_input_tokens={prompt_tokens}",
            f"train.max_target_tokens={answer_tokens + 1}",
            "exam_eval.enabled=false",
            "logger=none",
        ],
        name="generator",
    )
    taught_summary = teacher.summary
    assert taught_summary["train/steps"] == GENERATOR_STEPS
    assert taught_summary["data/train_kept"] == len(chunks) and taught_summary["data/train_truncated_inputs"] == 0
    assert taught_summary["train/loss_last"] < 0.05 < taught_summary["train/loss_first"]

    # 3. Ask it through generate_qa.py: same chunks, greedy, room for the longest taught answer.
    local = [
        *TAUGHT_QA,
        "qa.generator.kind=local",
        f"qa.generator.run={teacher.run_dir}",
        "qa.generator.temperature=0",
        f"qa.generator.max_new_tokens={answer_tokens + 16}",
        "logger=none",
    ]
    qa_cfg = to_typed(
        compose(["model=tiny", f"paths.cache_dir={tiny_cache}", *local], config_name="generate_qa"), GenerateQARunConfig
    )
    generator = make_generator(
        qa_cfg.qa.generator, model_cfg=qa_cfg.model, hardware=qa_cfg.hardware, cache_dir=tiny_cache, key="qa.generator"
    )
    trained_prompt = load_run_config(teacher.run_dir).prompt  # the template the generator was taught in
    assert (
        isinstance(generator, LocalGenerator) and generator.prompt == trained_prompt and trained_prompt.name == "alpaca"
    )
    assert not getattr(generator.tokenizer, "chat_template", None)  # a chat template would win over the run's prompt
    for chunk in chunks:  # the generator reads each request exactly as the trainer rendered it
        request = requests[chunk.id]
        assert generator.render(ChatRequest(user=request)) == render_prompt(
            trained_prompt, InstructionRecord(request, "", "", "t")
        )
    del generator
    run_dir = tmp_path / "local_qa"
    written = run_generate_qa(compose, tiny_cache, run_dir, local)
    summary = summary_of(run_dir)
    assert summary["status"] == "complete" and summary["generator"] == teacher.run_dir.name
    assert summary["chunks"] == summary["requests"] == len(chunks) and summary["chunks_in_documents"] == len(all_chunks)
    assert summary["pairs_parsed"] > 0 and written == summary["written"] > 0
    assert (
        summary["pairs_parsed"]
        == summary["written"] + summary["dropped_total"] + summary["duplicates_exact"] + summary["duplicates_near"]
    )
    rows = [json.loads(line) for line in (run_dir / "qa_pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == written and {r["source"] for r in rows} <= set(requests)
    expected = {(cid, q, a) for cid, pairs in taught.items() for q, a in pairs}
    recalled = expected & {(r["source"], r["instruction"], r["output"]) for r in rows}
    assert len(recalled) >= MIN_RECALLED * len(expected), (len(recalled), rows)

    # 4. Train a model on what the generator wrote: every written record is a training (or eval) example.
    student = run_train(
        [
            "dataset=generated_qa",
            f"dataset.path={run_dir / 'qa_pairs.jsonl'}",
            "train.max_steps=3",
            "exam_eval.enabled=false",
            "logger=none",
        ],
        name="student",
    )
    trained = student.summary
    assert trained["train/steps"] == 3
    assert trained["data/train_records"] + trained.get("data/eval_records", 0) == written
    assert trained["data/train_kept"] + trained.get("data/eval_kept", 0) == written
