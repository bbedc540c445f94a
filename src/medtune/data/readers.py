"""Readers for the training formats, all turned into `InstructionRecord`s.

Formats: Alpaca (`instruction` / `input` / `output`), prompt/response (the Vietnamese paper) and
exam records in IgakuQA's fields (`problem_text` / `choices` / `answer`). Files are JSON Lines or a
JSON list (`.json`), read by `medtune.data.json_files.iter_json_objects`; a folder is read file by
file. Every problem names `file:line` and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from medtune.config.schema import DatasetFormat
from medtune.data.answers import AnswerProblem, read_answer_key
from medtune.data.choice_texts import AmbiguousAnswer, letters_for_texts
from medtune.data.file_checks import check_data_file
from medtune.data.json_files import describe_value, iter_json_objects, text_field
from medtune.errors import DataError
from medtune.vocabulary import choice_labels

CHOICE_LETTERS = "abcdefghijklmnopqrstuvwxyz"
SKIPPED_SUFFIXES = ("_metadata.jsonl", "_translate.jsonl", "qa_progress.jsonl")  # side files, not records
REQUIRED_FIELDS = {
    DatasetFormat.alpaca: ("instruction", "output"),
    DatasetFormat.prompt_response: ("prompt", "response"),
    DatasetFormat.exam: ("problem_text", "choices", "answer"),
}
BUNDLED_SAMPLE_FILES = ("exam_ja.jsonl", "exam_en.jsonl", "instructions.jsonl", "chat_vi.jsonl")


@dataclass(frozen=True)
class InstructionRecord:
    instruction: str
    input: str
    output: str
    source: str  # file:line, for messages and for tracing a prediction back to its record


def bundled_sample_dir() -> Path:
    return Path(str(resources.files("medtune") / "resources" / "sample"))


def bundled_sample_files() -> list[Path]:
    return [bundled_sample_dir() / name for name in BUNDLED_SAMPLE_FILES]


# --- the training formats -----------------------------------------------------------------------------


def detect_format(item: dict[str, Any]) -> DatasetFormat | None:
    for fmt, fields in REQUIRED_FIELDS.items():
        if all(f in item for f in fields):
            return fmt
    return None


def format_choices(choices: Sequence[str]) -> str:
    """The choices one per line after their labels: "a. X" up to 26 choices, "1. X" ... "n. X" beyond."""
    return "\n".join(f"{label}. {choice}" for label, choice in zip(choice_labels(len(choices)), choices))


def exam_choices(item: dict[str, Any], where: str) -> list[str]:
    """The choice texts of a training exam record; a number is a choice text as written (25 -> "25")."""
    choices = item["choices"]
    if not isinstance(choices, list):
        shown = "null" if choices is None else f"a {type(choices).__name__}"
        raise DataError(
            f"{where}: 'choices' is {shown}, expected a list of strings ([] for a question with a numeric answer)."
        )
    labels = choice_labels(len(choices))
    texts = []
    for label, choice in zip(labels, choices):
        if choice is None or isinstance(choice, (bool, list, dict)):
            raise DataError(
                f"{where}: choice {label} is {describe_value(choice)}, not text; give every choice "
                "its text as a JSON string."
            )
        texts.append(str(choice))
    blank = [label for label, text in zip(labels, texts) if not text.strip()]
    if blank:
        raise DataError(
            f"{where}: choice {blank[0]} is empty ({len(blank)} of the {len(choices)} choices are blank); give "
            'every choice its text, or "choices": [] for a question with a numeric answer.'
        )
    return texts


def exam_answer_text(item: dict[str, Any], where: str, choices: Sequence[str] | None = None) -> str:
    """The training target of an exam record: each gold label with its choice text, e.g. `a. X, c. Y`.

    The answer is read by `read_answer_key`, as the evaluation reader reads it (ｃ, C, ③, "a,c",
    "ac"); of alternatives ("a or d") the printed key, the first, is the target. A question with
    no choices has its number(s) as the target.
    """
    choices = exam_choices(item, where) if choices is None else choices
    try:
        # A key written as a choice's text ("Aspirin" for "b") is read as its letter, as the exam reader does.
        value, _ = letters_for_texts(item["answer"], choices, "answer")
    except AmbiguousAnswer as problem:
        raise DataError(f"{where}: {problem}.") from None
    try:
        key = read_answer_key(value, len(choices))[0]
    except AnswerProblem as problem:
        raise DataError(_answer_message(problem, item["answer"], where)) from None
    if not choices:  # a numeric-answer question
        return ",".join(key)
    labels = choice_labels(len(choices))
    # one line: the answer parser reads the last line of a marker-less response
    return ", ".join(f"{label}. {choices[labels.index(label)]}" for label in key)


def _answer_message(problem: AnswerProblem, value: Any, where: str) -> str:
    if problem.kind == "empty_answer":
        null = " (null)" if value is None else ""
        return f'{where}: the answer is empty{null}; give the correct letter(s), e.g. "answer": ["c"].'
    if problem.n_choices == 0:
        return (
            f"{where}: answer {problem.token!r} is not a number, and the question has no choices to pick from; "
            'give the choices, or a numeric answer such as "answer": ["12"].'
        )
    labels = choice_labels(problem.n_choices)
    return (
        f"{where}: answer {problem.token!r} is not one of the {problem.n_choices} choices ({labels[0]}–"
        f"{labels[-1]}); fix the answer key."
    )


def to_record(item: dict[str, Any], fmt: DatasetFormat, where: str) -> InstructionRecord:
    """One record of `fmt` (`auto`: by its fields) as an `InstructionRecord`; every text field is checked."""
    if fmt == DatasetFormat.auto:
        detected = detect_format(item)
        if detected is None:
            raise DataError(
                f"{where}: fields {sorted(item)} match no known format; expected instruction/input/output, "
                "prompt/response, or problem_text/choices/answer."
            )
        fmt = detected
    missing = [f for f in REQUIRED_FIELDS[fmt] if f not in item]
    if missing:
        raise DataError(
            f"{where}: missing field {missing[0]!r} for a {fmt.value} record (needs {', '.join(REQUIRED_FIELDS[fmt])}; "
            f"the record has {sorted(item)}); add the field, or set dataset.format to the format the file is in "
            "(auto decides per record)."
        )
    no_target = "a record without a target cannot train: write it, or delete the record"
    if fmt == DatasetFormat.alpaca:
        # A null or "" input is Alpaca's "no input" (exports often write null): both read as "".
        instruction = text_field(item, "instruction", where)
        has_input = item.get("input") not in (None, "")
        given = text_field(item, "input", where, allow_empty=True) if has_input else ""
        return InstructionRecord(instruction, given, text_field(item, "output", where, no_target), where)
    if fmt == DatasetFormat.prompt_response:
        return InstructionRecord(
            text_field(item, "prompt", where), "", text_field(item, "response", where, no_target), where
        )
    question = text_field(item, "problem_text", where)
    choices = exam_choices(item, where)
    return InstructionRecord(question, format_choices(choices), exam_answer_text(item, where, choices), where)


def data_files(path: Path) -> list[Path]:
    """The data files of a file or folder, each a regular file within the size limit (`check_data_file`):
    the tokenization cache hashes them before they are read, so a FIFO or a device is refused here."""
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.suffix in (".jsonl", ".json") and not p.name.endswith(SKIPPED_SUFFIXES)
        )
        if not files:
            raise DataError(
                f"{path}: the folder holds no .jsonl or .json files; put the data files there, or "
                "point dataset.path at a file."
            )
        return [check_data_file(file) for file in files]
    if not path.exists():
        raise DataError(f"{path}: no such file; check dataset.path.")
    return [check_data_file(path, "dataset.path")]


def read_records(
    path: Path | None, fmt: DatasetFormat = DatasetFormat.auto, max_records: int | None = None
) -> list[InstructionRecord]:
    """All records of `path` (a file or a folder); `None` reads the bundled sample set."""
    files = bundled_sample_files() if path is None else data_files(Path(path))
    records: list[InstructionRecord] = []
    for file in files:
        before = len(records)
        for where, item in iter_json_objects(file):
            records.append(to_record(item, fmt, where))
            if max_records is not None and len(records) >= max_records:
                return records
        if len(records) == before:
            raise DataError(
                f"{file}: the file is empty; a data file needs at least one record: add records, or point "
                "dataset.path at the right file."
            )
    return records
