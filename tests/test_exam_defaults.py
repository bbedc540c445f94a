"""Per-exam defaults (conf/exam/*.yaml) and the rule that the prompt is in the exam's language.

Every config here is composed by Hydra from the real conf/, as evaluate.py and train.py compose it,
then made typed with `OmegaConf.to_object`; `check_prompt_language` is called on it directly. The
shared-data test reads IgakuQA under $MEDTUNE_SHARED/data and skips without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import CONF, TINY_TRAIN_DEFAULTS
from medtune.config.eval_schema import EvalRunConfig
from medtune.config.exam_schema import ExamAggregate
from medtune.config.schema import TrainRunConfig
from medtune.exam.aggregation import BREAKDOWNS, aggregate
from medtune.exam.loading import select_exam
from medtune.exam.overrides import bundled_overrides_path
from medtune.exam.scoring import score_letters
from medtune.rules.language import PROMPT_FOR_LANGUAGE, check_prompt_language

IGAKUQA_BREAKDOWNS = ["points", "essential", "block", "category", "kinki"]
BREAKDOWN_KEYS = (
    "points",
    "points_total",
    "essential",
    "general",
    "by_block",
    "by_category",
    "kinki_picked",
    "kinki_questions",
)


@pytest.fixture()
def compose_plain():
    """compose_plain(overrides, config_name) -> DictConfig: Hydra's compose on the real conf/, no tiny defaults."""
    from hydra import compose, initialize_config_dir

    from medtune.config.store import register_configs

    register_configs()

    def _compose(overrides=(), config_name: str = "evaluate"):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))

    return _compose


@pytest.fixture()
def evaluate_cfg(compose_plain):
    """evaluate_cfg(*overrides) -> EvalRunConfig as evaluate.py composes it (no rules run)."""

    def _typed(*overrides: str) -> EvalRunConfig:
        typed = OmegaConf.to_object(compose_plain(overrides, "evaluate"))
        assert isinstance(typed, EvalRunConfig)
        return typed

    return _typed


