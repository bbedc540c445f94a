"""A catalogue of bad inputs: each case runs medtune as a user would and checks the message it gives.

Every case names the error type it expects and three regex fragments of its message: the input
(the key, file:line or model), the problem, and the fix. Cases run through the real entry
points: Hydra composition and the typed rules (`compose` / `typed`), the train and evaluate task
functions in-process, and a few through `train.py` / `evaluate.py` in a subprocess, where the
error must come out as a message on stderr with exit code 2 and a `failure.json`.

`MEDTUNE_CATALOGUE_OUT=<file.md> pytest tests/test_bad_inputs.py` also writes the table of cases
and the messages they produced (`render_catalogue`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from conftest import REPO, train_args
from medtune.errors import (
    ConfigError,
    DataError,
    ModelUnavailableError,
    TrainingDivergedError,
)
from medtune.exam.records import ExcludedQuestion

# --- what a case is ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    error: type[BaseException]
    input: str  # regex: the key, file:line or model the message names
    problem: str  # regex: what is wrong
    fix: str | None  # regex: what to do; None only where Hydra's own message has none
    exit_code: int | None = None  # CLI cases: the process's exit status


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # config | data | model | runtime
    what: str  # the bad input, as a user would type or meet it
    how: Callable[[User], Any]  # runs it; raises in-process, or returns a `Produced` from the CLI
    expect: Expect
    marks: tuple = ()


@dataclass
class Produced:
    error: str  # the error's class name
    message: str
    exit_code: int | None = None


# --- how a user meets medtune -----------------------------------------------------------------------


class User:
    """Runs medtune the way a user would, with outputs in tmp_path and the session's tiny model cache."""

    def __init__(self, tmp_path: Path, tiny_cache: Path, compose, typed):
        self.tmp, self.cache, self._compose, self._typed = tmp_path, tiny_cache, compose, typed

    def paths(self) -> list[str]:
        return [f"paths.output_root={self.tmp}", f"paths.cache_dir={self.cache}"]

    def file(self, name: str, text: str) -> Path:
        path = self.tmp / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def jsonl(self, name: str, items: list[dict]) -> Path:
        return self.file(name, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))

    def compose(self, *overrides: str, config: str = "train"):
        return self._compose(list(overrides), config_name=config)

    def typed(self, *overrides: str):
        return self._typed([*self.paths(), *overrides])

    def train(self, *overrides: str, name: str = "run"):
        from medtune.config.job import JobContext
        from medtune.entry import execute
        from medtune.jobs import TRAIN

        cfg = self._typed([*self.paths(), "logger=none", *overrides])
        return execute(TRAIN, cfg, JobContext(run_dir=self.tmp / name))

    def evaluate(self, *overrides: str, name: str = "eval"):
        from medtune.config.eval_schema import EvalRunConfig
        from medtune.config.job import JobContext
        from medtune.entry import execute
        from medtune.jobs import EVALUATE, to_typed

        cfg = to_typed(self.compose(*self.paths(), "logger=none", *overrides, config="evaluate"), EvalRunConfig)
        return execute(EVALUATE, cfg, JobContext(run_dir=self.tmp / name, task_name="evaluate"))

    def cli(self, script: str, *overrides: str, timeout: int = 300) -> Produced:
        """`python <script> ...` in a subprocess; the error type comes from the run's failure.json."""
        import subprocess

        out = self.tmp / "cli"
        result = subprocess.run(
            [
                sys.executable,
                *train_args(
                    [script, f"paths.output_root={out}", f"paths.cache_dir={self.cache}", "logger=none", *overrides]
                ),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        )
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        failures = list(out.rglob("failure.json"))
        error = json.loads(failures[0].read_text())["error_type"] if len(failures) == 1 else "no failure.json"
        message = result.stderr.strip()
        message = message.split("medtune: ", 1)[1] if "medtune: " in message else message
        return Produced(error, message.strip(), result.returncode)

    def tiny_checkpoint(self, *overrides: str) -> Path:
        from medtune.modeling.description import resolve_checkpoint

        return Path(resolve_checkpoint(self.typed(*overrides).model, self.cache))


# --- the cases ------------------------------------------------------------------------------------

CHOICES = ["fever", "cough", "rash", "headache", "nausea"]


def exam_item(answer, choices=CHOICES, qid="T-01") -> dict:
    return {"problem_id": qid, "problem_text": "Which is a symptom of influenza?", "choices": choices, "answer": answer}


# The exams these cases write are in English: say so (exam=jsonl states ja unless told, and a file in
# another language than stated is refused once read).
ENGLISH = ("exam.language=en", "prompt=medpalm2_cot_en")


def exam_exclusions(u: User, items: list[dict], *overrides: str, needs_choice_text: bool = True) -> Produced:
    """evaluate.py exam=jsonl on `items`: the questions medtune leaves out, one `file:line: reason` a line.

    The exam is composed as evaluate.py composes it and read by `select_exam`, the loader of the
    evaluate task; the "error" is `ExcludedQuestion` (the run goes on without those questions).
    """
    from medtune.config.eval_schema import EvalRunConfig
    from medtune.exam.loading import select_exam
    from medtune.jobs import to_typed

    path = u.jsonl("exam.jsonl", items)
    cfg = to_typed(
        u.compose(
            *u.paths(), "logger=none", "exam=jsonl", f"exam.path={path}", *ENGLISH, *overrides, config="evaluate"
        ),
        EvalRunConfig,
    )
    selection = select_exam(cfg.exam, needs_choice_text=needs_choice_text)
    if not selection.excluded:
        pytest.fail(f"no question of {path} was excluded; kept {[q.qid for q in selection.questions]}")
    kept = ", ".join(q.qid for q in selection.questions)
    lines = [f"{x.source}: {x.reason} ({x.qid} excluded; kept {kept})" for x in selection.excluded]
    return Produced(ExcludedQuestion.__name__, "\n".join(lines))


def alpaca_lines(n: int = 3) -> list[dict]:
    return [{"instruction": f"Define symptom {i}.", "input": "", "output": "A sign of disease."} for i in range(n)]


def malformed_json(u: User):
    path = u.file("broken.jsonl", json.dumps(alpaca_lines(1)[0]) + '\n{"instruction": "Define fever.", "output": \n')
    return u.train(f"dataset.path={path}")


def malformed_json_cli(u: User) -> Produced:
    path = u.file("broken.jsonl", json.dumps(alpaca_lines(1)[0]) + '\n{"instruction": "Define fever.", "output": \n')
    return u.cli("train.py", f"dataset.path={path}")


def adapter_from_another_base(u: User):
    """Train on a base at model.path, replace that base by another model, then evaluate the run."""
    base = u.tmp / "models" / "base"
    shutil.copytree(u.tiny_checkpoint(), base)
    result = u.train(
        "model.source=pretrained",
        f"model.path={base}",
        "train.max_steps=1",
        "dataset.eval_fraction=0",
        "exam_eval.enabled=false",
        name="trained",
    )
    other = u.tiny_checkpoint("model.architecture.hidden_size=64", "model.architecture.intermediate_size=192")
    shutil.rmtree(base)
    shutil.copytree(other, base)
    return u.evaluate(f"run={result.run_dir}", "exam.max_questions=2")


def unknown_architecture_checkpoint(u: User):
    ckpt = u.tmp / "models" / "medllama"
    shutil.copytree(u.tiny_checkpoint(), ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "model_type": "medllama_x"}))
    return u.train("model.source=pretrained", f"model.path={ckpt}")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


