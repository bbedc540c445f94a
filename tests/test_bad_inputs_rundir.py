"""Catalogue: a run dir holds one run's results; full and read-only directories; files under the umask.

- A finished evaluation or training run is not replaced by a command with other settings: the
  command is refused with a message naming the dir, what it holds, what changed and the two ways
  out (another dir, or overwrite=true), and the dir is byte for byte what it was: no .hydra/, no
  failure.json, no log. The lock's refusal leaves nothing either. The same settings run as before.
- `evaluate.py run=R` writes into R/eval/<exam>_<prompt>_<mode>/ (its .hydra/ included), never R/.hydra/.
- A failure.json of an earlier attempt goes once the same command succeeds.
- A full disk (ENOSPC) and a read-only file system (EROFS) in the evaluation's output dir, the lock
  and the model cache are messages naming the dir, what was kept and the fix, never a traceback.
  These run the real evaluate.py inside a user + mount namespace (`unshare -rm`) on a small tmpfs
  that a test fills up or remounts read-only, with a local OpenAI-compatible server standing in for
  the model so that the fault can come between two answers; they are skipped where namespaces are
  not allowed. Read-only by permission (chmod 0o555) is tested too, skipped as root (root ignores it).
- Result files follow the umask: under umask 022, metrics.json, predictions.jsonl, .hydra/config.yaml
  and config.yaml are 0644 (mkstemp alone made them 0600).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO
from medtune.finished import ResultsOfOtherSettings
from medtune.run_lock import lock_output_dir
from test_runtime_faults import Expect, check_message

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "HYDRA_FULL_ERROR": "0", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (hidden ones included) and its bytes."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def predictions_file(path: Path, letter: str) -> Path:
    """A published system's answers in IgakuQA's format (two questions of the bundled sample exam)."""
    path.write_text("".join(json.dumps({"problem_id": q, "prediction": letter}) + "\n" for q in ("SJA-01", "SJA-02")))
    return path


def replay(tmp_path: Path, out: Path, predictions: Path, *extra: str, umask: int | None = None):
    """`python evaluate.py predictions=<file> hydra.run.dir=<out>`: scoring only, no model to load."""
    command = [
        sys.executable,
        "evaluate.py",
        f"paths.output_root={tmp_path}",
        "logger=none",
        f"predictions={predictions}",
        f"hydra.run.dir={out}",
        *extra,
    ]
    return subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


# --- one run's results per dir ---------------------------------------------------------------------


def test_a_finished_evaluation_refuses_other_settings_and_the_refusal_leaves_no_trace(tmp_path):
    out = tmp_path / "ev"
    first = replay(tmp_path, out, predictions_file(tmp_path / "a.jsonl", "a"), umask=0o022)
    assert first.returncode == 0, first.stderr[-3000:]
    # Under umask 022 every result file is 0644, as any other file a program writes.
    for name in ("metrics.json", "predictions.jsonl", "eval_state.json", ".hydra/config.yaml", ".hydra/hydra.yaml"):
        assert mode(out / name) == 0o644, name
    before = snapshot(out)

    other = predictions_file(tmp_path / "b.jsonl", "b")
    refused = replay(tmp_path, out, other)
    assert refused.returncode == 2
    check_message(
        refused.stderr,
        Expect(
            input=rf"{out} holds a finished evaluation of \S+ on exam=sample \(accuracy [\d.]+ of \d+ questions; "
            r"metrics\.json from [\d-]+ [\d:]+\)",
            problem=rf"made with other settings \(changed: predictions: '\S+a\.jsonl' -> '{other}'\)\. "
            r"A directory holds one run's results, so this command was refused and nothing there was changed",
            fix=r"write elsewhere \(eval\.output_dir=<another dir>\); to replace them on purpose, add overwrite=true "
            r"\(it deletes metrics\.json, predictions\.jsonl, eval_state\.json there first\)",
        ),
    )
    assert snapshot(out) == before  # no .hydra/ of the refused command, no failure.json, no log lines


@pytest.mark.slow
def test_the_same_settings_run_again_and_overwrite_replaces_on_purpose(run_eval, tmp_path):
    common = ["exam.max_questions=2", "eval.max_new_tokens=4", "logger=none"]
    run_eval(common, name="ev")
    again = run_eval(common, name="ev")  # the same settings: answered again, as before
    assert again["n"] == 2
    before = snapshot(tmp_path / "ev")
    with pytest.raises(ResultsOfOtherSettings, match=r"changed: eval\.max_new_tokens: 4 -> 6\)"):
        run_eval(["exam.max_questions=2", "eval.max_new_tokens=6", "logger=none"], name="ev")
    assert snapshot(tmp_path / "ev") == before
    # An interrupted evaluation of other settings is refused the same way, before any answer is mixed in.
    (tmp_path / "ev" / "metrics.json").unlink()
    (tmp_path / "ev" / "predictions.jsonl").rename(tmp_path / "ev" / "predictions.partial.jsonl")
    with pytest.raises(ResultsOfOtherSettings, match=r"holds an interrupted evaluation \(2 question\(s\) answered"):
        run_eval(["exam.max_questions=2", "eval.max_new_tokens=6", "logger=none"], name="ev")

    replaced = run_eval(["exam.max_questions=2", "eval.max_new_tokens=6", "logger=none", "overwrite=true"], name="ev")
    assert replaced["n"] == 2
    state = json.loads((tmp_path / "ev" / "eval_state.json").read_text())
    assert state["settings"]["eval"]["max_new_tokens"] == 6
    assert not (tmp_path / "ev" / "predictions.partial.jsonl").exists()


def test_a_busy_finished_dir_turns_the_command_away_without_writing(tmp_path):
    out = tmp_path / "ev"
    answers = predictions_file(tmp_path / "a.jsonl", "a")
    assert replay(tmp_path, out, answers).returncode == 0
    with lock_output_dir(out, setting="hydra.run.dir", task="evaluation"):
        before = snapshot(out)
        turned_away = replay(tmp_path, out, answers)
        assert snapshot(out) == before  # Hydra's .hydra/ and evaluate.log included
    assert turned_away.returncode == 2
    check_message(
        turned_away.stderr,
        Expect(input=rf"eval\.output_dir={out} is in use", problem=rf"pid {os.getpid()}", fix="use another directory"),
    )


def test_a_failure_record_goes_once_the_same_command_succeeds(tmp_path):
    out = tmp_path / "ev"
    answers = tmp_path / "a.jsonl"
    answers.write_text('{"problem_id": "SJA-01", "prediction": "a"}\nnot json\n{"problem_id": "SJA-02"}\n')
    failed = replay(tmp_path, out, answers)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert json.loads((out / "failure.json").read_text())["error_type"] == "DataError"
    predictions_file(answers, "a")  # the file fixed
    fixed = replay(tmp_path, out, answers)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert (out / "metrics.json").is_file() and not (out / "failure.json").exists()


@pytest.mark.slow
def test_a_finished_training_refuses_other_settings_and_evaluate_run_keeps_out_of_its_hydra(
    run_train, compose, tmp_path, tiny_cache
):
    from medtune.config.job import JobContext
    from medtune.entry import Claim, execute
    from medtune.io import process_umask
    from medtune.jobs import EVALUATE

    umask = os.umask(0o022)
    process_umask.cache_clear()
    try:
        run_train(["train.max_steps=2", "exam_eval.enabled=false", "logger=none"], name="run")
    finally:
        os.umask(umask)
        process_umask.cache_clear()
    run_dir = tmp_path / "run"
    assert mode(run_dir / "config.yaml") == 0o644 and mode(run_dir / "train_summary.json") == 0o644

    # evaluate.py run=R hydra.run.dir=R: the evaluation's files, .hydra/ included, go to R/eval/<...>/.
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("the training's own\n")
    overrides = [f"paths.output_root={tmp_path}", f"paths.cache_dir={tiny_cache}", "logger=none"]
    cfg = EVALUATE.validate(
        compose([*overrides, f"run={run_dir}", "exam.max_questions=1", "eval.max_new_tokens=4"], config_name="evaluate")
    )
    claim = Claim(hydra_files={"config.yaml": "evaluation: yes\n"})
    execute(EVALUATE, cfg, JobContext(run_dir=run_dir, task_name="evaluate"), claim)
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "the training's own\n"
    (evaluation,) = (run_dir / "eval").iterdir()
    assert (evaluation / ".hydra" / "config.yaml").read_text() == "evaluation: yes\n"
    assert (evaluation / "metrics.json").is_file()

    before = snapshot(run_dir)
    with pytest.raises(ResultsOfOtherSettings) as refused:
        run_train(["train.max_steps=2", "train.learning_rate=0.02", "exam_eval.enabled=false", "logger=none"])
    check_message(
        str(refused.value),
        Expect(
            input=rf"{run_dir} holds a finished training run of model=tiny with adapter=lora \(2 steps; "
            r"train_summary\.json from",
            problem=r"made with other settings \(changed: train\.learning_rate: [\d.e-]+ -> 0\.02\)",
            fix=r"train into a new run dir \(leave out hydra\.run\.dir, or hydra\.run\.dir=<another dir>\); to replace "
            r"them on purpose, add overwrite=true \(it deletes train_summary\.json, run_info\.json, adapter, "
            r"checkpoints, eval, metrics\.jsonl, config\.yaml there first\)\. To train it further .* resume=force",
        ),
    )
    assert snapshot(run_dir) == before

    replaced = run_train(
        ["train.max_steps=2", "train.learning_rate=0.02", "exam_eval.enabled=false", "logger=none", "overwrite=true"]
    )
    assert replaced.summary["train/resumed_from"] is None  # trained again from step 0
    assert not (run_dir / "eval").exists()  # the evaluations of the replaced adapter went with it
    assert "learning_rate: 0.02" in (run_dir / "config.yaml").read_text()


# --- full and read-only directories ------------------------------------------------------------------


def namespaces_allowed() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(
    not namespaces_allowed(), reason="user + mount namespaces (unshare -rm) are not allowed here"
)

DRIVER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    sys.path.insert(0, {tests!r})
    from chat_server import ScriptedChatServer

    disk, target, fault, at_request = {disk!r}, {target!r}, {fault!r}, {at_request!r}
    os.makedirs(disk, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", disk], check=True)
    calls = []

    def break_the_disk():
        if fault == "read-only" and at_request == 0:
            subprocess.run(["mount", "-o", "remount,ro", disk], check=True)
            return
        if fault == "read-only":  # the running evaluation holds files open there: make the dir read-only alone
            subprocess.run(["mount", "--bind", target, target], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)
            return
        try:  # fill it up
            with open(os.path.join(disk, "filler"), "wb") as filler:
                while True:
                    filler.write(b"x" * 4096)
                    filler.flush()
        except OSError:
            pass

    def saved_answers():
        try:
            with open(os.path.join(str(target), "predictions.partial.jsonl")) as partial:
                return sum(1 for line in partial if line.strip())
        except OSError:
            return 0

    def reply(prompt):
        calls.append(prompt)
        if len(calls) == at_request:
            deadline = time.monotonic() + 60
            while saved_answers() < at_request - 1 and time.monotonic() < deadline:
                time.sleep(0.05)  # the answers before this request are saved first: no race with the run
            break_the_disk()
        return "The answer is (a)."

    if at_request == 0:
        break_the_disk()
    with ScriptedChatServer(reply) as server:
        args = [a.replace("<url>", server.url) for a in {args!r}]
        run = subprocess.run([sys.executable, *args], cwd={repo!r}, capture_output=True, text=True, env={env!r})
    print(json.dumps({{"rc": run.returncode, "stderr": run.stderr}}))
    """
)


