"""evaluate.py's rules: what to evaluate (a run, a model, a predictions file), the exam, decoding,
ensembles, the backend and the contamination audit's settings and files."""

from __future__ import annotations

from pathlib import Path

from medtune.config.eval_schema import EvalBackend, EvalMode, EvalRunConfig, ExamFormat
from medtune.data.file_checks import data_file_problem
from medtune.rules.common import (
    MAX_SHOTS,
    check_contamination_files,
    check_contamination_settings,
    check_prompt,
    check_seed,
)
from medtune.rules.language import check_prompt_language
from medtune.rules.model import check_hardware, check_model
from medtune.run_dir import check_train_run

MAX_VOTES = 32  # samples or shuffles per question: beyond this the gain is lost in the cost


def check_run_and_predictions(cfg: EvalRunConfig) -> list[str]:
    problems = check_train_run("run", cfg.run) if cfg.run else []
    if cfg.predictions and not Path(cfg.predictions).exists():
        problems.append(f"predictions={cfg.predictions} does not exist; point it at a predictions file or folder.")
    if cfg.run and cfg.predictions:
        problems.append("run= and predictions= both given: evaluate a trained run, or score a predictions file.")
    return problems


def check_exam_language(cfg: EvalRunConfig) -> list[str]:
    """The prompt is in the exam's language; with run= the prompt is the run's own unless prompt= is
    given (settled by the resolve phase, `medtune.rules.resolve`), and it is checked the same way. A
    run that is not trained yet (a sweep's preflight) has no prompt to check."""
    if cfg.run and not Path(cfg.run).is_dir():
        return []
    return check_prompt_language(cfg)


def loads_composed_model(cfg: EvalRunConfig) -> bool:
    """Whether this process loads the composed `model=`: not with run= (the run's own model loads),
    predictions= (a replay loads none) or an endpoint (the server holds it)."""
    return not (cfg.run or cfg.predictions or cfg.eval.backend == EvalBackend.endpoint)


def check_model_unless_run(cfg: EvalRunConfig) -> list[str]:
    return check_model(cfg.model) if loads_composed_model(cfg) else []


def check_hardware_if_loading(cfg: EvalRunConfig) -> list[str]:
    # A server that holds the model (eval.backend=endpoint) or a replay needs no local hardware.
    if cfg.predictions or cfg.eval.backend == EvalBackend.endpoint:
        return []
    return check_hardware(cfg, loads_model=True)


def check_exam(cfg: EvalRunConfig) -> list[str]:
    exam, problems = cfg.exam, []
    if exam.format != ExamFormat.sample and exam.path is not None and not Path(exam.path).exists():
        problems.append(
            f"exam.path={exam.path} does not exist (exam={exam.name}): point exam.path at the exam files "
            "(or set MEDTUNE_SHARED to the folder that holds data/)."
        )
    if exam.fewshot_path and not Path(exam.fewshot_path).is_file():
        problems.append(
            data_file_problem(exam.fewshot_path, "exam.fewshot_path")  # a FIFO, a device, a folder: named as such
            or f"exam.fewshot_path={exam.fewshot_path} does not exist: point it at a file of worked examples, "
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
    if not 0 <= e.num_shots <= MAX_SHOTS:
        problems.append(
            f"eval.num_shots={e.num_shots} must be between 0 and {MAX_SHOTS} (the worked examples "
            "bundled per language; more need a longer context than the paper's models have)."
        )
    if e.do_sample and e.temperature <= 0:
        problems.append(f"eval.temperature={e.temperature} must be positive when eval.do_sample=true.")
    if e.top_p is not None and not 0 < e.top_p <= 1:
        problems.append(f"eval.top_p={e.top_p} must be in (0, 1].")
    if not 0 <= e.match_threshold < 1:
        problems.append(f"eval.match_threshold={e.match_threshold} must be in [0, 1).")
    if not 0 < e.strict_threshold <= 1:
        problems.append(f"eval.strict_threshold={e.strict_threshold} must be in (0, 1].")
    return problems


def check_ensemble(cfg: EvalRunConfig) -> list[str]:
    """eval.samples (self-consistency) and eval.shuffles (choice orders): sizes, and which modes take them."""
    e, problems = cfg.eval, []
    for key, value in (("samples", e.samples), ("shuffles", e.shuffles)):
        if value < 1:
            problems.append(f"eval.{key}={value} must be 1 or more (1 = ask each question once).")
        elif value > MAX_VOTES:
            problems.append(f"eval.{key}={value} is above {MAX_VOTES}; each one multiplies the generation time.")
    if e.mode == EvalMode.loglik and e.samples > 1:
        problems.append(
            f"eval.samples={e.samples} with eval=loglik: log-likelihoods are not sampled, so every "
            "sample would be the same; use eval.shuffles for a loglik ensemble, or eval=generate."
        )
    if (e.samples > 1 or e.shuffles > 1) and cfg.predictions:
        problems.append("eval.samples / eval.shuffles ask a model several times; predictions= replays fixed answers.")
    return problems


def check_backend(cfg: EvalRunConfig) -> list[str]:
    """eval.backend: what each one needs, before anything loads."""
    e, problems = cfg.eval, []
    if e.backend == EvalBackend.hf or cfg.predictions:
        return problems
    if e.mode == EvalMode.loglik:
        problems.append(
            f"eval=loglik reads log-probabilities from a model in this process; it needs "
            f"eval.backend=hf (got eval.backend={e.backend.value})."
        )
    if e.backend == EvalBackend.endpoint:
        ep = e.endpoint
        if not ep.url:
            problems.append(
                "eval.backend=endpoint needs eval.endpoint.url, the server's API root, e.g. "
                "eval.endpoint.url=http://127.0.0.1:8000/v1 (python -m medtune.llm.server serves one)."
            )
        elif not ep.url.startswith(("http://", "https://")):
            problems.append(f"eval.endpoint.url={ep.url} must start with http:// or https://.")
        if ep.concurrency < 1:
            problems.append(f"eval.endpoint.concurrency={ep.concurrency} must be 1 or more.")
        if ep.timeout_s <= 0:
            problems.append(f"eval.endpoint.timeout_s={ep.timeout_s} must be positive.")
        if ep.max_retries < 0 or ep.backoff_s < 0:
            problems.append("eval.endpoint.max_retries and eval.endpoint.backoff_s must be 0 or more.")
        if cfg.run:
            problems.append(
                f"run={cfg.run} with eval.backend=endpoint: the server holds the model; serve the run "
                f"(python -m medtune.llm.server --run {cfg.run}) and drop run=."
            )
    return problems


# Rules that read the config alone: what a sweep checks for every cell before it starts.
PORTABLE_RULES = (
    check_prompt,
    check_exam_language,
    check_decoding,
    check_ensemble,
    check_backend,
    check_contamination_settings,
)
RULES = (
    check_seed,
    check_run_and_predictions,
    check_model_unless_run,
    check_hardware_if_loading,
    check_exam,
    check_prompt,
    check_exam_language,
    check_decoding,
    check_ensemble,
    check_backend,
    check_contamination_settings,
    check_contamination_files,
)