NO_CUDA = pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA device, so a GPU option is valid here")

CASES = [
    # --- config: composition (Hydra + the typed schema) ---
    Case(
        "unknown-key",
        "config",
        "train.py adapter.rr=8",
        lambda u: u.compose("adapter.rr=8"),
        Expect(ConfigCompositionException, r"adapter\.rr", r"Key 'rr' not in 'AdapterConfig'", None),
    ),
    Case(
        "unknown-key-appended",
        "config",
        "train.py +adapter.rank=4",
        lambda u: u.typed("+adapter.rank=4"),
        Expect(ConfigError, r"adapter\.rank", r"not a key medtune knows", r"known keys: .*\br\b"),
    ),
    Case(
        "near-miss-key",
        "config",
        "train.py +model.architecture.hiden_size=64",
        lambda u: u.typed("+model.architecture.hiden_size=64"),
        Expect(
            ConfigError,
            r"model\.architecture\.hiden_size",
            r"not a key medtune knows",
            r"did you mean model\.architecture\.hidden_size\?",
        ),
    ),
    Case(
        "wrong-type",
        "config",
        "train.py adapter.r=abc",
        lambda u: u.compose("adapter.r=abc"),
        Expect(ConfigCompositionException, r"adapter\.r", r"'abc'.*could not be converted to Integer", None),
    ),
    Case(
        "invalid-choice",
        "config",
        "train.py adapter.quantization.method=nf5",
        lambda u: u.compose("adapter.quantization.method=nf5"),
        Expect(
            ConfigCompositionException,
            r"adapter\.quantization\.method",
            r"Invalid value 'nf5'",
            r"expected one of \[none, nf4, fp4, int8\]",
        ),
    ),
    Case(
        "unknown-option",
        "config",
        "train.py model=llama3_405b",
        lambda u: u.compose("model=llama3_405b"),
        Expect(MissingConfigException, r"model/llama3_405b", r"Could not find", r"Available options in 'model':\s+\S"),
    ),
    # --- config: values out of range ---
    Case(
        "lora-rank-zero",
        "config",
        "train.py adapter.r=0",
        lambda u: u.typed("adapter.r=0"),
        Expect(ConfigError, r"adapter\.r=0", r"must be a positive rank", r"e\.g\. adapter\.r=8"),
    ),
    Case(
        "dropout-above-one",
        "config",
        "train.py adapter.dropout=1.5",
        lambda u: u.typed("adapter.dropout=1.5"),
        Expect(ConfigError, r"adapter\.dropout=1\.5", r"must be in \[0, 1\)", r"e\.g\. adapter\.dropout=0\.1"),
    ),
    Case(
        "learning-rate-zero",
        "config",
        "train.py train.learning_rate=0",
        lambda u: u.typed("train.learning_rate=0"),
        Expect(ConfigError, r"train\.learning_rate=0", r"must be positive", r"e\.g\. train\.learning_rate=2e-4"),
    ),
    Case(
        "batch-not-divisible",
        "config",
        "train.py train.global_batch_size=12 train.micro_batch_size=8",
        lambda u: u.typed("train.global_batch_size=12", "train.micro_batch_size=8"),
        Expect(
            ConfigError,
            r"train\.global_batch_size=12",
            r"not a multiple of train\.micro_batch_size=8",
            r"change one of them",
        ),
    ),
    Case(
        "eval-fraction-one",
        "config",
        "train.py dataset.eval_fraction=1.0",
        lambda u: u.typed("dataset.eval_fraction=1.0"),
        Expect(ConfigError, r"dataset\.eval_fraction=1\.0", r"must be in \[0, 1\)", r"e\.g\. 0\.1"),
    ),
    Case(
        "no-input-tokens",
        "config",
        "train.py train.max_input_tokens=0",
        lambda u: u.typed("train.max_input_tokens=0"),
        Expect(ConfigError, r"train\.max_input_tokens=0", r"must be positive", r"e\.g\. train\.max_input_tokens=512"),
    ),
    Case(
        "negative-warmup",
        "config",
        "train.py train.warmup_steps=-5",
        lambda u: u.typed("train.warmup_steps=-5"),
        Expect(ConfigError, r"train\.warmup_steps=-5", r"must not be negative", r"e\.g\. train\.warmup_steps=0"),
    ),
    Case(
        "three-problems-at-once",
        "config",
        "train.py adapter.r=0 adapter.dropout=1.5 train.learning_rate=-1 (CLI)",
        lambda u: u.cli("train.py", "adapter.r=0", "adapter.dropout=1.5", "train.learning_rate=-1"),
        Expect(
            ConfigError,
            r"3 problems:\n.*adapter\.r=0.*\n.*adapter\.dropout=1\.5.*\n.*train\.learning_rate=-1",
            r"must be a positive rank",
            r"e\.g\. train\.learning_rate=2e-4",
            exit_code=2,
        ),
    ),
    # --- config: missing paths and incompatible groups ---
    Case(
        "dataset-path-missing",
        "config",
        "train.py dataset=usmle_jp",
        lambda u: u.typed("dataset=usmle_jp"),
        Expect(
            ConfigError,
            r"dataset\.path is required by dataset=usmle_jp",
            r"has no value",
            r"dataset\.path=/data/usmle_jp\.jsonl",
        ),
    ),
    Case(
        "dataset-path-absent",
        "config",
        "train.py dataset=alpaca_json dataset.path=/nonexistent/alpaca.json",
        lambda u: u.typed("dataset=alpaca_json", "dataset.path=/nonexistent/alpaca.json"),
        Expect(
            ConfigError,
            r"dataset\.path=/nonexistent/alpaca\.json",
            r"does not exist",
            r"point dataset\.path at the file",
        ),
    ),
    Case(
        "exam-path-missing",
        "config",
        "evaluate.py exam=jsonl (CLI)",
        lambda u: u.cli("evaluate.py", "exam=jsonl"),
        Expect(
            ConfigError,
            r"exam\.path is required by exam=jsonl",
            r"has no value",
            r"exam\.path=/data/jsonl\.jsonl",
            exit_code=2,
        ),
    ),
    Case(
        "quantized-full-finetune",
        "config",
        "train.py adapter=full adapter.quantization.method=nf4",
        lambda u: u.typed("adapter=full", "adapter.quantization.method=nf4"),
        Expect(
            ConfigError,
            r"adapter\.quantization\.method=nf4 with adapter=full",
            r"cannot be fully fine-tuned",
            r"use adapter=qlora or adapter=lora_int8",
        ),
    ),
    Case(
        "int8-under-zero3",
        "config",
        "train.py adapter=lora_int8 hardware=a100x4_zero3 dry_run=true",
        lambda u: u.typed("adapter=lora_int8", "hardware=a100x4_zero3", "dry_run=true", "train.global_batch_size=32"),
        Expect(ConfigError, r"adapter=lora_int8", r"cannot be sharded by ZeRO-3", r"use a ZeRO-2 option"),
    ),
    Case(
        "70b-on-a-laptop",
        "config",
        "train.py model=swallow70b adapter=qlora",
        lambda u: u.typed("model=swallow70b", "adapter=qlora"),
        Expect(
            ConfigError,
            r"model=swallow70b has 69\.2B parameters",
            r"more than hardware=cpu trains",
            r"hardware=a100x4(.|\n)*model\.path=/models/swallow70b",
        ),
    ),
    Case(
        "adapter-none-in-training",
        "config",
        "train.py adapter=none",
        lambda u: u.typed("adapter=none"),
        Expect(ConfigError, r"adapter=none", r"trains nothing", r"pick adapter=lora"),
    ),
    Case(
        "exam-eval-batch-zero",
        "config",
        "train.py exam_eval.batch_size=0",
        lambda u: u.typed("exam_eval.batch_size=0"),
        Expect(ConfigError, r"exam_eval\.batch_size=0", r"must be positive", r"exam_eval\.enabled=false"),
    ),
    # --- data ---
    Case(
        "malformed-json-line",
        "data",
        "dataset.path=<file whose line 2 is cut off>",
        malformed_json,
        Expect(DataError, r"broken\.jsonl:2:", r"not valid JSON", r"fix or delete the line"),
    ),
    Case(
        "malformed-json-line-cli",
        "data",
        "train.py dataset.path=<file whose line 2 is cut off> (CLI)",
        malformed_json_cli,
        Expect(DataError, r"broken\.jsonl:2:", r"not valid JSON", r"fix or delete the line", exit_code=2),
        marks=(pytest.mark.slow,),  # a subprocess; the in-process case above is the fast one
    ),
    Case(
        "missing-field",
        "data",
        "dataset=alpaca_json with a record lacking output",
        lambda u: u.train(
            "dataset=alpaca_json",
            "dataset.path=" + str(u.jsonl("alpaca.jsonl", [*alpaca_lines(2), {"instruction": "Define rash."}])),
        ),
        Expect(
            DataError,
            r"alpaca\.jsonl:3:",
            r"missing field 'output' for a alpaca record",
            r"add the field, or set dataset\.format",
        ),
    ),
    Case(
        "no-known-format",
        "data",
        "dataset.path=<records with question/reply fields>",
        lambda u: u.train("dataset.path=" + str(u.jsonl("odd.jsonl", [{"question": "q", "reply": "r"}]))),
        Expect(
            DataError,
            r"odd\.jsonl:1:",
            r"fields \['question', 'reply'\] match no known format",
            r"expected instruction/input/output",
        ),
    ),
    Case(
        "empty-file",
        "data",
        "dataset.path=<a file of blank lines>",
        lambda u: u.train("dataset.path=" + str(u.file("empty.jsonl", "\n\n"))),
        Expect(DataError, r"empty\.jsonl", r"the file is empty", r"add records, or point dataset\.path"),
    ),
    Case(
        "folder-without-data",
        "data",
        "dataset.path=<a folder with only notes.txt>",
        lambda u: u.train(f"dataset.path={u.file('notes.txt', 'not data').parent}"),
        Expect(DataError, r"/data:", r"holds no \.jsonl or \.json files", r"point dataset\.path at a file"),
    ),
    Case(
        "answer-letter-outside-choices",
        "data",
        "a training exam record with answer f and 5 choices",
        lambda u: u.train("dataset.path=" + str(u.jsonl("exam.jsonl", [exam_item(["a"]), exam_item(["f"])]))),
        Expect(DataError, r"exam\.jsonl:2:", r"answer 'f' is not one of the 5 choices \(a–e\)", r"fix the answer key"),
    ),
    Case(
        "letter-answer-no-choices",
        "data",
        "a training exam record with answer c and choices []",
        lambda u: u.train("dataset.path=" + str(u.jsonl("exam.jsonl", [exam_item(["c"], choices=[])]))),
        Expect(
            DataError,
            r"exam\.jsonl:1:",
            r"answer 'c' is not a number, and the question has no choices",
            r"give the choices, or a numeric answer",
        ),
    ),
    Case(
        "blank-choice-text",
        "data",
        'a training exam record whose choice b is ""',
        lambda u: u.train("dataset.path=" + str(u.jsonl("exam.jsonl", [exam_item(["a"], ["fever", "", "rash"])]))),
        Expect(DataError, r"exam\.jsonl:1:", r"choice b is empty", r"give every choice its text"),
    ),
    Case(
        "template-without-instruction",
        "data",
        "train.py prompt.template='Answer briefly: {input}'",
        lambda u: u.typed("prompt.template='Answer briefly: {input}'"),
        Expect(
            ConfigError,
            r"prompt=alpaca: prompt\.template",
            r"has no \{instruction\} placeholder",
            r"add \{instruction\}",
        ),
    ),
    Case(
        "template-unknown-placeholder",
        "data",
        "train.py prompt.template='{question} {instruction}'",
        lambda u: u.typed("prompt.template='{question} {instruction}'"),
        Expect(ConfigError, r"prompt\.template has \{question\}", r"a placeholder medtune never fills", r"rename it"),
    ),
    Case(
        "every-example-too-long",
        "data",
        "train.py train.max_target_tokens=2",
        lambda u: u.train("train.max_target_tokens=2"),
        Expect(
            DataError, r"train\.max_target_tokens=2", r"every one of the \d+ examples is too long", r"raise the limits"
        ),
    ),
    Case(
        "exam-answer-letter-outside-choices",
        "data",
        "evaluate.py exam=jsonl with answer z (one question of two)",
        lambda u: exam_exclusions(u, [exam_item(["a"]), exam_item(["z"], qid="T-02")]),
        Expect(
            ExcludedQuestion,
            r"exam\.jsonl:2: answer 'z' \('answer'\)",
            r"is not one of the 5 choice letters \(a-e\)",
            r"T-02 excluded; kept T-01",
        ),
    ),
    Case(
        "exam-empty-choices",
        "data",
        "evaluate.py exam=jsonl exam.require_choices=false with choices [] and answer c (one question of two)",
        lambda u: exam_exclusions(
            u, [exam_item(["a"]), exam_item(["c"], [], qid="T-02")], "exam.require_choices=false"
        ),
        Expect(
            ExcludedQuestion,
            r"exam\.jsonl:2:",
            r"answer 'c' \('answer'\) is not a number, and the question has "
            r"no choices",
            r"T-02 excluded; kept T-01",
        ),
    ),
    Case(
        "exam-blank-choice",
        "data",
        'evaluate.py exam=jsonl with choices ["", "", ""] (one question of two)',
        lambda u: exam_exclusions(u, [exam_item(["a"]), exam_item(["a"], ["", "", ""], qid="T-02")]),
        Expect(
            ExcludedQuestion,
            r"exam\.jsonl:2:",
            r"choice texts a-c are blank \(printed in a figure\?\)",
            r"T-02 excluded; kept T-01",
        ),
    ),
    Case(
        "exam-empty-file",
        "data",
        "evaluate.py exam=jsonl exam.path=<empty file>",
        lambda u: u.evaluate("exam=jsonl", f"exam.path={u.file('exam.jsonl', '')}"),
        Expect(DataError, r"exam\.jsonl", r"the file is empty", r"add questions, or point exam\.path"),
    ),
    Case(
        "exam-duplicate-ids",
        "data",
        "evaluate.py exam=jsonl with one problem_id twice",
        lambda u: u.evaluate(
            "exam=jsonl", "exam.path=" + str(u.jsonl("exam.jsonl", [exam_item(["a"]), exam_item(["b"])]))
        ),
        Expect(
            DataError,
            r"exam\.jsonl:2: problem_id 'T-01'",
            r"already used at .*exam\.jsonl:1",
            r"give each question its own id",
        ),
    ),
    Case(
        "exam-filters-select-nothing",
        "data",
        "evaluate.py exam=jsonl with only numeric questions",
        lambda u: u.evaluate("exam=jsonl", "exam.path=" + str(u.jsonl("exam.jsonl", [exam_item(["12"], [])]))),
        Expect(
            ConfigError,
            r"exam=jsonl",
            r"selects no question .*exam\.require_choices=True",
            r"exam\.require_choices=false to keep numeric questions",
        ),
    ),
    # --- models ---
    Case(
        "unknown-architecture",
        "model",
        "train.py model.architecture.model_type=foo",
        lambda u: u.train("model.architecture.model_type=foo"),
        Expect(
            ModelUnavailableError,
            r"model=tiny: model\.architecture\.model_type=foo",
            r"not an architecture transformers \S+ knows",
            r"model\.architecture\.model_type=llama",
        ),
    ),
    Case(
        "checkpoint-of-unknown-architecture",
        "model",
        "model.path=<checkpoint whose config.json says medllama_x>",
        unknown_architecture_checkpoint,
        Expect(
            ConfigError,
            r"checkpoint at \S+medllama has model_type 'medllama_x'",
            r"transformers \S+ does not know",
            r"pip install -U transformers(.|\n)*model\.trust_remote_code=true",
        ),
    ),
    Case(
        "checkpoint-not-a-directory",
        "model",
        "train.py model.source=pretrained model.path=/nonexistent/ckpt",
        lambda u: u.typed("model.source=pretrained", "model.path=/nonexistent/ckpt"),
        Expect(ConfigError, r"model\.path=/nonexistent/ckpt", r"is not a directory", r"point it at a local checkpoint"),
    ),
    Case(
        "weights-not-on-this-machine",
        "model",
        "evaluate.py model=opencalm7b",
        lambda u: u.evaluate("model=opencalm7b"),
        Expect(
            ConfigError,
            r"model=opencalm7b",
            r"weights of cyberagent/open-calm-7b are not on this machine",
            r"model\.path=/models/opencalm7b(.|\n)*model\.allow_download=true",
        ),
    ),
    Case(
        "adapter-from-another-base",
        "model",
        "evaluate.py run=<run> after its base at model.path was replaced",
        adapter_from_another_base,
        Expect(
            ModelUnavailableError,
            r"run=\S+trained: its adapter",
            r"trained on a different base .*\[8, 128\] in "
            r"the adapter but \[8, 64\] on this base",
            r"Put the base the run was trained on back",
        ),
    ),
    Case(
        "gpu-option-without-cuda",
        "model",
        "train.py hardware=a100x1 (CLI)",
        lambda u: u.cli("train.py", "hardware=a100x1"),
        Expect(
            ConfigError,
            r"hardware=a100x1 needs 1 CUDA device\(s\)",
            r"no CUDA device was found on this machine",
            r"pick hardware=cpu",
            exit_code=2,
        ),
        marks=(NO_CUDA,),
    ),
    # --- runtime ---
    Case(
        "loss-becomes-nan",
        "runtime",
        "train.py train.learning_rate=1e10 train.max_grad_norm=0 (CLI)",
        lambda u: u.cli(
            "train.py",
            "train.learning_rate=1e10",
            "train.max_grad_norm=0",
            "train.max_steps=12",
            "train.logging_steps=1",
            "exam_eval.enabled=false",
            "dataset.eval_fraction=0",
        ),
        Expect(
            TrainingDivergedError,
            r"training diverged at step \d+: the training loss is (nan|inf)",
            r"last finite training loss was [\d.]+ at step \d+(.|\n)*saved in \S+checkpoint-\d+",
            r"lower train\.learning_rate \(now 1e\+10\), keep gradient clipping on",
            exit_code=2,
        ),
        marks=(pytest.mark.slow,),
    ),
    # --- data: exam questions left out, and exams refused (added with per-question exclusions) ---
    Case(
        "exam-answer-missing",
        "data",
        "evaluate.py exam=jsonl with a question that has no answer field",
        lambda u: exam_exclusions(
            u, [exam_item(["a"]), {k: v for k, v in exam_item(["a"], qid="T-02").items() if k != "answer"}]
        ),
        Expect(
            ExcludedQuestion,
            r"exam\.jsonl:2:",
            r"missing field 'answer' \(the answer\)",
            r"exam\.fields\.answer(.|\n)*T-02 excluded; kept T-01",
        ),
    ),
    Case(
        "exam-question-text-blank",
        "data",
        'evaluate.py exam=jsonl with a question whose text is ""',
        lambda u: exam_exclusions(u, [exam_item(["a"]), {**exam_item(["a"], qid="T-02"), "problem_text": ""}]),
        Expect(
            ExcludedQuestion,
            r"exam\.jsonl:2:",
            r"question text \('problem_text'\) is empty",
            r"a figure-only question\?\) \(T-02 excluded; kept T-01",
        ),
    ),
    Case(
        "exam-no-readable-question",
        "data",
        "evaluate.py exam=jsonl exam.path=<a predictions file>",
        lambda u: u.evaluate(
            "exam=jsonl",
            "exam.path="
            + str(
                u.jsonl(
                    "exam.jsonl", [{"problem_id": "T-01", "prediction": "a"}, {"problem_id": "T-02", "prediction": "b"}]
                )
            ),
        ),
        Expect(
            DataError,
            r"exam\.jsonl: no record can be read as a question \(2 tried; the first, \S+exam\.jsonl:1",
            r"missing field 'problem_text'",
            r"map the file's fields with exam\.fields",
        ),
    ),
    Case(
        "exam-every-question-excluded",
        "data",
        "evaluate.py exam=jsonl whose one question has its choices in a figure",
        lambda u: u.evaluate("exam=jsonl", "exam.path=" + str(u.jsonl("exam.jsonl", [exam_item(["a"], [""] * 5)]))),
        Expect(
            DataError,
            r"exam\.jsonl: every question the filters select has a problem of its data",
            r"\(1 excluded; the first, \S+exam\.jsonl:1: choice texts a-e are blank",
            r"fix those records, or point the exam at the right data",
        ),
    ),
]

