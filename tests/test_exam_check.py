"""Training's exam check: intervals, the paired after - before difference in words, retention exams,
the contamination audit of the run's training data, and loglik calibration (issue 21)."""

from __future__ import annotations

import json

import pytest

from medtune.config.schema import TrainRunConfig
from medtune.errors import ConfigError
from medtune.exam.aggregation import aggregate
from medtune.exam.scoring import score_letters
from medtune.reporting.intervals import paired_difference
from medtune.tracking.offline import find_offline_runs, read_offline_run
from medtune.training.exam_check import TARGET, CheckedExam, Measurement
from medtune.training.exam_report import exam_keys, question_rows, verdict
from medtune.vocabulary import ExamQuestion


def _questions(n: int) -> list[ExamQuestion]:
    return [
        ExamQuestion(qid=f"q{i}", question=f"Question {i}?", choices=("one", "two", "three"), answers=("a",))
        for i in range(n)
    ]


def _measurement(step: int, questions: list[ExamQuestion], right: set[int], confidences=None) -> Measurement:
    answers = [score_letters(q, ("a",) if i in right else ("b",)) for i, q in enumerate(questions)]
    return Measurement(step, aggregate(questions, answers, ()), answers, confidences)


def test_before_after_keys_carry_wilson_intervals_and_the_paired_difference():
    questions = _questions(20)
    before = _measurement(0, questions, set(range(5)))  # 5 of 20
    after = _measurement(10, questions, set(range(2, 18)))  # 16 of 20: 13 gained, 2 lost
    exam = CheckedExam(TrainRunConfig().exam, TARGET, questions, measurements=[before, after])
    keys = exam_keys(exam)
    assert keys["exam/accuracy_before"] == 0.25 and keys["exam/accuracy_after"] == 0.8
    # Wilson 95% for 5 of 20, by hand: (0.25 + 0.09604 -+ 1.96 sqrt(0.009375 + 0.0024)) / 1.19208
    assert keys["exam/accuracy_before_low"] == pytest.approx(0.1119, abs=1e-4)
    assert keys["exam/accuracy_before_high"] == pytest.approx(0.4687, abs=1e-4)
    assert keys["exam/difference"] == pytest.approx(0.55)
    expected = paired_difference(
        {f"q{i}": float(i < 5) for i in range(20)}, {f"q{i}": float(2 <= i < 18) for i in range(20)}
    )
    assert (keys["exam/difference_low"], keys["exam/difference_high"]) == (expected.low, expected.high)
    assert keys["exam/difference_low"] > 0 and keys["exam/difference_verdict"] == "gain beyond noise"
    # exact McNemar on 2 lost / 13 gained: 2 * P(X <= 2), X ~ Bin(15, 1/2) = 2 * 121 / 32768
    assert keys["exam/mcnemar_p"] == pytest.approx(2 * 121 / 32768)
    assert keys["exam/strict_difference"] == pytest.approx(0.55)
    rows = question_rows(exam)
    assert rows[0]["status_before"] == "correct" and rows[0]["status_after"] == "wrong"
    assert [r["status_after"] for r in rows].count("correct") == 16


def test_a_small_change_is_called_within_noise_and_retention_keys_have_their_own_prefix():
    questions = _questions(30)
    before = _measurement(0, questions, set(range(10)))
    after = _measurement(8, questions, set(range(1, 12)))  # 11 of 30: one more
    config = TrainRunConfig().exam
    config.name = "medqa_en"
    exam = CheckedExam(config, "retention", questions, measurements=[before, after])
    keys = exam_keys(exam)
    assert keys["retention/medqa_en/difference"] == pytest.approx(1 / 30)
    assert keys["retention/medqa_en/difference_low"] <= 0 <= keys["retention/medqa_en/difference_high"]
    assert keys["retention/medqa_en/difference_verdict"] == "within noise"
    assert not any(key.startswith("exam/") for key in keys)


