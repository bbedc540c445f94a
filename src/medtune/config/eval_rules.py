"""Cross-group rules of evaluate.py, on top of the model / hardware rules shared with training."""

from __future__ import annotations

from pathlib import Path

from medtune.config.eval_schema import EvalRunConfig, ExamFormat
from medtune.config.validate import check_hardware, check_model, check_prompt


def check_run_and_predictions(cfg: EvalRunConfig) -> list[str]:
    problems = []
    if cfg.run:
        run = Path(cfg.run)
        if not (run / "config.yaml").is_file() or not (run / "run_info.json").is_file():
            problems.append(
                f"run={cfg.run} is not the directory of a finished train.py run (it needs config.yaml and "
                "run_info.json); point run= at outputs/train/runs/<time>."
            )
    if cfg.predictions and not Path(cfg.predictions).exists():
        problems.append(f"predictions={cfg.predictions} does not exist; point it at a predictions file or folder.")
    if cfg.run and cfg.predictions:
        problems.append("run= and predictions= both given: evaluate a trained run, or score a predictions file.")
    return problems


def check_model_unless_run(cfg: EvalRunConfig) -> list[str]:
    # With run=, the model comes from that run's own config; without a model, nothing is loaded.
    if cfg.run or cfg.predictions:
        return []
    return check_model(cfg)


def check_exam(cfg: EvalRunConfig) -> list[str]:
    exam, problems = cfg.exam, []
    if exam.format != ExamFormat.sample and exam.path is not None and not Path(exam.path).exists():
        problems.append(
            f"exam.path={exam.path} does not exist (exam={exam.name}): point exam.path at the exam files "
            "(or set MEDTUNE_SHARED to the folder that holds data/)."
        )
    if exam.fewshot_path and not Path(exam.fewshot_path).is_file():
        problems.append(
            f"exam.fewshot_path={exam.fewshot_path} does not exist: point it at a file of worked examples, "
            "or set exam.fewshot_path=null for the bundled ones."
        )
    if exam.min_answers > exam.max_answers:
        problems.append(f"exam.min_answers={exam.min_answers} is above exam.max_answers={exam.max_answers}.")
    if exam.max_questions is not None and exam.max_questions <= 0:
        problems.append(f"exam.max_questions={exam.max_questions} must be positive, or null for all.")
    return problems


def check_decoding(cfg: EvalRunConfig) -> list[str]:
    e, problems = cfg.eval, []
    if e.batch_size <= 0:
        problems.append(f"eval.batch_size={e.batch_size} must be positive.")
    if e.max_new_tokens <= 0:
        problems.append(f"eval.max_new_tokens={e.max_new_tokens} must be positive.")
    if e.num_shots < 0:
        problems.append(f"eval.num_shots={e.num_shots} must be 0 or more.")
    if e.do_sample and e.temperature <= 0:
        problems.append(f"eval.temperature={e.temperature} must be positive when eval.do_sample=true.")
    if e.top_p is not None and not 0 < e.top_p <= 1:
        problems.append(f"eval.top_p={e.top_p} must be in (0, 1].")
    if not 0 <= e.match_threshold < 1:
        problems.append(f"eval.match_threshold={e.match_threshold} must be in [0, 1).")
    return problems


def check_judge_mode(cfg: EvalRunConfig) -> list[str]:
    """eval=judge: its systems, judge and questions, before any model loads."""
    if cfg.eval.mode.value != "judge":
        return []
    from medtune.judge.rules import check_judge

    return check_judge(cfg)


EVAL_RULES = [check_run_and_predictions, check_model_unless_run, check_hardware, check_exam, check_prompt, check_decoding,
              check_judge_mode]