# --- running the catalogue ---------------------------------------------------------------------------

PRODUCED: dict[str, Produced] = {}


def produce(case: Case, user: User) -> Produced:
    try:
        returned = case.how(user)
    except Exception as error:  # noqa: BLE001 - the catalogue records whatever the user would see
        message = str(error)
        if isinstance(error, ConfigCompositionException) and error.__cause__ is not None:
            message = f"{message}\n{error.__cause__}"  # what Hydra prints on the command line
        return Produced(type(error).__name__, message)
    if isinstance(returned, Produced):
        return returned
    pytest.fail(f"{case.id}: {case.what} raised no error")


@pytest.fixture()
def user(tmp_path, tiny_cache, compose, typed) -> User:
    return User(tmp_path, tiny_cache, compose, typed)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input(case: Case, user: User):
    produced = produce(case, user)
    PRODUCED[case.id] = Produced(produced.error, produced.message.replace(str(user.tmp), "<tmp>"), produced.exit_code)
    expect = case.expect
    assert produced.error == expect.error.__name__, produced
    assert "Traceback" not in produced.message
    for part in ("input", "problem", "fix"):
        pattern = getattr(expect, part)
        if pattern is not None:
            assert re.search(pattern, produced.message), (
                f"{case.id}: the {part} /{pattern}/ is not in:\n{produced.message}"
            )
    if expect.exit_code is not None:
        assert produced.exit_code == expect.exit_code, produced
    if case.id == "loss-becomes-nan":
        check_diverged_run(user)


