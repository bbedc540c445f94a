"""A console a person can read, and a log that holds it: one progress display for training, no library
chatter, and `<run dir>/<job>.log` with what the console showed (progress bars at their last state)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from conftest import cli
from medtune.reporting.console_log import keep_console

# What transformers' own display and the libraries printed before: none of it may reach the console.
NOISE = (
    "{'loss':",
    "{'eval_loss':",
    "{'train_runtime':",
    "Loading weights",
    "[INFO] Running in WANDB offline mode",
    "built successfully",
    "Setting accelerator to CPU",
    "compilers.C.base",
)


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def test_a_redrawn_line_is_kept_at_its_last_state_without_escape_codes(tmp_path):
    with keep_console(tmp_path, "job"):
        for done in (0, 50, 100):  # what tqdm writes to a file: carriage-return redraws
            sys.stderr.write(f"\rgenerating: {done}%")
        sys.stderr.write("\n")
        print("\x1b[1mbold\x1b[0m and plain")
        sys.stderr.write("\rbar 10%\r        \r")  # a bar cleared before the next line
        print("after the bar")
        print()
        sys.stdout.write("no newline at the end")
    header, *kept = (tmp_path / "job.log").read_text().splitlines()
    assert header.startswith("--- ") and " job: " in header  # when and which command wrote what follows
    assert kept == ["generating: 100%", "bold and plain", "after the bar", "", "no newline at the end"]


def test_a_job_that_prints_nothing_or_is_turned_away_leaves_no_log(tmp_path):
    with keep_console(tmp_path, "quiet"):
        pass
    assert not (tmp_path / "quiet.log").exists()

    class TurnedAway(Exception):
        pass

    for before in (None, "--- an earlier run\nits line\n"):
        path = tmp_path / "refused.log"
        path.unlink(missing_ok=True)
        if before is not None:
            path.write_text(before)
        with pytest.raises(TurnedAway):
            with keep_console(tmp_path, "refused", discard_if=lambda e: isinstance(e, TurnedAway)):
                print("checking the dir")
                raise TurnedAway
        assert (path.read_text() if path.exists() else None) == before  # the dir is as it was


def test_the_error_that_ended_a_job_ends_its_log_and_secrets_are_masked(tmp_path, monkeypatch):
    from medtune.errors import ConfigError

    monkeypatch.setenv("MEDTUNE_TEST_API_KEY", "sk-verysecret-123456")
    with pytest.raises(ConfigError):
        with keep_console(tmp_path, "evaluate"):
            print("calling the endpoint with sk-verysecret-123456")
            raise ConfigError(["eval.endpoint.url=http://x: refused the key sk-verysecret-123456"])
    text = (tmp_path / "evaluate.log").read_text()
    assert "sk-verysecret" not in text
    assert "calling the endpoint with ***" in text
    assert "medtune: " in text and "refused the key ***" in text


def test_logging_handlers_that_write_to_the_console_write_to_the_log_too(tmp_path):
    logger = logging.getLogger("medtune.test_console")
    handler = logging.StreamHandler(sys.stderr)  # as Hydra's job logging or a library's own handler holds it
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with keep_console(tmp_path, "job"):
            logger.warning("a library warning")
        assert handler.stream is sys.stderr  # given back to the console afterwards
    finally:
        logger.removeHandler(handler)
    assert "a library warning" in (tmp_path / "job.log").read_text()


def test_only_the_main_process_keeps_a_log(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with keep_console(tmp_path, "train") as log:
        print("rank 1 speaks")
    assert log is None and not (tmp_path / "train.log").exists()


def test_library_info_lines_are_off_unless_medtune_verbose_is_set(monkeypatch):
    from medtune.quiet import quiet_third_party

    root = logging.getLogger()
    level = root.level
    try:
        monkeypatch.setenv("MEDTUNE_VERBOSE", "1")
        quiet_third_party(cpu_only=True)
        assert root.level == logging.INFO
        monkeypatch.delenv("MEDTUNE_VERBOSE")
        quiet_third_party(cpu_only=True)
        assert root.level == logging.WARNING
    finally:
        root.setLevel(level)


def test_tiny_training_in_process_prints_progress_lines_and_train_log_holds_them(run_train, tmp_path, capsys):
    run_train(["train.max_steps=3", "train.logging_steps=1", "logger=none", "exam_eval.enabled=false"], name="run")
    printed = capsys.readouterr()
    assert "\r" not in printed.out and "{'loss':" not in printed.out
    assert "step 1/3 (33%)  loss " in printed.out and "step 3/3 (100%)  loss " in printed.out
    log = (tmp_path / "run" / "train.log").read_text()
    assert set(lines(printed.out)) <= set(lines(log))
    assert any(line.startswith("batches: ") for line in lines(log)) and "medtune train: tiny + lora" in log


@pytest.mark.slow
def test_tiny_training_shows_plain_progress_lines_and_train_log_holds_the_console(tmp_path):
    run_dir = tmp_path / "run"
    result = cli("train.py", f"hydra.run.dir={run_dir}", "train.max_steps=3", "train.logging_steps=1", "logger=none")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    # Redirected output: plain lines, no redraws, no raw log dicts, no library chatter.
    assert "\r" not in out and "\r" not in result.stderr
    for noise in NOISE:
        assert noise not in out + result.stderr, noise
    assert "step 1/3 (33%)  loss " in out and "tokens/s" in out and "ETA" in out
    assert "step 3/3 (100%)  loss " in out
    assert "eval at step 0: loss " in out and "eval at step 3: loss " in out
    log = (run_dir / "train.log").read_text()
    assert "\r" not in log and "\x1b" not in log
    held = set(lines(log))
    missing = [line for line in lines(out) + lines(result.stderr) if line not in held]
    assert not missing, missing  # every line the console showed, in the order of the log
    assert any(line.startswith("batches: ") for line in held)
    assert "medtune train: tiny + lora on sample" in log and f"run dir: {run_dir}" in log


def test_evaluate_log_holds_the_results_table(run_eval, tmp_path, capsys):
    out = tmp_path / "ev"
    run_eval(["eval=loglik", "logger=none", f"eval.output_dir={out}", "exam.max_questions=3"], name="a")
    captured = capsys.readouterr()
    printed = captured.out
    log = (out / "evaluate.log").read_text()
    assert "\r" not in captured.err  # redirected: the progress is plain lines, no redraws
    assert "log-likelihood: 3/3 prompt (100%) in " in captured.err
    assert "paper (Algorithm 1)" in printed
    assert set(lines(printed)) <= set(lines(log))
    assert f"results: {out}" in log and "\r" not in log


def test_the_progress_display_is_quiet_on_other_ranks_and_plain_when_redirected():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from medtune.training.progress import TrainingProgress

    args = TrainingArguments(output_dir=str(Path("/nonexistent")), report_to="none", use_cpu=True)
    state, control = TrainerState(max_steps=4, num_input_tokens_seen=0), TrainerControl()
    progress = TrainingProgress(interactive=False, every_seconds=3600)
    progress.on_train_begin(args, state, control)
    for step in range(1, 5):
        state.global_step, state.num_input_tokens_seen = step, 100 * step
        progress.on_step_end(args, state, control)
        progress.on_log(args, state, control, logs={"loss": 2.0 / step, "grad_norm": 1.0})
    progress.on_log(args, state, control, logs={"eval_loss": 0.25})
    progress.on_train_end(args, state, control)
    # The first step, the last (a line every hour otherwise), the evaluation; never a log dict.
    assert [line.split("  ")[0] for line in progress.lines] == [
        "step 1/4 (25%)",
        "step 4/4 (100%)",
        "eval at step 4: loss 0.25",
    ]
    assert "loss 0.5" in progress.lines[1]

    # Steps between logged ones: after `quiet_seconds` without a line, one with the last loss.
    waiting = TrainingProgress(interactive=False, every_seconds=3600, quiet_seconds=0)
    state.global_step = 0
    waiting.on_train_begin(args, state, control)
    for step in range(1, 5):
        state.global_step, control.should_log = step, step in (1, 4)
        waiting.on_step_end(args, state, control)
        if control.should_log:
            waiting.on_log(args, state, control, logs={"loss": 1.0 / step})
    assert [line.split("  ")[:2] for line in waiting.lines] == [
        ["step 1/4 (25%)", "loss 1"],
        ["step 2/4 (50%)", "loss 1"],
        ["step 3/4 (75%)", "loss 1"],
        ["step 4/4 (100%)", "loss 0.25"],
    ]

    other = TrainingProgress(interactive=False)
    state.is_world_process_zero = False
    other.on_train_begin(args, state, control)
    other.on_log(args, state, control, logs={"loss": 1.0})
    other.on_train_end(args, state, control)
    assert other.lines == []


def test_a_loop_redirected_writes_plain_lines_at_the_start_on_a_schedule_and_at_the_end():
    import io

    from medtune.reporting.progress_bar import PlainProgress, progress_bar

    stream = io.StringIO()
    with progress_bar(total=5, desc="generating", unit="q", stream=stream, every_seconds=1e9) as bar:
        assert isinstance(bar, PlainProgress)  # a StringIO is no terminal
        for _ in range(5):
            bar.update(1)
    first, last = stream.getvalue().splitlines()
    assert first.startswith("generating: 1/5 q (20%), elapsed 0:00:00, ETA ")
    assert last.startswith("generating: 5/5 q (100%) in ")

    every = io.StringIO()
    items = list(progress_bar(range(3), desc="chunks", unit="chunk", stream=every, every_seconds=0))
    assert items == [0, 1, 2]
    shown = every.getvalue().splitlines()
    assert [line.split(",")[0].split(" in ")[0] for line in shown] == [
        "chunks: 1/3 chunk (33%)",
        "chunks: 2/3 chunk (67%)",
        "chunks: 3/3 chunk (100%)",
        "chunks: 3/3 chunk (100%)",
    ]
    assert "\r" not in every.getvalue()

    resumed = io.StringIO()  # everything resumed: the loop did nothing and says nothing
    with progress_bar(total=4, initial=4, desc="chunks", unit="chunk", stream=resumed):
        pass
    assert resumed.getvalue() == ""
    muted = io.StringIO()
    with progress_bar(total=2, desc="requests", unit="q", stream=muted, disable=True) as bar:
        bar.update(2)
    assert muted.getvalue() == ""
