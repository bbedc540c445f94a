"""Issue 21 item 6: public medical exams in other shapes read right (choice counts, Chinese, context, keys)."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from medtune.config.schema import PromptConfig
from medtune.data.readers import InstructionRecord, format_choices
from medtune.data.templates import choice_count, fill_template
from medtune.errors import DataError
from medtune.exam.prompting import exam_prompt
from medtune.vocabulary import ExamQuestion


def _prompt(name: str) -> PromptConfig:
    import yaml

    data = yaml.safe_load((REPO / "conf" / "prompt" / f"{name}.yaml").read_text(encoding="utf-8"))
    return PromptConfig(**{k: v for k, v in data.items() if k in PromptConfig.__dataclass_fields__})


def _question(n_choices: int) -> ExamQuestion:
    return ExamQuestion(
        qid="q1",
        question="Which vitamin deficiency causes scurvy?",
        choices=tuple(f"choice {i}" for i in range(n_choices)),
        answers=("a",),
    )


@pytest.mark.parametrize(("n", "word"), [(4, "four"), (5, "five"), (3, "three")])
def test_prompt_a_in_english_names_the_questions_own_number_of_choices(n, word):
    text = exam_prompt(_prompt("medpalm2_cot_en"), _question(n), []).text
    assert f"Output a single option from the {word} options" in text
    assert "{choice_count" not in text


def test_prompt_a_in_japanese_counts_in_digits():
    text = exam_prompt(_prompt("medpalm2_cot"), _question(4), []).text
    assert "4つの選択肢から1つを出力してください" in text
    assert exam_prompt(_prompt("alpaca_cot"), _question(5), []).text.count("5つの選択肢") == 1


def test_choice_count_reads_lettered_lines_and_numbers_past_26():
    assert choice_count(InstructionRecord("q", format_choices(["x", "y", "z", "w"]), "", "f:1")) == 4
    assert choice_count(InstructionRecord("q", format_choices([str(i) for i in range(30)]), "", "f:2")) == 30
    assert choice_count(InstructionRecord("q", "a. only one\nthen free text", "", "f:3")) == 1
    assert choice_count(InstructionRecord("q", "", "", "f:4")) == 0


def test_a_record_without_choices_under_a_counting_prompt_is_refused_naming_it():
    with pytest.raises(DataError, match=r"train\.jsonl:7: prompt=medpalm2_cot_en states how many choices") as error:
        fill_template(_prompt("medpalm2_cot_en"), InstructionRecord("Explain scurvy.", "", "", "train.jsonl:7"))
    assert "prompt=alpaca" in str(error.value)


# ---------------------------------------------------------------- Chinese


def test_chinese_prompts_count_the_choices_and_use_the_chinese_worked_examples():
    from medtune.exam.prompting import read_fewshot

    shots = read_fewshot(None, "zh")
    assert len(shots) == 6 and "川崎病" in shots[5].explanation
    text = exam_prompt(_prompt("medpalm2_cot_zh"), _question(4), shots[:1]).text
    assert "最后从4个选项中选出一个作为答案" in text
    assert "答案: b. 缺铁性贫血" in text  # the worked example ends at the prompt's answer marker
    assert "从5个选项中" in exam_prompt(_prompt("alpaca_cot_zh"), _question(5), []).text


@pytest.mark.parametrize(
    ("response", "picked"),
    [
        ("维生素C缺乏导致坏血病。\n答案：b. choice 1", ("b",)),
        ("逐步分析如下……最终答案是C", ("c",)),
        ("答案为 d", ("d",)),
        ("答案: a", ("a",)),
    ],
)
def test_chinese_answer_statements_are_read(response, picked):
    from medtune.exam.scoring import score_response

    assert score_response(_question(5), response).parsed == picked


def test_a_chinese_exam_with_a_japanese_prompt_is_refused_naming_the_chinese_prompt(compose):
    from omegaconf import OmegaConf

    from medtune.rules.language import check_prompt_language

    cfg = OmegaConf.to_object(compose(["exam=jsonl", "exam.path=/tmp/x.jsonl", "exam.language=zh"], "evaluate"))
    problems = check_prompt_language(cfg)
    assert problems and "e.g. prompt=medpalm2_cot_zh" in problems[0]


# ---------------------------------------------------------------- a single file given to exam=igakuqa


@pytest.mark.parametrize("years", [None, "[2018]"])
def test_igakuqa_given_a_single_file_points_to_exam_jsonl(tmp_path, compose, years):
    from omegaconf import OmegaConf

    from medtune.exam.loading import select_exam

    path = tmp_path / "medqa_test.jsonl"
    path.write_text('{"problem_id": "1", "problem_text": "Q?", "choices": ["x", "y"], "answer": ["a"]}\n')
    overrides = ["exam=igakuqa", f"exam.path={path}", *([f"exam.years={years}"] if years else ["exam.years=[]"])]
    cfg = OmegaConf.to_object(compose(overrides, "evaluate"))
    with pytest.raises(DataError, match=r"is a single file, but exam=igakuqa reads a folder") as error:
        select_exam(cfg.exam)
    assert f"use exam=jsonl exam.path={path}" in str(error.value)


# ---------------------------------------------------------------- the stated language against the text


@pytest.mark.parametrize(
    ("texts", "language"),
    [
        (["A 45-year-old man presents with chest pain radiating to the left arm.", "Aspirin", "Heparin"], "en"),
        (["45歳の男性。左腕に放散する胸痛を主訴に来院した。心電図でST上昇を認める。", "アスピリン"], "ja"),
        (["45岁男性，胸痛放射至左臂，心电图示ST段抬高。最可能的诊断是什么？", "阿司匹林", "肝素"], "zh"),
        (["Bệnh nhân nam 45 tuổi đau ngực lan ra cánh tay trái, điện tâm đồ có ST chênh lên.", "Aspirin"], "vi"),
        (["short"], None),
    ],
)
def test_the_questions_language_is_read_from_their_script(texts, language):
    from medtune.exam.text_language import detect_language

    assert detect_language(texts).language == language


def test_an_english_file_under_exam_jsonl_stated_japanese_is_refused_with_the_fix(tmp_path, compose):
    from omegaconf import OmegaConf

    from medtune.exam.loading import select_exam

    path = tmp_path / "medqa.jsonl"
    record = {
        "problem_id": "1",
        "problem_text": "A 23-year-old woman has fever and a new heart murmur. What is the next step?",
        "choices": ["Blood cultures", "Echocardiography later", "Discharge", "Antipyretics only"],
        "answer": ["a"],
    }
    path.write_text(json.dumps(record) + "\n")
    cfg = OmegaConf.to_object(compose(["exam=jsonl", f"exam.path={path}"], "evaluate"))
    assert cfg.exam.language == "ja"  # exam=jsonl's default statement
    with pytest.raises(DataError, match=r"states exam.language=ja, but its questions read as en") as error:
        select_exam(cfg.exam)
    assert "Set exam.language=en and pick a prompt in en" in str(error.value)
    stated_right = OmegaConf.to_object(compose(["exam=jsonl", f"exam.path={path}", "exam.language=en"], "evaluate"))
    assert [q.qid for q in select_exam(stated_right.exam).questions] == ["1"]
    kept = ["exam=jsonl", f"exam.path={path}", "exam.allow_prompt_language_mismatch=true"]
    assert len(select_exam(OmegaConf.to_object(compose(kept, "evaluate")).exam).questions) == 1


# ---------------------------------------------------------------- a passage with the question (PubMedQA)


def test_a_context_field_reaches_the_prompt_before_the_question(tmp_path, compose):
    from omegaconf import OmegaConf

    from medtune.exam.loading import select_exam

    path = tmp_path / "pubmedqa.jsonl"
    abstract = ["BACKGROUND: Statins lower LDL cholesterol.", "RESULTS: Events fell by a quarter in 4,000 patients."]
    records = [
        {"problem_id": "p1", "problem_text": "Do statins reduce events?", "choices": ["yes", "no", "maybe"],
         "answer": "a", "CONTEXTS": abstract},
        {"problem_id": "p2", "problem_text": "Is the trial blinded?", "choices": ["yes", "no", "maybe"],
         "answer": "c", "CONTEXTS": {"not": "text"}},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    overrides = ["exam=jsonl", f"exam.path={path}", "exam.language=en", "exam.fields.context=CONTEXTS"]
    selection = select_exam(OmegaConf.to_object(compose(overrides, "evaluate")).exam)
    (question,) = selection.questions
    assert question.context == "\n\n".join(abstract)
    (excluded,) = selection.excluded
    assert excluded.kind == "bad_context" and "expected text or a list of texts" in excluded.reason
    text = exam_prompt(_prompt("medpalm2_cot_en"), question, []).text
    assert text.index("RESULTS: Events fell") < text.index("Do statins reduce events?") < text.index("c. maybe")
    assert "from the three options" in text
