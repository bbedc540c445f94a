"""Each system's answers: read from its answers file, or generated once and saved as answers_<name>.jsonl.

A generated answer carries the key of what produced it (model, adapter, prompt template, decoding,
seed). Running again reuses the saved answers with the same key and generates only the missing
ones, so judging again, or with another judge, does not regenerate.
"""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass
from pathlib import Path

from medtune.config.generator_schema import GeneratorKind
from medtune.config.judge_schema import JudgeRunConfig, JudgeSystemConfig
from medtune.errors import ConfigError, DataError
from medtune.jsonl_store import JsonlStore, RowStamp, settings_fingerprint, write_jsonl_atomic
from medtune.judge.questions import JudgeQuestion, read_answers
from medtune.reporting.console import console


@dataclass(frozen=True)
class System:
    role: str  # "a" or "b": the table's left and right columns
    name: str
    cfg: JudgeSystemConfig

    @property
    def source(self) -> str:
        """Where the answers come from: answers, run, model_path, endpoint or model (the composed one)."""
        if self.cfg.answers:
            return "answers"
        if self.cfg.model_path:
            return "model_path"
        if self.cfg.generator.kind == GeneratorKind.endpoint:
            return "endpoint"
        return "run" if self.cfg.generator.run else "model"


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "system"


def default_name(cfg: JudgeSystemConfig, model_name: str) -> str:
    if cfg.name:
        return cfg.name
    if cfg.answers:
        return Path(cfg.answers).stem.removeprefix("answers_")
    if cfg.model_path:
        return Path(cfg.model_path).name
    if cfg.generator.kind == GeneratorKind.endpoint:
        return cfg.generator.endpoint_model
    return Path(cfg.generator.run).name if cfg.generator.run else model_name


def make_systems(cfg: JudgeRunConfig) -> tuple[System, System]:
    a = System("a", default_name(cfg.judge.a, cfg.model.name), cfg.judge.a)
    b = System("b", default_name(cfg.judge.b, cfg.model.name), cfg.judge.b)
    if safe_name(a.name) == safe_name(b.name):
        raise ConfigError(
            [
                f"judge.a and judge.b are both named {a.name!r}; name them apart, e.g. "
                f"judge.a.name=base judge.b.name=tuned."
            ]
        )
    return a, b


def answers_path(out: Path, system: System) -> Path:
    return out / f"answers_{safe_name(system.name)}.jsonl"


def generation_key(system: System, cfg: JudgeRunConfig) -> str:
    """The fingerprint of what decides a generated answer: a saved answer with another key is not reused."""
    return settings_fingerprint(generation_settings(system, cfg))


def generation_settings(system: System, cfg: JudgeRunConfig) -> dict:
    """What decides a generated answer (model, prompt, decoding, seed); not where an endpoint is served."""
    g = system.cfg.generator
    decisive = {
        "source": system.source,
        "max_new_tokens": g.max_new_tokens,
        "temperature": g.temperature,
        "top_k": g.top_k,
        "repetition_penalty": g.repetition_penalty,
        "system_prompt": g.system_prompt,
        "seed": cfg.seed,
    }
    if system.source == "endpoint":
        decisive.update(endpoint_model=g.endpoint_model)  # not the URL: where it is served may change
    elif system.source == "run":
        decisive.update(run=str(Path(g.run).resolve()))
    else:
        decisive.update(
            template=cfg.prompt.template,
            model_path=system.cfg.model_path,
            model=None if system.cfg.model_path else [cfg.model.name, cfg.model.path, cfg.model.hub_id],
        )
    return decisive


def answers_store(target: Path) -> JsonlStore:
    """answers_<name>.partial.jsonl, appended to as answers arrive and finished as answers_<name>.jsonl;
    every row carries its generation key."""
    return JsonlStore(
        target.with_suffix(".partial.jsonl"),
        final=target,
        settings_at=RowStamp("key"),
        fix="delete that line (the question is answered again), or delete the file to start over.",
    )


def collect_answers(system: System, questions: list[JudgeQuestion], cfg: JudgeRunConfig, out: Path) -> dict[str, str]:
    """id -> answer for every question, from the system's file or generated (and saved)."""
    target = answers_path(out, system)
    if system.source == "answers":
        given = read_answers(Path(system.cfg.answers))
        missing = [q.qid for q in questions if q.qid not in given]
        if missing:
            listed = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise DataError(
                f"judge.{system.role}.answers={system.cfg.answers} has no answer for {len(missing)} of "
                f"{len(questions)} questions ({listed}); add them, or narrow judge.categories / "
                "judge.max_questions."
            )
        answers = {q.qid: given[q.qid] for q in questions}
        write_jsonl_atomic(target, answer_rows(system, answers, "file"))
        return answers
    settings = generation_settings(system, cfg)
    store = answers_store(target)
    rows = store.open(
        settings,
        what=f"answers of {system.name!r} (their model, prompt, decoding or seed differ)",
        fresh=f"judge into another directory (eval.output_dir=...), or delete {target.name} and "
        f"{store.path.name} there to generate them again.",
        reuse_final=True,
    )
    answers = {str(r["id"]): r["answer"] for r in rows}
    todo = [q for q in questions if q.qid not in answers]
    if todo:
        generate_answers(system, todo, cfg, store, settings_fingerprint(settings), answers)
    answers = {q.qid: answers[q.qid] for q in questions}
    store.finish(answer_rows(system, answers, settings_fingerprint(settings)))
    return answers


def answer_rows(system: System, answers: dict[str, str], key: str) -> list[dict]:
    """The rows of answers_<name>.jsonl: `key` is the generation key, or "file" for answers read from a file."""
    return [{"id": qid, "answer": text, "system": system.name, "key": key} for qid, text in answers.items()]


def load_system_generator(system: System, cfg: JudgeRunConfig):
    from medtune.llm.access import make_generator

    g, cache, key = system.cfg.generator, cfg.paths.cache_dir, f"judge.{system.role}.generator"
    if system.source in ("endpoint", "run"):  # a run answers in its own template
        return make_generator(g, hardware=cfg.hardware, cache_dir=cache, key=key)
    model = cfg.model
    if system.source == "model_path":
        from medtune.config.schema import ModelConfig

        model = ModelConfig(name=system.name, path=system.cfg.model_path, dtype=cfg.model.dtype)
    return make_generator(g, model, cfg.hardware, cache, prompt=cfg.prompt, key=key)


def generate_answers(
    system: System, todo: list[JudgeQuestion], cfg: JudgeRunConfig, store: JsonlStore, key: str, answers: dict[str, str]
) -> None:
    from medtune.llm.protocol import ChatRequest, EndpointError
    from medtune.reporting.progress_bar import progress_bar

    with console.status(f"Loading {system.name}"):
        generator = load_system_generator(system, cfg)
    if system.source != "endpoint":
        import torch

        torch.manual_seed(cfg.seed)
    g = system.cfg.generator
    chunk = max(1, g.concurrency if system.source == "endpoint" else g.batch_size)
    with progress_bar(total=len(todo), desc=f"answers of {system.name}", unit="q") as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            try:
                texts = generator.generate([ChatRequest(user=q.question) for q in part], progress=False)
            except EndpointError as error:
                raise EndpointError(
                    f"judge.{system.role} ({system.name}): {error} The {len(answers)} answers so far are kept in "
                    f"{store.path}; run the same command with eval.output_dir={store.path.parent} to go on."
                ) from error
            store.append(answer_rows(system, dict(zip((q.qid for q in part), texts)), key))
            answers.update((q.qid, t) for q, t in zip(part, texts))
            bar.update(len(part))
    del generator
    gc.collect()
