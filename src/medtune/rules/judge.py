"""judge.py's rules: the two systems, the judge and the questions, before any model loads or request
is sent."""

from __future__ import annotations

from pathlib import Path

from medtune.config.generator_schema import GeneratorConfig, GeneratorKind
from medtune.config.judge_schema import JudgeRunConfig, JudgeSystemConfig
from medtune.data.file_checks import data_file_problem
from medtune.rules.common import check_prompt, check_seed
from medtune.rules.model import check_run_dir, device_problems


def check_generator(key: str, g: GeneratorConfig) -> list[str]:
    problems = []
    if g.kind == GeneratorKind.endpoint and not g.url:
        problems.append(
            f"{key}.kind=endpoint needs {key}.url, the server's API root, e.g. "
            f"{key}.url=http://127.0.0.1:8000/v1 (python -m medtune.llm.server --model-path DIR starts one)."
        )
    if g.kind == GeneratorKind.local and g.run:
        problems += check_run_dir(f"{key}.run", g.run)
    if g.max_new_tokens <= 0:
        problems.append(f"{key}.max_new_tokens={g.max_new_tokens} must be positive.")
    if g.temperature < 0:
        problems.append(f"{key}.temperature={g.temperature} must be 0 (greedy) or more.")
    if g.concurrency <= 0 or g.batch_size <= 0:
        problems.append(f"{key}.concurrency and {key}.batch_size must be positive.")
    return problems


def check_system(role: str, s: JudgeSystemConfig) -> list[str]:
    key = f"judge.{role}"
    sources = [
        name
        for name, given in (
            ("answers", s.answers),
            ("model_path", s.model_path),
            ("generator.run", s.generator.run),
            ("generator.kind=endpoint", s.generator.kind == GeneratorKind.endpoint),
        )
        if given
    ]
    if len(sources) > 1:
        return [f"{key} sets {' and '.join(sources)}; keep one source of answers for a system."]
    problems = []
    if s.answers and not Path(s.answers).is_file():
        problems.append(
            data_file_problem(s.answers, f"{key}.answers")  # a FIFO, a device, a folder: named as such
            or f'{key}.answers={s.answers} does not exist; point it at a JSONL file of {{"id", "answer"}} lines.'
        )
    if s.model_path and not Path(s.model_path).is_dir():
        problems.append(f"{key}.model_path={s.model_path} is not a directory; point it at a local checkpoint.")
    if not s.answers:
        problems += check_generator(f"{key}.generator", s.generator)
    return problems


def check_judge(cfg: JudgeRunConfig) -> list[str]:
    j, problems = cfg.judge, []
    if j.questions and not Path(j.questions).is_file():
        problems.append(
            data_file_problem(j.questions, "judge.questions")  # a FIFO, a device, a folder: named as such
            or f"judge.questions={j.questions} does not exist; point it at a JSONL file of questions, "
            "or set judge.questions=null for the bundled Vietnamese set."
        )
    b = j.b
    if not (b.answers or b.model_path or b.generator.run or b.generator.kind == GeneratorKind.endpoint):
        problems.append(
            "judge.b names no system to compare with judge.a: set judge.b.generator.run=<train run dir>, "
            "judge.b.model_path=<checkpoint>, judge.b.answers=<file>, or judge.b.generator.kind=endpoint "
            "with judge.b.generator.url."
        )
    problems += check_system("a", j.a) + check_system("b", j.b) + check_generator("judge.judge", j.judge)
    if j.max_questions is not None and j.max_questions <= 0:
        problems.append(f"judge.max_questions={j.max_questions} must be positive, or null for all.")
    if not 0 <= j.min_score < 10:
        problems.append(f"judge.min_score={j.min_score} must be in [0, 10): the rubric's scale is 1-10.")
    return problems


def uses_composed_model(cfg: JudgeRunConfig) -> bool:
    """Whether a system or the judge is the composed `model=` (loaded in this process)."""
    a = cfg.judge.a
    system_a = not (a.answers or a.model_path or a.generator.run or a.generator.kind == GeneratorKind.endpoint)
    judge = cfg.judge.judge.kind == GeneratorKind.local and not cfg.judge.judge.run
    return system_a or judge


def check_devices(cfg: JudgeRunConfig) -> list[str]:
    return device_problems(cfg.hardware) if uses_composed_model(cfg) else []


RULES = (check_seed, check_judge, check_prompt, check_devices)
