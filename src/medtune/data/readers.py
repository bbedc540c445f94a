"""Readers for the training formats, all turned into `InstructionRecord`s.

Formats: Alpaca (`instruction` / `input` / `output`), prompt/response (the Vietnamese paper) and
exam records in IgakuQA's fields (`problem_text` / `choices` / `answer`). Files are JSON Lines or a
JSON list; a folder is read file by file. Every problem names `file:line`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from medtune.config.schema import DatasetFormat
from medtune.errors import DataError

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


def iter_json_objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, object) from a JSON Lines file (`file:line`) or a JSON list (`file:item N`)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno}); fix the file.") from e
        for index, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise DataError(f"{path}: item {index} is a {type(item).__name__}, expected a JSON object.")
            yield f"{path}:item {index}", item
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}:{lineno}: not valid JSON ({e.msg}, column {e.colno}); fix or delete the line."
            ) from e
        if not isinstance(item, dict):
            raise DataError(f"{path}:{lineno}: a {type(item).__name__}, expected a JSON object per line.")
        yield f"{path}:{lineno}", item


def detect_format(item: dict[str, Any]) -> DatasetFormat | None:
    for fmt, fields in REQUIRED_FIELDS.items():
        if all(f in item for f in fields):
            return fmt
    return None


def format_choices(choices: list[str]) -> str:
    """The choices one per line after their labels: "a. X" up to 26 choices, "1. X" ... "n. X" beyond."""
    from medtune.evaluation.types import choice_labels  # the one label scheme, shared with the parser

    return "\n".join(f"{label}. {choice}" for label, choice in zip(choice_labels(len(choices)), choices))


def exam_answer_text(item: dict[str, Any], where: str) -> str:
    """The training target of an exam record: each gold letter with its choice text, e.g. `a. X, c. Y`."""
    choices = item["choices"]
    answer = item["answer"]
    answers = answer if isinstance(answer, list) else [answer]
    answers = [str(a).strip() for a in answers if str(a).strip()]
    if not answers:
        raise DataError(f"{where}: the answer is empty; give the correct letter(s), e.g. \"answer\": [\"c\"].")
    if not choices:  # a numeric-answer question
        for value in answers:
            if not _is_number(value):
                raise DataError(
                    f"{where}: answer {value!r} is not a number, and the question has no choices to pick from; "
                    "give the choices, or a numeric answer such as \"answer\": [\"12\"]."
                )
        return ",".join(answers)
    from medtune.evaluation.types import choice_labels  # here: evaluation imports this module

    labels = choice_labels(len(choices))
    lines = []
    for letter in answers:
        label = letter.strip().lower()
        if label not in labels:
            raise DataError(
                f"{where}: answer {letter!r} is not one of the {len(choices)} choices ({labels[0]}–{labels[-1]}); "
                "fix the answer key."
            )
        index = labels.index(label)
        lines.append(f"{labels[index]}. {choices[index]}")
    return ", ".join(lines)  # one line: the answer parser reads the last line of a marker-less response


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def to_record(item: dict[str, Any], fmt: DatasetFormat, where: str) -> InstructionRecord:
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
    if fmt == DatasetFormat.alpaca:
        record = InstructionRecord(str(item["instruction"]), str(item.get("input") or ""), str(item["output"]), where)
    elif fmt == DatasetFormat.prompt_response:
        record = InstructionRecord(str(item["prompt"]), "", str(item["response"]), where)
    else:
        choices = item["choices"]
        if not isinstance(choices, list):
            raise DataError(f"{where}: 'choices' is a {type(choices).__name__}, expected a list of strings.")
        from medtune.evaluation.types import choice_labels

        blank = [choice_labels(len(choices))[i] for i, c in enumerate(choices) if not str(c).strip()]
        if blank:
            raise DataError(
                f"{where}: choice {blank[0]} is empty ({len(blank)} of the {len(choices)} choices are blank); give "
                "every choice its text, or \"choices\": [] for a question with a numeric answer."
            )
        record = InstructionRecord(
            str(item["problem_text"]), format_choices([str(c) for c in choices]), exam_answer_text(item, where), where
        )
    if not record.instruction.strip():
        raise DataError(f"{where}: the instruction / question text is empty.")
    if not record.output.strip():
        raise DataError(f"{where}: the output / response is empty; a record without a target cannot train.")
    return record


def data_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.suffix in (".jsonl", ".json") and not p.name.endswith(SKIPPED_SUFFIXES)
        )
        if not files:
            raise DataError(f"{path}: the folder holds no .jsonl or .json files; put the data files there, or "
                            "point dataset.path at a file.")
        return files
    if not path.exists():
        raise DataError(f"{path}: no such file; check dataset.path.")
    return [path]


def read_records(path: Path | None, fmt: DatasetFormat = DatasetFormat.auto, max_records: int | None = None) -> list[InstructionRecord]:
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