def test_loglik_confidences_give_ece_and_brier_before_and_after():
    questions = _questions(4)
    # confidences 0.9 (right), 0.8 (right), 0.6 (wrong), 0.5 (wrong): Brier (0.01 + 0.04 + 0.36 + 0.25) / 4
    after = _measurement(5, questions, {0, 1}, [0.9, 0.8, 0.6, 0.5])
    before = _measurement(0, questions, {0, 1}, [0.9, 0.8, 0.6, 0.5])
    keys = exam_keys(CheckedExam(TrainRunConfig().exam, TARGET, questions, measurements=[before, after]))
    assert keys["exam/brier_after"] == pytest.approx(0.165)
    # ECE over 15 bins: each confidence alone in its bin: (0.1 + 0.2 + 0.6 + 0.5) / 4
    assert keys["exam/ece_after"] == pytest.approx(0.35)
    assert verdict(paired_difference({"a": 1.0}, {"a": 1.0})) == "within noise"


def test_retention_exams_are_checked_by_name_and_language(typed):
    with pytest.raises(ConfigError) as refused:
        typed(["exam_eval.retention=[nosuch,sample,sample_en,sample_en]"])
    text = str(refused.value)
    assert "exam_eval.retention: no exam option 'nosuch'" in text and "medqa_en" in text  # the options listed
    assert "exam_eval.retention holds exam=sample, the target exam itself" in text
    assert "exam_eval.retention names sample_en more than once" in text
    with pytest.raises(ConfigError, match=r"exam_eval.retention's medqa_en is in en .*prompt=medpalm2_cot_en"):
        typed(["prompt=medpalm2_cot", "exam_eval.retention=[medqa_en]"])
    with pytest.raises(ConfigError, match=r"exam_eval.retention_max_questions=0 must be positive"):
        typed(["exam_eval.retention=[sample_en]", "exam_eval.retention_max_questions=0"])


@pytest.mark.slow
def test_a_training_run_reports_both_exams_with_intervals_audit_and_calibration(run_train, tmp_path, capsys):
    result = run_train(
        [
            "train.max_steps=4",
            "train.eval_steps=0",
            "exam_eval.mode=loglik",
            "exam_eval.retention=[sample_en]",
            "exam_eval.retention_max_questions=6",
        ]
    )
    summary = result.summary
    printed = capsys.readouterr().out
    for p in ("exam/", "retention/sample_en/"):
        for when in ("before", "after"):
            assert summary[f"{p}accuracy_{when}_low"] <= summary[f"{p}accuracy_{when}"]
            assert summary[f"{p}accuracy_{when}"] <= summary[f"{p}accuracy_{when}_high"]
            assert 0.0 <= summary[f"{p}ece_{when}"] <= 1.0 and 0.0 <= summary[f"{p}brier_{when}"] <= 1.0
        difference = summary[f"{p}difference"]
        assert difference == pytest.approx(summary[f"{p}accuracy_after"] - summary[f"{p}accuracy_before"])
        covers = summary[f"{p}difference_low"] <= 0 <= summary[f"{p}difference_high"]
        assert (summary[f"{p}difference_verdict"] == "within noise") == covers
    assert summary["retention/sample_en/n"] == 6
    # dataset=sample holds the sample exam: every question is found in the training data
    assert summary["exam/contaminated"] == summary["exam/n"] == 40
    assert summary["retention/sample_en/contaminated"] == 6
    assert summary["exam/contamination_warning"].startswith("CONTAMINATION: 40 of the 40 questions of exam=sample")
    assert "after - before, paired on the same questions" in printed and "CONTAMINATION: 40 of the 40" in printed
    rows = [json.loads(line) for line in (result.run_dir / "exam_check.jsonl").read_text().splitlines()]
    assert len(rows) == 46 and {r["exam"] for r in rows} == {"sample", "sample_en"}
    assert all(r["contamination"] == "exact" and r["closest_training_record"]["source"] for r in rows)
    assert all(0.0 <= r["confidence_after"] <= 1.0 for r in rows)
    record = json.loads((result.run_dir / "exam_check.json").read_text())
    words = record[0]["difference"]["words"]
    assert words.startswith("after - before = ") and ("within noise" in words) == (
        summary["exam/difference_verdict"] == "within noise"
    )
    (offline,) = find_offline_runs(result.run_dir)
    wandb_summary = read_offline_run(offline).summary
    assert wandb_summary["exam/difference"] == pytest.approx(summary["exam/difference"])
    assert wandb_summary["retention/sample_en/accuracy_after_high"] == pytest.approx(
        summary["retention/sample_en/accuracy_after_high"]
    )
    assert wandb_summary["exam/difference_verdict"] == summary["exam/difference_verdict"]