@pytest.fixture()
def new_exam(tmp_path: Path):
    """A config folder with exam/new_exam.yaml (name, format and path only) and its questions file."""
    path = tmp_path / "new_exam.jsonl"
    records = [
        {
            "problem_id": "N-1",
            "problem_text": "Pick three.",
            "choices": ["a1", "b1", "c1", "d1", "e1"],
            "answer": ["a", "b", "c"],
            "text_only": False,
            "points": 3,
        },
        {"problem_id": "N-2", "problem_text": "How many?", "choices": [], "answer": ["12"]},
        # IgakuQA's ministry corrections accept a or d for 112B30; a new exam's 112B30 is its own.
        {
            "problem_id": "112B30",
            "problem_text": "Pick one.",
            "choices": ["a2", "b2", "c2", "d2", "e2"],
            "answer": ["a"],
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    folder = tmp_path / "conf_extra"
    (folder / "exam").mkdir(parents=True)
    (folder / "exam" / "new_exam.yaml").write_text(f"name: new_exam\nformat: jsonl\npath: {path}\n")
    return [f"hydra.searchpath=[file://{folder}]", "exam=new_exam"]


# ---------------------------------------------------------------- the default prompt of an exam


def test_medqa_en_is_asked_in_english_unless_the_command_line_names_a_prompt(evaluate_cfg):
    default = evaluate_cfg("exam=medqa_en")
    assert (default.prompt.name, default.prompt.language, default.exam.language) == ("medpalm2_cot_en", "en", "en")
    assert check_prompt_language(default) == []
    assert evaluate_cfg("exam=medqa_en", "prompt=alpaca_cot_en").prompt.name == "alpaca_cot_en"
    assert evaluate_cfg("prompt=alpaca_cot_en", "exam=medqa_en").prompt.name == "alpaca_cot_en"
    assert evaluate_cfg("exam=medqa_en", "prompt=medpalm2_cot").prompt.name == "medpalm2_cot"
    # Japanese exams keep prompt A in Japanese; so does evaluate.py with no exam given.
    assert [evaluate_cfg(*o).prompt.name for o in ([], ["exam=igakuqa"], ["exam=jjsimqa"])] == ["medpalm2_cot"] * 3


@pytest.mark.parametrize(
    "overrides, prompt",
    [
        ([], "chat"),  # train.py's own defaults: exam=sample_en, prompt=chat
        (["exam=medqa_en"], "chat"),
        (["exam=igakuqa"], "chat"),
        (["experiment=jmedlora_opencalm7b_lora"], "alpaca"),  # the experiment's prompt, with its exam=igakuqa
        (["exam=medqa_en", "prompt=alpaca"], "alpaca"),
        (list(TINY_TRAIN_DEFAULTS), "alpaca"),
    ],
)
def test_an_exam_never_changes_the_training_prompt(compose_plain, overrides, prompt):
    assert compose_plain(overrides, "train").prompt.name == prompt


# ---------------------------------------------------------------- the language rule


def test_a_japanese_prompt_on_an_english_exam_is_refused_naming_both_and_the_ways_out(evaluate_cfg):
    (problem,) = check_prompt_language(evaluate_cfg("exam=medqa_en", "prompt=medpalm2_cot"))
    assert "prompt=medpalm2_cot is in ja" in problem and "exam=medqa_en is in en" in problem
    assert "e.g. prompt=medpalm2_cot_en" in problem
    assert "exam.allow_prompt_language_mismatch=true" in problem
    meant = evaluate_cfg("exam=medqa_en", "prompt=medpalm2_cot", "exam.allow_prompt_language_mismatch=true")
    assert check_prompt_language(meant) == []


def test_igakuqa_in_english_needs_an_english_prompt(evaluate_cfg):
    (problem,) = check_prompt_language(evaluate_cfg("exam=igakuqa", "exam.english=true"))
    assert "exam=igakuqa is in en (exam.english=true" in problem and "prompt=medpalm2_cot_en" in problem
    assert check_prompt_language(evaluate_cfg("exam=igakuqa", "exam.english=true", "prompt=medpalm2_cot_en")) == []


def test_an_english_prompt_on_a_japanese_exam_is_refused_and_names_a_japanese_one(evaluate_cfg, tmp_path):
    (problem,) = check_prompt_language(evaluate_cfg("exam=jsonl", f"exam.path={tmp_path}", "prompt=alpaca_cot_en"))
    assert "prompt=alpaca_cot_en is in en" in problem and "exam=jsonl is in ja" in problem
    assert "e.g. prompt=medpalm2_cot;" in problem and "set exam.language=en" in problem
    ok = evaluate_cfg("exam=jsonl", f"exam.path={tmp_path}", "exam.language=en", "prompt=alpaca_cot_en")
    assert check_prompt_language(ok) == []


@pytest.mark.parametrize(
    "overrides",
    [
        ["exam=medqa_en", "prompt=medpalm2_cot", "prompt.language=null"],  # the prompt states no language
        ["exam=medqa_en", "prompt=medpalm2_cot", "exam.language=null"],  # the exam states none
        ["exam=medqa_en", "prompt=medpalm2_cot", "predictions=published.jsonl"],  # a replay asks nothing
        ["exam=sample", "prompt=medpalm2_cot_en"],  # Japanese and English questions
        ["exam=sample", "prompt=vi_chat"],
    ],
)
def test_nothing_to_refuse(evaluate_cfg, overrides):
    assert check_prompt_language(evaluate_cfg(*overrides)) == []


def test_train_exam_check_follows_the_same_rule(compose_plain):
    def problems(*overrides: str) -> list[str]:
        typed = OmegaConf.to_object(compose_plain(overrides, "train"))
        assert isinstance(typed, TrainRunConfig)
        return check_prompt_language(typed)

    assert problems() == [] and problems(*TINY_TRAIN_DEFAULTS) == []
    assert problems("exam=medqa_en") == []  # prompt=chat is English
    (problem,) = problems("exam=igakuqa")
    assert "prompt=chat is in en" in problem and "exam=igakuqa is in ja" in problem
    assert problems("exam=igakuqa", "exam_eval.enabled=false") == []  # no exam check, nothing asked


def test_the_prompts_the_rule_names_exist_in_their_language_and_every_option_states_one():
    for language, name in PROMPT_FOR_LANGUAGE.items():
        assert OmegaConf.load(CONF / "prompt" / f"{name}.yaml").language == language
    for group in ("prompt", "exam"):
        for path in (CONF / group).glob("*.yaml"):
            assert OmegaConf.load(path).get("language") in ("ja", "en", "zh", "vi"), path


# ---------------------------------------------------------------- neutral defaults for a new exam


def test_a_new_exam_keeps_every_question_its_own_keys_and_no_igakuqa_breakdowns(evaluate_cfg, new_exam):
    cfg = evaluate_cfg(*new_exam)
    exam = cfg.exam
    assert (exam.text_only, exam.require_choices, exam.min_answers, exam.max_answers) == (False, False, 1, 99)
    assert (exam.answer_overrides, exam.aggregates, exam.language) == (None, [], None)
    assert cfg.prompt.name == "medpalm2_cot"  # evaluate.py's own default: the exam names none
    questions = select_exam(exam).questions
    assert [q.qid for q in questions] == ["N-1", "N-2", "112B30"]  # an image, three answers, a number: all kept
    (key,) = [q for q in questions if q.qid == "112B30"]
    assert key.answers == ("a",) and key.accepted == ()  # not IgakuQA's correction
    metrics = aggregate(questions, [score_letters(q, list(q.answers)) for q in questions], exam.aggregates)
    assert metrics["accuracy"] == 1.0 and not set(BREAKDOWN_KEYS) & set(metrics)
    assert check_prompt_language(cfg) == []  # no language stated: nothing to compare


def test_a_new_exam_composes_for_training_too(compose_plain, new_exam):
    typed = OmegaConf.to_object(compose_plain(new_exam, "train"))
    assert typed.exam.name == "new_exam" and typed.prompt.name == "chat"


def test_medqa_jjsimqa_and_sample_en_carry_no_igakuqa_assumptions(evaluate_cfg, tmp_path):
    for name in ("medqa_en", "jjsimqa", "sample_en"):
        exam = evaluate_cfg(f"exam={name}").exam
        assert (exam.text_only, exam.max_answers, exam.require_choices) == (False, 99, False), name
        assert (exam.answer_overrides, exam.aggregates) == (None, []), name
    generic = evaluate_cfg("exam=jsonl", f"exam.path={tmp_path}").exam
    assert (generic.answer_overrides, generic.aggregates, generic.max_answers) == (None, [], 99)
    assert generic.require_choices  # multiple choice: a question without a choice list is left out


# ---------------------------------------------------------------- IgakuQA's defaults, now in its yaml


def test_igakuqa_sets_the_paper_subset_the_ministry_corrections_and_its_breakdowns(evaluate_cfg):
    exam = evaluate_cfg("exam=igakuqa").exam
    assert (exam.language, exam.years) == ("ja", [2018])
    assert (exam.text_only, exam.min_answers, exam.max_answers, exam.require_choices) == (True, 1, 2, True)
    assert Path(exam.answer_overrides) == bundled_overrides_path()
    assert [a.value for a in exam.aggregates] == IGAKUQA_BREAKDOWNS
    assert evaluate_cfg("exam=igakuqa", "exam.answer_overrides=null").exam.answer_overrides is None


def test_the_sample_exam_keeps_its_filters_and_breakdowns(evaluate_cfg):
    exam = evaluate_cfg("exam=sample").exam
    assert (exam.text_only, exam.max_answers, exam.require_choices) == (True, 2, True)
    assert [a.value for a in exam.aggregates] == IGAKUQA_BREAKDOWNS and exam.allow_prompt_language_mismatch
    assert len(select_exam(exam).questions) == 40


def test_shared_igakuqa_2018_from_its_config_is_277_with_112b30_corrected(evaluate_cfg, shared_data):
    exam = evaluate_cfg("exam=igakuqa", f"paths.shared={shared_data}").exam
    questions = select_exam(exam).questions
    assert len(questions) == 277
    every = evaluate_cfg(
        "exam=igakuqa",
        f"paths.shared={shared_data}",
        "exam.text_only=false",
        "exam.max_answers=99",
        "exam.require_choices=false",
    ).exam
    (b30,) = [q for q in select_exam(every).questions if q.qid == "112B30"]  # a question with an image
    assert b30.answers == ("a",) and b30.accepted == (("d",),)
    metrics = aggregate(questions, [score_letters(q, list(q.answers)) for q in questions], exam.aggregates)
    assert metrics.keys() == aggregate(questions, [score_letters(q, list(q.answers)) for q in questions]).keys()
    assert sum(r["n"] for r in metrics["by_block"].values()) == 277 and metrics["kinki_questions"] > 0


# ---------------------------------------------------------------- breakdowns


def test_breakdowns_are_the_exam_aggregates_and_an_unknown_one_is_refused(evaluate_cfg):
    assert set(BREAKDOWNS) == {a.value for a in ExamAggregate}
    questions = select_exam(evaluate_cfg("exam=sample").exam).questions[:3]
    results = [score_letters(q, list(q.answers)) for q in questions]
    points_only = aggregate(questions, results, ["points"])
    assert points_only["points"] == sum(q.points for q in questions)
    assert not {"essential", "by_block", "by_category", "kinki_picked"} & set(points_only)
    blocks_only = aggregate(questions, results, [ExamAggregate.essential])
    assert "points" not in blocks_only["essential"] and blocks_only["general"]["n"] == 3
    with pytest.raises(ValueError, match="unknown breakdown 'pass_line'"):
        aggregate(questions, results, ["pass_line"])
