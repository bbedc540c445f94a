"""Catalogue: a data path that is no regular file, or too large to read (issue 20, item 2).

A device (`/dev/zero`, `/dev/null`), a FIFO or a folder given where medtune reads a data file is
refused at once, by every reader (datasets, exams and their answer overrides, documents for QA
generation, predictions, judge questions and answers, token files, few-shot files), with a message
naming the path, what it is and the fix; a FIFO is never opened (open() on one waits for a writer:
`never_opened` fails the test, instead of hanging it, if any reader tried). A regular file over the
size limit is refused naming the limit and the variable that raises it. Two cases go through the
real entry scripts; the rest call the readers those scripts call.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import cli
from medtune.config.exam_schema import ExamConfig, ExamFormat
from medtune.data.file_checks import DEFAULT_MAX_GB, MAX_GB_VARIABLE, check_data_file
from medtune.data.json_files import iter_json_objects
from medtune.data.readers import data_files, read_records
from medtune.data.text_corpus import read_documents
from medtune.data.token_examples import read_token_examples
from medtune.errors import ConfigError, DataError
from medtune.evaluation.predictions import read_predictions
from medtune.exam.loading import select_exam
from medtune.exam.prompting import read_fewshot
from medtune.judge.questions import read_answers, read_questions

# Each reader as train.py, evaluate.py, generate_qa.py or judge.py calls it; `folders` says whether a
# folder is a valid input there (it is then read file by file).
READERS: dict[str, tuple[Callable[[Path], object], bool]] = {
    "dataset": (lambda path: read_records(path), True),
    "dataset files (hashed for the cache)": (lambda path: data_files(path), True),
    "token files": (lambda path: read_token_examples(path, vocab_size=100, max_tokens=64), True),
    "exam": (lambda path: select_exam(ExamConfig(name="bad", format=ExamFormat.jsonl, path=str(path))), True),
    "exam answer overrides": (
        lambda path: select_exam(
            ExamConfig(name="bad", format=ExamFormat.sample, path=None, answer_overrides=str(path))
        ),
        False,
    ),
    "few-shot examples": (lambda path: read_fewshot(path, "en"), False),
    "documents for QA generation": (lambda path: read_documents(path, path_key="qa.documents"), True),
    "predictions": (lambda path: read_predictions(path), True),
    "judge questions": (lambda path: read_questions(str(path)), False),
    "judge answers": (lambda path: read_answers(path), False),
}


@pytest.fixture()
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.jsonl"
    os.mkfifo(path)
    return path


@contextmanager
def never_opened(fifo: Path, after_s: float = 10.0) -> Iterator[None]:
    """Fails the test if anything opened `fifo` for reading: a reader blocked in open() is released after
    `after_s` (a writer opens and closes the FIFO, giving it end of file) and the test then fails."""
    released: list[bool] = []
    done = threading.Event()

    def watchdog() -> None:
        while not done.wait(after_s):
            try:  # succeeds only while a reader has the FIFO open (or waits in open())
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                released.append(True)
            except OSError:
                pass

    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    assert not released, f"{fifo} was opened for reading: a FIFO must be refused before anything opens it"


def special_path(kind: str, tmp_path: Path, fifo: Path) -> tuple[Path, str]:
    """The path of `kind` and how the message names what it is."""
    if kind == "fifo":
        return fifo, "a FIFO (named pipe)"
    if kind == "folder":
        folder = tmp_path / "data_folder"
        folder.mkdir()
        return folder, "a folder"
    return Path(kind), "a character device"


KINDS = ["/dev/zero", "/dev/null", "fifo", "folder"]


@pytest.mark.parametrize(
    "reader, kind",
    [
        (reader, kind)
        for reader, (_, folders) in READERS.items()
        for kind in KINDS
        if not (kind == "folder" and folders)
    ],
)
def test_a_data_path_that_is_no_regular_file_is_refused_unopened(reader, kind, tmp_path, fifo):
    read, _ = READERS[reader]
    path, what = special_path(kind, tmp_path, fifo)
    with never_opened(fifo), pytest.raises(DataError) as refused:
        read(path)
    message = str(refused.value)
    assert re.search(rf"{re.escape(str(path))} is {re.escape(what)}, not a regular file", message), message
    assert "medtune reads data only from regular files" in message and "the data file itself" in message


def test_a_fifo_or_device_inside_a_data_folder_is_refused_by_its_name(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n", encoding="utf-8")
    os.mkfifo(folder / "b.jsonl")
    with never_opened(folder / "b.jsonl"), pytest.raises(DataError, match=r"b\.jsonl is a FIFO \(named pipe\)"):
        read_records(folder)
    # documents for QA generation: a folder is read for its regular files only; a FIFO there is passed over
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "notes.txt").write_text("Aspirin inhibits platelet aggregation.", encoding="utf-8")
    os.mkfifo(documents / "c.txt")
    with never_opened(documents / "c.txt"):
        names = [document.name for document in read_documents(documents, path_key="qa.documents")]
    assert "notes.txt" in names and "c.txt" not in names


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    data = tmp_path / "big.jsonl"
    data.write_text(json.dumps({"instruction": "q" * 3000, "output": "a"}) + "\n", encoding="utf-8")
    monkeypatch.setenv(MAX_GB_VARIABLE, "0.000001")  # 1,073 bytes
    with pytest.raises(DataError) as refused:
        read_records(data)
    message = str(refused.value)
    assert message.startswith(f"dataset.path={data} is 3,") and "bytes, over the limit of 1,073 bytes" in message
    assert f"set {MAX_GB_VARIABLE}=1 to read it" in message and "split it into several files in a folder" in message
    with pytest.raises(DataError, match=rf"{data} is 3,\d{{3}} bytes, over the limit"):
        list(iter_json_objects(data))  # the reader of every JSON input checks too
    monkeypatch.setenv(MAX_GB_VARIABLE, "lots")
    with pytest.raises(DataError, match=rf"{MAX_GB_VARIABLE}='lots' is not a positive number of GB"):
        check_data_file(data)
    monkeypatch.delenv(MAX_GB_VARIABLE)
    assert len(read_records(data)) == 1  # the default limit is generous
    assert DEFAULT_MAX_GB >= 4


def test_judge_and_few_shot_paths_are_named_for_what_they_are_in_the_config_check(compose, fifo, tmp_path):
    """judge.py and evaluate.py check these paths before any model loads; a FIFO or a device is not called
    missing, it is named for what it is."""
    from medtune.jobs import JOBS

    judge = next(job for job in JOBS if job.name == "judge")
    with never_opened(fifo), pytest.raises(ConfigError) as refused:
        judge.validate(compose([f"judge.questions={fifo}", "judge.a.answers=/dev/zero"], config_name="judge"))
    problems = "\n".join(refused.value.problems)
    assert f"judge.questions={fifo} is a FIFO (named pipe), not a regular file" in problems
    assert "judge.a.answers=/dev/zero is a character device, not a regular file" in problems
    assert "does not exist" not in problems

    evaluate = next(job for job in JOBS if job.name == "evaluate")
    with pytest.raises(ConfigError, match=r"exam\.fewshot_path=/dev/null is a character device"):
        evaluate.validate(compose(["exam.fewshot_path=/dev/null"], config_name="evaluate"))


def test_evaluate_py_refuses_a_fifo_exam_at_once(fifo, tmp_path):
    with never_opened(fifo):
        done = cli(
            "evaluate.py",
            "exam=jsonl",
            f"exam.path={fifo}",
            "logger=none",
            f"paths.output_root={tmp_path}",
            timeout=120,
        )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    shown = done.stdout + done.stderr
    assert f"exam.path={fifo} is a FIFO (named pipe), not a regular file" in shown
    assert "point exam.path at the data file itself" in shown


@pytest.mark.slow
def test_train_py_refuses_dev_zero_as_its_dataset_at_once(tmp_path):
    done = cli(
        "train.py", "dataset=alpaca_json", "dataset.path=/dev/zero", "logger=none", f"paths.output_root={tmp_path}",
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    shown = done.stdout + done.stderr
    assert "dataset.path=/dev/zero is a character device, not a regular file" in shown
    assert not list(tmp_path.rglob("checkpoint-*")) and not list(tmp_path.rglob("adapter_model.safetensors"))


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "file", "missing"])
def test_an_igakuqa_root_that_is_no_folder_says_what_it_is_and_what_the_root_holds(kind, tmp_path, fifo):
    from medtune.exam.igakuqa import read_igakuqa

    if kind == "fifo":
        root = fifo
    elif kind == "file":
        root = tmp_path / "112-A.jsonl"
        root.write_text("{}\n", encoding="utf-8")
    elif kind == "missing":
        root = tmp_path / "nowhere"
    else:
        root = Path(kind)
    with never_opened(fifo), pytest.raises(DataError) as refused:
        read_igakuqa(root, [2018])
    message = str(refused.value)
    if kind == "file":  # a JSONL file is most likely an exam for exam=jsonl: say so
        assert f"exam.path={root} is a single file" in message and f"use exam=jsonl exam.path={root}" in message
        return
    what = "does not exist" if kind == "missing" else "is not a folder"
    assert f"exam.path={root} {what}" in message and "the folder that holds 2018/" in message, message