def in_namespace(tmp_path: Path, fault: str, at_request: int, *args: str, target: Path | None = None):
    """(exit code, stderr) of `python <args>` inside a user + mount namespace in which tmp_path/disk is a
    512 KiB tmpfs that breaks at the server's `at_request`-th request (0: at once): "full" fills it up,
    "read-only" remounts it read-only (or, once the run holds files there, makes `target` read-only)."""
    script = DRIVER.format(
        tests=str(TESTS),
        disk=str(tmp_path / "disk"),
        target=str(target),
        fault=fault,
        at_request=at_request,
        args=list(args),
        repo=str(REPO),
        env=ENV,
    )
    done = subprocess.run(["unshare", "-rm", sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["rc"], result["stderr"]


def endpoint_eval(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    """evaluate.py answering through the namespace's local server, one question at a time."""
    return [
        "evaluate.py",
        f"paths.output_root={tmp_path}",
        "logger=none",
        "eval=endpoint",
        "eval.endpoint.url=<url>",
        "eval.endpoint.concurrency=1",
        "eval.endpoint.max_retries=0",
        "exam.max_questions=3",
        f"eval.output_dir={out}",
        *extra,
    ]


@pytest.mark.slow
@needs_namespaces
def test_a_disk_that_fills_up_during_an_evaluation_is_a_message(tmp_path):
    out = tmp_path / "disk" / "ev"
    code, stderr = in_namespace(tmp_path, "full", 1, *endpoint_eval(tmp_path, out), target=out)
    assert code == 2
    check_message(
        stderr,
        Expect(
            input=rf"the evaluation's predictions and metrics could not be written in {out}",
            problem=r"the disk is full \(OSError: \[Errno 28\] No space left on device",
            fix=r"No answer had been saved yet\. Fix: free space on that disk \([\d.]+ \w+ free there now\), or "
            r"evaluate into another directory \(eval\.output_dir=<a writable dir with room>\); then run the same "
            r"command again",
        ),
    )


@pytest.mark.slow
@needs_namespaces
def test_a_directory_that_turns_read_only_during_an_evaluation_keeps_the_answers_so_far(tmp_path):
    out = tmp_path / "disk" / "ev"
    code, stderr = in_namespace(tmp_path, "read-only", 2, *endpoint_eval(tmp_path, out), target=out)
    assert code == 2
    check_message(
        stderr,
        Expect(
            input=rf"the evaluation's predictions and metrics could not be written in {out}",
            problem=r"it is on a read-only file system \(OSError: \[Errno 30\] Read-only file system",
            fix=rf"The 1 question\(s\) answered before are kept in {out}/predictions\.partial\.jsonl; the same "
            r"command continues from them\. Fix: remount the file system of \S+ read-write, or evaluate into "
            r"another directory",
        ),
    )


@needs_namespaces
def test_a_read_only_output_dir_is_refused_at_the_lock(tmp_path):
    out = tmp_path / "disk" / "ev"
    code, stderr = in_namespace(tmp_path, "read-only", 0, *endpoint_eval(tmp_path, out))
    assert code == 2
    check_message(
        stderr,
        Expect(
            input=rf"eval\.output_dir={out}: the lock file \.medtune\.lock, the first thing a run writes there, "
            rf"could not be written in {out}",
            problem=r"it is on a read-only file system",
            fix=r"Nothing was written there\. Fix: remount .* or use another directory \(eval\.output_dir=<a "
            r"writable dir with room>\); then run the same command again",
        ),
    )


@pytest.mark.slow
@needs_namespaces
def test_a_full_model_cache_is_a_message(tmp_path):
    cache = tmp_path / "disk" / "cache"
    args = [
        "evaluate.py",
        f"paths.output_root={tmp_path}",
        "logger=none",
        "model=tiny",
        "exam.max_questions=1",
        f"paths.cache_dir={cache}",
    ]
    code, stderr = in_namespace(tmp_path, "full", 0, *args)
    assert code == 2
    check_message(
        stderr,
        Expect(
            input=rf"model=tiny: the model cache \(its converted or built weights\) could not be written in {cache}",
            problem=r"the disk is full",
            fix=r"The models cached there before are unchanged .* Fix: free space on that disk.*, or point "
            r"paths\.cache_dir at a writable dir with room",
        ),
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 directory all the same")
def test_read_only_directories_by_permission_are_messages(run_eval, typed, tmp_path):
    from medtune.modeling.description import describe_model
    from medtune.storage import StorageError

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(StorageError) as lock:
            run_eval(["exam.max_questions=1", "logger=none", f"eval.output_dir={locked / 'ev'}"])
        check_message(
            str(lock.value),
            Expect(
                input=rf"eval\.output_dir={locked}/ev: the lock file \.medtune\.lock",
                problem=r"this user may not write there \(permission denied\)",
                fix=rf"chmod u\+w {locked}/ev\), or use another directory",
            ),
        )
        with pytest.raises(StorageError) as cache:
            describe_model(typed(["model=tiny"]).model, locked / "cache")
        check_message(
            str(cache.value),
            Expect(input=rf"the model cache .* in {locked}/cache", problem="permission denied", fix="paths.cache_dir"),
        )
    finally:
        locked.chmod(0o755)


# --- the real embedded model ----------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_evaluation_with_other_settings_is_refused_byte_for_byte(tmp_path, tiny_cache):
    out = tmp_path / "smol"
    common = [
        sys.executable,
        "evaluate.py",
        "model=smollm2_135m",
        "prompt=chat",
        "exam=sample_en",
        "exam.max_questions=2",
        f"paths.output_root={tmp_path}",
        f"paths.cache_dir={tiny_cache}",  # the session's cache: SmolLM2's GGUF is converted once
        "logger=none",
        f"hydra.run.dir={out}",
    ]
    first = subprocess.run([*common, "eval.max_new_tokens=8"], cwd=REPO, capture_output=True, text=True, env=ENV)
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(out)
    second = subprocess.run([*common, "eval.max_new_tokens=12"], cwd=REPO, capture_output=True, text=True, env=ENV)
    assert second.returncode == 2
    check_message(
        second.stderr,
        Expect(
            input=rf"{out} holds a finished evaluation of smollm2_135m on exam=sample_en",
            problem=r"changed: eval\.max_new_tokens: 8 -> 12",
            fix=r"overwrite=true",
        ),
    )
    assert snapshot(out) == before