def check_diverged_run(user: User) -> None:
    """A diverged run keeps its checkpoint and says why it failed; it does not look like a finished one."""
    (run_dir,) = {p.parent for p in (user.tmp / "cli").rglob("failure.json")}
    checkpoints = list((run_dir / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 1 and (checkpoints[0] / "adapter_model.safetensors").is_file()
    assert (checkpoints[0] / "trainer_state.json").is_file()
    assert not (run_dir / "train_summary.json").exists() and not (run_dir / "adapter").exists()
    assert json.loads((run_dir / "failure.json").read_text())["error_type"] == "TrainingDivergedError"


def test_the_catalogue_is_large_and_covers_every_kind():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    assert {c.kind for c in CASES} == {"config", "data", "model", "runtime"}


# --- the table --------------------------------------------------------------------------------------


def first_line(produced: Produced) -> str:
    """What a user reads first: the first line, or for a ConfigError each of its problems."""
    lines = [line.strip() for line in produced.message.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("The configuration has"):  # a ConfigError or a subclass
        return "<br>".join(line.removeprefix("- ") for line in lines[1:])
    return lines[0] if lines else ""


def render_catalogue(cases: list[Case], produced: dict[str, Produced]) -> str:
    """A markdown table: each case, the error it produced and the first line of its message."""
    rows = ["| case | kind | input | error | message (first line) |", "| --- | --- | --- | --- | --- |"]
    for case in cases:
        got = produced.get(case.id)
        error = (
            "not run" if got is None else got.error + (f" (exit {got.exit_code})" if got.exit_code is not None else "")
        )
        line = "" if got is None else first_line(got).replace("|", "\\|")
        rows.append(f"| {case.id} | {case.kind} | `{case.what}` | {error} | {line} |")
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module", autouse=True)
def write_catalogue():
    yield
    target = os.environ.get("MEDTUNE_CATALOGUE_OUT")
    if target and PRODUCED:
        Path(target).write_text(render_catalogue(CASES, PRODUCED), encoding="utf-8")