@pytest.mark.slow
def test_a_multirun_over_seeds_ends_with_mean_sd_and_per_seed_values(tmp_path):
    from conftest import cli

    result = cli(
        "train.py",
        "-m",
        "seed=1,2",
        "train.max_steps=2",
        "train.eval_steps=0",
        "exam_eval.mode=loglik",
        f"paths.output_root={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = tmp_path.glob("train/multiruns/*")
    folded = json.loads((sweep_dir / "seeds.json").read_text())
    assert len(folded) == 1 and folded[0]["seeds"] == ["1", "2"]
    after = folded[0]["metrics"]["exam/accuracy_after"]
    jobs = [json.loads((sweep_dir / str(n) / "train_summary.json").read_text()) for n in (0, 1)]
    assert after["per_seed"] == [job["exam/accuracy_after"] for job in jobs]
    assert after["mean"] == pytest.approx(sum(after["per_seed"]) / 2)
    assert after["sd"] == pytest.approx(abs(after["per_seed"][0] - after["per_seed"][1]) / 2**0.5)
    assert "| exam/difference |" in (sweep_dir / "seeds.md").read_text()
    assert "mean ± sd" in result.stdout and "exam/accuracy_after" in result.stdout
    seed_runs = [read_offline_run(p) for p in find_offline_runs(sweep_dir / "wandb")]
    (summary_run,) = [run for run in seed_runs if run.job_type == "seeds"]
    assert summary_run.summary["seeds/exam/accuracy_after_mean"] == pytest.approx(after["mean"])
    job_run = read_offline_run(find_offline_runs(sweep_dir / "0")[0])
    assert summary_run.group == job_run.group


def test_exam_eval_num_shots_puts_worked_examples_before_each_question(typed, tiny_cache):
    """exam_eval.num_shots picks worked examples of each exam's language, as eval.num_shots does, and
    the model is asked after them (a random-init model's letter scores move with its prompt)."""
    from medtune.config.exam_schema import EvalConfig
    from medtune.data.templates import stop_token_ids
    from medtune.exam.prompting import exam_prompt
    from medtune.llm.hf import HfModel
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_base_model, load_tokenizer
    from medtune.training.exam_check import ask, checked_exams

    cfg = typed(["exam_eval.num_shots=2", "exam_eval.mode=loglik", "contamination.enabled=false"])
    (exam,) = checked_exams(cfg)
    assert len(exam.shots) == 2 and all(shot.explanation for shot in exam.shots)
    assert [shot.qid for shot in checked_exams(typed(["contamination.enabled=false"]))[0].shots] == []

    checkpoint = resolve_checkpoint(cfg.model, tiny_cache)
    tokenizer = load_tokenizer(checkpoint, cfg.model)
    model = load_base_model(checkpoint, cfg.model, cfg.adapter, cfg.hardware)
    access = HfModel(model, tokenizer, EvalConfig(), cfg.prompt, "check", stop_token_ids(tokenizer, cfg.prompt))
    question = exam.questions[0]
    rendered = access.render(exam_prompt(cfg.prompt, question, exam.shots))
    assert (
        rendered.index(exam.shots[0].question)
        < rendered.index(exam.shots[1].question)
        < rendered.index(question.question)
    )
    _, asked_with = ask(cfg, model, tokenizer, exam.questions[:4], exam.shots)
    _, asked_without = ask(cfg, model, tokenizer, exam.questions[:4])
    assert asked_with != asked_without


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["exam_eval.num_shots=6"], r"exam_eval\.num_shots=6 must be between 0 and 5"),
        (
            ["exam_eval.num_shots=1", "exam.fewshot_path=/nowhere/shots.jsonl"],
            r"exam\.fewshot_path=/nowhere/shots\.jsonl does not exist \(exam_eval\.num_shots=1 reads it\)",
        ),
    ],
)
def test_exam_eval_num_shots_is_checked(typed, overrides, message):
    with pytest.raises(ConfigError, match=message):
        typed(overrides)
