"""A catalogue of bad inputs met on the command line: busy output dirs, absurd numbers, Hydra's own errors.

Each case names the error it expects and three regex fragments of its message (the input, the
problem, the fix), as tests/test_bad_inputs.py does. Cases run where the behaviour lives: the typed
rules in-process (`typed` / `to_typed`), Hydra's composition errors through the real entry scripts
in a subprocess (they happen before any medtune code runs, so only `run_cli` can say them; each
takes about a second, as no model is imported), and the output-dir lock both in-process and
through evaluate.py while this test process holds the lock.

`MEDTUNE_CATALOGUE_OUT=<file.md> pytest tests/test_bad_inputs_cli.py` also writes the table of
cases and the first line of each message.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, train_args
from medtune.errors import ConfigError
from medtune.run_lock import LOCK_NAME, lock_output_dir
from test_bad_inputs import render_catalogue

HOST = socket.gethostname()


@dataclass(frozen=True)
class Expect:
    error: str  # the error's class name ("ConfigError"), or "warning" for a run that goes on
    input: str  # regex: the key, override or directory the message names
    problem: str  # regex: what is wrong
    fix: str  # regex: what to do
    exit_code: int | None = None  # CLI cases: the process's exit status
    never: str | None = None  # regex the message must not contain (e.g. a `+key` suggestion)


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # lock | value | hydra | multirun
    what: str  # the bad input, as a user would type or meet it
    how: Callable[[User], Any]  # raises in-process, or returns a `Produced`
    expect: Expect
    marks: tuple = ()


@dataclass
class Produced:
    error: str
    message: str
    exit_code: int | None = None


class User:
    """Runs medtune as a user would, with outputs in tmp_path and the session's tiny model cache."""

    def __init__(self, tmp_path: Path, tiny_cache: Path, compose, typed, capsys):
        self.tmp, self.cache, self._compose, self._typed, self.capsys = tmp_path, tiny_cache, compose, typed, capsys

    def paths(self) -> list[str]:
        return [f"paths.output_root={self.tmp}", f"paths.cache_dir={self.cache}"]

    def typed(self, *overrides: str):
        return self._typed([*self.paths(), *overrides])

    def typed_eval(self, *overrides: str):
        from medtune.config.eval_schema import EvalRunConfig
        from medtune.jobs import to_typed

        return to_typed(
            self._compose([*self.paths(), "logger=none", *overrides], config_name="evaluate"), EvalRunConfig
        )

    def replay(self, out: Path) -> dict:
        """evaluate.py predictions=<file> eval.output_dir=<out>, in-process: no model, the lock all the same."""
        from medtune.config.job import JobContext
        from medtune.entry import execute
        from medtune.jobs import EVALUATE

        cfg = self.typed_eval(f"predictions={self.predictions()}", f"eval.output_dir={out}")
        return execute(EVALUATE, cfg, JobContext(run_dir=self.tmp / "eval_job", task_name="evaluate"))

    def predictions(self) -> Path:
        path = self.tmp / "data" / "predictions.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"problem_id": "nobody", "prediction": "a"}) + "\n", encoding="utf-8")
        return path

    def warning(self, call: Callable[[], Any]) -> Produced:
        """What a run that goes on prints on stderr (a warning, a takeover)."""
        self.capsys.readouterr()
        call()
        return Produced("warning", self.capsys.readouterr().err)

    def cli(self, script: str, *args: str, timeout: int = 300) -> Produced:
        """`python <script> ...` in a subprocess, args as the shell would pass them after splitting."""
        out = self.tmp / "cli"
        result = subprocess.run(
            [
                sys.executable,
                *train_args(
                    [script, f"paths.output_root={out}", f"paths.cache_dir={self.cache}", "logger=none", *args]
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
        message = result.stderr.strip()
        error = "ConfigError" if "medtune: The configuration has" in message else "no medtune message"
        message = message.split("medtune: ", 1)[1] if "medtune: " in message else message
        return Produced(error, message.strip(), result.returncode)


# --- the lock ---------------------------------------------------------------------------------------


def evaluate_into_held_dir(u: User) -> Produced:
    """This process holds eval.output_dir; evaluate.py into it must be refused, naming this pid."""
    out = u.tmp / "shared_eval"
    with lock_output_dir(out, setting="eval.output_dir", task="evaluation"):
        produced = u.cli("evaluate.py", f"predictions={u.predictions()}", f"eval.output_dir={out}")
    assert not (out / "metrics.json").exists() and not (out / "failure.json").exists()
    return produced


def evaluate_into_held_dir_in_process(u: User) -> None:
    out = u.tmp / "shared_eval"
    with lock_output_dir(out, setting="eval.output_dir", task="evaluation"):
        u.replay(out)


def train_into_held_dir(u: User) -> None:
    from medtune.config.job import JobContext
    from medtune.entry import execute
    from medtune.jobs import TRAIN

    run_dir = u.tmp / "run"
    with lock_output_dir(run_dir, setting="hydra.run.dir", task="training"):
        execute(TRAIN, u.typed("logger=none"), JobContext(run_dir=run_dir))


def stale_lock(u: User) -> Produced:
    """A lock file naming a pid of this host that has ended: the next evaluation takes it over."""
    out = u.tmp / "stale_eval"
    out.mkdir(parents=True)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (out / LOCK_NAME).write_text(
        json.dumps(
            {
                "pid": ended.pid,
                "host": HOST,
                "started": "2024-01-01T09:00:00",
                "command": "evaluate.py",
                "task": "evaluation",
            }
        )
    )
    produced = u.warning(lambda: u.replay(out))
    assert (out / "metrics.json").is_file() and not (out / LOCK_NAME).exists()
    return Produced(produced.error, produced.message.replace(str(ended.pid), "<ended pid>"))


def lock_from_another_host(u: User) -> None:
    out = u.tmp / "nfs_eval"
    out.mkdir(parents=True)
    (out / LOCK_NAME).write_text(
        json.dumps(
            {
                "pid": 4242,
                "host": "gpu-node-7",
                "started": "2024-01-01T09:00:00",
                "command": "evaluate.py",
                "task": "evaluation",
            }
        )
    )
    u.replay(out)


# --- a multirun with a failing job ---------------------------------------------------------------------


def multirun_one_bad_job(u: User, *train_overrides: str) -> Produced:
    """train.py -m with three learning rates, the middle one nan: jobs 0 and 2 run, the summary names job 1."""
    produced = u.cli("train.py", "-m", "train.learning_rate=2e-4,nan,1e-3", *train_overrides, timeout=600)
    (sweep,) = (u.tmp / "cli" / "train" / "multiruns").iterdir()
    assert json.loads((sweep / "1" / "failure.json").read_text())["error_type"] == "ConfigError"
    assert not (sweep / "0" / "failure.json").exists() and not (sweep / "2" / "failure.json").exists()
    summary = produced.message.rsplit("medtune: ", 1)[-1]  # after each failed job's own message
    return Produced("ConfigError", summary.replace(str(u.tmp), "<tmp>"), produced.exit_code)


# --- the cases --------------------------------------------------------------------------------------

PID = os.getpid()

CASES = [
    # --- one process per output directory ---
    Case(
        "evaluate-dir-in-use",
        "lock",
        "evaluate.py eval.output_dir=<a dir this process holds> (CLI)",
        evaluate_into_held_dir,
        Expect(
            "ConfigError",
            r"eval\.output_dir=\S+shared_eval is in use by another medtune process",
            rf"pid {PID} on host {re.escape(HOST)} \(evaluation, started \d{{4}}-\d\d-\d\dT[\d:]+",
            r"wait for that one to finish, or use another directory \(eval\.output_dir=<another dir>\)",
            exit_code=2,
        ),
    ),
    Case(
        "evaluate-dir-in-use-in-process",
        "lock",
        "run_evaluation into a dir another holder has",
        evaluate_into_held_dir_in_process,
        Expect(
            "OutputDirBusy",
            r"eval\.output_dir=\S+shared_eval is in use",
            rf"pid {PID} on host {re.escape(HOST)}",
            r"use another directory \(eval\.output_dir=",
        ),
    ),
    Case(
        "train-dir-in-use",
        "lock",
        "train.py hydra.run.dir=<a run dir another process trains in>",
        train_into_held_dir,
        Expect(
            "OutputDirBusy",
            r"hydra\.run\.dir=\S+run is in use by another medtune process",
            rf"pid {PID} on host {re.escape(HOST)} \(training",
            r"use another directory \(hydra\.run\.dir=",
        ),
    ),
    Case(
        "stale-lock-taken-over",
        "lock",
        "evaluate.py into a dir whose lock names an ended pid of this host",
        stale_lock,
        Expect(
            "warning",
            r"took over a stale lock on \S+stale_eval",
            rf"pid <ended pid> on host {re.escape(HOST)} \(evaluation, started 2024-01-01T09:00:00",
            r"no longer holds it \(that process has ended\)",
        ),
    ),
    Case(
        "lock-from-another-host",
        "lock",
        "evaluate.py into a dir whose lock names gpu-node-7",
        lock_from_another_host,
        Expect(
            "OutputDirBusy",
            r"eval\.output_dir=\S+nfs_eval is locked by pid 4242 on host gpu-node-7",
            r"another machine, and this one cannot tell whether that process still runs",
            r"use another directory \(eval\.output_dir=<another dir>\); if that run is over \(it crashed\), "
            r"delete \S+\.medtune\.lock",
        ),
    ),
    # --- speed options a machine or model cannot take ---
    Case(
        "liger-kernels-on-cpu",
        "value",
        "train.py train.kernels=liger (hardware=cpu)",
        lambda u: u.typed("train.kernels=liger"),
        Expect(
            "ConfigError",
            r"train\.kernels=liger",
            r"runs Triton kernels on a CUDA GPU, and hardware\.accelerator is cpu",
            r"use train\.kernels=none here",
        ),
    ),
    Case(
        "liger-kernels-unknown-family",
        "value",
        "train.py model=gptj6b_vi hardware=a100x1 train.kernels=liger dry_run=true",
        lambda u: u.typed("model=gptj6b_vi", "hardware=a100x1", "train.kernels=liger", "dry_run=true"),
        Expect(
            "ConfigError",
            r"train\.kernels=liger",
            r"has no kernels for model_type 'gptj'",
            r"use train\.kernels=none",
        ),
    ),
    Case(
        "flash-attention-on-cpu",
        "value",
        "train.py train.attention=flash_attention_2 (hardware=cpu)",
        lambda u: u.typed("train.attention=flash_attention_2"),
        Expect(
            "ConfigError",
            r"train\.attention=flash_attention_2",
            r"needs a CUDA device \(hardware=cpu\)",
            r"use train\.attention=auto",
        ),
    ),
    Case(
        "micro-batch-a-word",
        "value",
        "train.py train.micro_batch_size=many",
        lambda u: u.typed("train.micro_batch_size=many"),
        Expect(
            "ConfigError",
            r"train\.micro_batch_size='many'",
            r"must be a whole number of examples per device",
            r"e\.g\. train\.micro_batch_size=4, or auto",
        ),
    ),
    Case(
        "micro-batch-auto-unknown-gpu-memory",
        "value",
        "train.py hardware=a100x1 hardware.device_memory_gib=null train.micro_batch_size=auto dry_run=true",
        lambda u: u.cli(
            "train.py",
            "hardware=a100x1",
            "hardware.device_memory_gib=null",
            "train.micro_batch_size=auto",
            "dry_run=true",
        ),
        Expect(
            "ConfigError",
            r"train\.micro_batch_size=auto",
            r"the memory of NVIDIA A100-SXM4-80GB \(memory unknown",
            r"set hardware\.device_memory_gib=<GiB per device> or a number",
            exit_code=2,
        ),
        marks=(pytest.mark.slow,),
    ),
    # --- numbers that pass the types but not reason, refused before any model loads ---
    Case(
        "learning-rate-nan",
        "value",
        "train.py train.learning_rate=nan",
        lambda u: u.typed("train.learning_rate=nan"),
        Expect(
            "ConfigError",
            r"train\.learning_rate=nan",
            r"is not a finite number",
            r"set a positive finite rate, e.g\. train\.learning_rate=2e-4",
        ),
    ),
    Case(
        "learning-rate-inf",
        "value",
        "train.py train.learning_rate=inf",
        lambda u: u.typed("train.learning_rate=inf"),
        Expect(
            "ConfigError", r"train\.learning_rate=inf", r"is not a finite number", r"e\.g\. train\.learning_rate=2e-4"
        ),
    ),
    Case(
        "learning-rate-zero",
        "value",
        "train.py train.learning_rate=0",
        lambda u: u.typed("train.learning_rate=0"),
        Expect("ConfigError", r"train\.learning_rate=0", r"must be positive", r"e\.g\. train\.learning_rate=2e-4"),
    ),
    Case(
        "grad-norm-nan",
        "value",
        "train.py train.max_grad_norm=nan",
        lambda u: u.typed("train.max_grad_norm=nan"),
        Expect(
            "ConfigError",
            r"train\.max_grad_norm=nan",
            r"is not a finite number",
            r"e\.g\. train\.max_grad_norm=1\.0 \(0 turns clipping off\)",
        ),
    ),
    Case(
        "seed-negative",
        "value",
        "train.py seed=-1",
        lambda u: u.typed("seed=-1"),
        Expect(
            "ConfigError",
            r"seed=-1",
            r"is outside \[0, 4294967296\) \(0 to 2\^32 - 1 = 4294967295",
            r"pick one in that range, e.g\. seed=42",
        ),
    ),
    Case(
        "seed-2-to-the-32",
        "value",
        "train.py seed=4294967296",
        lambda u: u.typed("seed=4294967296"),
        Expect("ConfigError", r"seed=4294967296", r"is outside \[0, 4294967296\)", r"e\.g\. seed=42"),
    ),
    Case(
        "evaluate-seed-negative",
        "value",
        "evaluate.py seed=-1",
        lambda u: u.typed_eval("seed=-1"),
        Expect("ConfigError", r"seed=-1", r"is outside \[0, 4294967296\)", r"e\.g\. seed=42"),
    ),
    Case(
        "max-steps-10-to-the-12",
        "value",
        "train.py train.max_steps=1000000000000",
        lambda u: u.typed("train.max_steps=1000000000000"),
        Expect(
            "ConfigError",
            r"train\.max_steps=1000000000000",
            r"is more than 10,000,000 steps, over 3,333 times "
            r"the paper's 3000",
            r"Set the steps you mean, e\.g\. train\.max_steps=3000",
        ),
    ),
    Case(
        "max-steps-above-soft-bound",
        "value",
        "train.py train.max_steps=200000 (a warning; the run goes on)",
        lambda u: u.warning(lambda: u.typed("train.max_steps=200000")),
        Expect(
            "warning",
            r"train\.max_steps=200,000",
            r"is over 100,000 steps \(67 times the paper's 3000\)",
            r"the run goes on, but check that this is the number you meant",
        ),
    ),
    # --- Hydra's composition errors, said by medtune (exit 2) ---
    Case(
        "unknown-key",
        "hydra",
        "train.py adapter.rr=8 (CLI)",
        lambda u: u.cli("train.py", "adapter.rr=8"),
        Expect(
            "ConfigError",
            r"adapter\.rr is not a key of adapter",
            r"its keys are: name, kind, r, alpha, dropout, target_modules, bias, quantization",
            r"Did you mean adapter\.r=8\?",
            exit_code=2,
            never=r"\+adapter",
        ),
    ),
    Case(
        "unknown-top-level-key",
        "hydra",
        "evaluate.py sed=1 (CLI)",
        lambda u: u.cli("evaluate.py", "sed=1"),
        Expect(
            "ConfigError",
            r"sed is not a key of the evaluate\.py config",
            r"its keys are: .*\bseed\b",
            r"Did you mean seed=1\?",
            exit_code=2,
            never=r"\+sed",
        ),
    ),
    Case(
        "unknown-group-option",
        "hydra",
        "train.py model=nosuch (CLI)",
        lambda u: u.cli("train.py", "model=nosuch"),
        Expect(
            "ConfigError",
            r"model=nosuch is not an option of model",
            r"the options are: .*\bsmollm2_135m\b.*\btiny\b",
            r"Pick one of them, or add conf/model/nosuch\.yaml",
            exit_code=2,
        ),
    ),
    Case(
        "near-miss-group-option",
        "hydra",
        "train.py adapter=qlor (CLI)",
        lambda u: u.cli("train.py", "adapter=qlor"),
        Expect(
            "ConfigError",
            r"adapter=qlor is not an option of adapter",
            r"the options are: full, lora, ",
            r"Did you mean adapter=qlora\?",
            exit_code=2,
        ),
    ),
    Case(
        "path-with-spaces-unquoted",
        "hydra",
        "train.py dataset.path=/data/my file.jsonl (unquoted: two arguments)",
        lambda u: u.cli("train.py", "dataset.path=/data/my", "file.jsonl"),
        Expect(
            "ConfigError",
            r"'file\.jsonl' is not an override \(key=value\)",
            r"the rest of dataset\.path=/data/my file\.jsonl, which the shell split at its spaces",
            r"Quote the whole override, with the value in double quotes inside: "
            r"""'dataset\.path="/data/my file\.jsonl"'""",
            exit_code=2,
        ),
    ),
    Case(
        "value-with-parentheses",
        "hydra",
        "train.py 'dataset.path=/data/exam (2018).jsonl' (CLI)",
        lambda u: u.cli("train.py", "dataset.path=/data/exam (2018).jsonl"),
        Expect(
            "ConfigError",
            r"dataset\.path=/data/exam \(2018\)\.jsonl cannot be parsed",
            r"Hydra reads spaces, parentheses, .* as its own syntax",
            r"""'dataset\.path="/data/exam \(2018\)\.jsonl"'""",
            exit_code=2,
        ),
    ),
    Case(
        "run-dir-unwritable",
        "hydra",
        "train.py hydra.run.dir=/proc/medtune_run (CLI)",
        lambda u: u.cli("train.py", "hydra.run.dir=/proc/medtune_run"),
        Expect(
            "ConfigError",
            r"hydra\.run\.dir=/proc/medtune_run: cannot create or write /proc/medtune_run",
            r"\((No such file or directory|Permission denied|Read-only file system)\)",
            r"point hydra\.run\.dir at a directory you can write, e.g\. hydra\.run\.dir=outputs/my_run",
            exit_code=2,
        ),
    ),
    Case(
        "wrong-type",
        "hydra",
        "train.py adapter.r=abc (CLI)",
        lambda u: u.cli("train.py", "adapter.r=abc"),
        Expect(
            "ConfigError",
            r"adapter\.r=abc",
            r"could not be converted to Integer",
            r"give adapter\.r a value of that type, e.g\. adapter\.r=8",
            exit_code=2,
        ),
    ),
    # --- train.py -m: a failed job is recorded, the others run, the summary lists it ---
    Case(
        "multirun-one-job-fails",
        "multirun",
        "train.py -m train.learning_rate=2e-4,nan,1e-3 dry_run=true (CLI)",
        lambda u: multirun_one_bad_job(u, "dry_run=true"),
        Expect(
            "ConfigError",
            r"1 of 3 jobs failed in <tmp>/cli/train/multiruns/\S+; the others ran to the end",
            r"#1 +train\.learning_rate=nan +ConfigError: train\.learning_rate=nan is not a finite number",
            r"failure\.json with the whole error .*rerun those jobs alone: python train\.py",
            exit_code=2,
        ),
        marks=(pytest.mark.slow,),
    ),
    Case(
        "multirun-one-job-fails-training",
        "multirun",
        "train.py -m train.learning_rate=2e-4,nan,1e-3 train.max_steps=2 (CLI, real training)",
        lambda u: multirun_one_bad_job(u, "train.max_steps=2", "exam_eval.enabled=false"),
        Expect(
            "ConfigError",
            r"1 of 3 jobs failed",
            r"#1 +train\.learning_rate=nan +ConfigError",
            r"rerun those jobs alone",
            exit_code=2,
        ),
        marks=(pytest.mark.slow,),
    ),
]

# --- running the catalogue ---------------------------------------------------------------------------

PRODUCED: dict[str, Produced] = {}


def produce(case: Case, user: User) -> Produced:
    try:
        returned = case.how(user)
    except Exception as error:  # noqa: BLE001 - the catalogue records whatever the user would see
        return Produced(type(error).__name__, str(error))
    if isinstance(returned, Produced):
        return returned
    pytest.fail(f"{case.id}: {case.what} raised no error")


@pytest.fixture()
def user(tmp_path, tiny_cache, compose, typed, capsys) -> User:
    return User(tmp_path, tiny_cache, compose, typed, capsys)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input(case: Case, user: User):
    produced = produce(case, user)
    PRODUCED[case.id] = Produced(produced.error, produced.message.replace(str(user.tmp), "<tmp>"), produced.exit_code)
    expect = case.expect
    assert produced.error == expect.error, produced
    assert "Traceback" not in produced.message
    for part in ("input", "problem", "fix"):
        pattern = getattr(expect, part)
        assert re.search(pattern, produced.message), f"{case.id}: the {part} /{pattern}/ is not in:\n{produced.message}"
    if expect.never is not None:
        assert not re.search(expect.never, produced.message), f"{case.id}: /{expect.never}/ in:\n{produced.message}"
    if expect.exit_code is not None:
        assert produced.exit_code == expect.exit_code, produced


def test_a_lock_refusal_is_a_config_error_and_leaves_the_holder_alone(tmp_path):
    """The refused process gets a ConfigError (exit 2); the holder keeps its lock file and its lock."""
    from medtune.run_lock import OutputDirBusy

    holder = lock_output_dir(tmp_path, setting="eval.output_dir", task="evaluation").acquire()
    try:
        with pytest.raises(OutputDirBusy) as refused:
            lock_output_dir(tmp_path, setting="eval.output_dir", task="evaluation").acquire()
        assert isinstance(refused.value, ConfigError)
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == PID
    finally:
        holder.release()
    assert not (tmp_path / LOCK_NAME).exists()
    with lock_output_dir(tmp_path, setting="eval.output_dir", task="evaluation"):  # free again
        pass


def test_only_rank_0_takes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with lock_output_dir(tmp_path, setting="hydra.run.dir", task="training") as lock:
        assert not lock.held and not (tmp_path / LOCK_NAME).exists()


def test_an_evaluation_refuses_to_finish_when_its_state_changed_under_it(tmp_path):
    """finish re-reads eval_state.json: answers from two settings must not end under one metrics.json."""
    from medtune.evaluation.task import STATE, check_state_unchanged

    (tmp_path / STATE).write_text(json.dumps({"fingerprint": "mine"}))
    check_state_unchanged(tmp_path, "mine")
    (tmp_path / STATE).write_text(json.dumps({"fingerprint": "another prompt"}))
    with pytest.raises(
        ConfigError,
        match=r"changed while this evaluation ran \(it started with fingerprint mine, "
        r"the file now has fingerprint another prompt\).*nothing was written",
    ):
        check_state_unchanged(tmp_path, "mine")


def test_the_catalogue_covers_every_kind():
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.kind for c in CASES} == {"lock", "value", "hydra", "multirun"}


# --- the table --------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def write_catalogue():
    yield
    target = os.environ.get("MEDTUNE_CATALOGUE_OUT")
    if target and PRODUCED:
        # Beside the main catalogue's table, not over it.
        out = Path(target)
        out.with_name(f"{out.stem}_cli{out.suffix}").write_text(render_catalogue(CASES, PRODUCED), encoding="utf-8")
