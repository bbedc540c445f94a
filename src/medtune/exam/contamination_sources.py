"""What the contamination audit reads: training texts, each with its `file:line`, and the exam's questions.

Training files are read as medtune's readers read them (`iter_json_objects`: UTF-8, JSON Lines or a
JSON list, one `file:line` per record; `.txt` / `.md` documents), but leniently: the audit looks for
exam text wherever it is, so a record of any shape is read for its text, never refused.

- instruction records (Alpaca `instruction` / `input` / `output`; generated QA is Alpaca): the three
  fields, one paragraph each;
- prompt/response records: both fields;
- exam records (`problem_text` / `choices`, e.g. JJSimQA or MedQA used as training data): the question,
  its choices as labelled lines (as training renders them) and the explanation if any;
- pretraining documents: a JSON record's `text` field, or a `.txt` / `.md` file cut into paragraphs
  at blank lines (each named by the line it starts on, so a match points at its paragraph);
- chat records (`messages`: [{"role", "content"}]): every turn's content;
- any other record: its string values (and strings inside lists), in field order.

`run_training_texts(cfg)` reads the files a training run reads (`training_data_for(cfg).source_files()`),
`worked_example_texts(exam)` the worked examples an exam's prompt shows before each question. The exam
side is the questions medtune scores: `medtune.exam.loading.load_exam(cfg.exam)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medtune.config.exam_schema import ExamConfig
from medtune.config.schema import TrainRunConfig
from medtune.data.file_checks import check_data_file
from medtune.data.json_files import iter_json_objects, read_utf8_text
from medtune.data.readers import SKIPPED_SUFFIXES, format_choices
from medtune.data.text_corpus import JSON_SUFFIXES, TEXT_SUFFIXES
from medtune.data.training_data import training_data_for
from medtune.errors import DataError
from medtune.exam.contamination import TrainingText
from medtune.exam.prompting import read_fewshot
from medtune.vocabulary import ExamQuestion

FIELD_GROUPS = (
    ("instruction", "input", "output"),
    ("prompt", "response"),
)


def training_files(paths: Sequence[Path | str]) -> list[Path]:
    """The files under `paths` (files, or folders read recursively) that hold training text, in order."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix in TEXT_SUFFIXES + JSON_SUFFIXES and not p.name.endswith(SKIPPED_SUFFIXES)
            )
            if not found:
                raise DataError(f"{path}: the folder holds no .jsonl, .json, .txt or .md files to audit.")
            files += found
        elif path.exists():
            files.append(check_data_file(path))
        else:
            raise DataError(f"{path}: no such training file or folder; give the paths of the training data.")
    return files


def training_texts(paths: Sequence[Path | str], text_field: str = "text") -> Iterator[TrainingText]:
    """Every training text under `paths`, as (file:line, text); `text_field` is the documents' field."""
    for file in training_files(paths):
        if file.suffix in TEXT_SUFFIXES:
            yield from _paragraphs(file)
            continue
        for where, item in iter_json_objects(file):
            text = record_text(item, text_field)
            if text.strip():
                yield TrainingText(where, text)


def record_text(item: dict[str, Any], text_field: str = "text") -> str:
    """The text of one training record, whatever its format (see the module docstring)."""
    if isinstance(item.get("problem_text"), str):
        choices = item.get("choices")
        labelled = format_choices([str(c) for c in choices]) if isinstance(choices, list) else ""
        explanation = item.get("explanation") if isinstance(item.get("explanation"), str) else ""
        return _paragraphs_of([item["problem_text"], labelled, explanation])
    for fields in FIELD_GROUPS:
        if any(isinstance(item.get(key), str) for key in fields):
            return _paragraphs_of([item.get(key) for key in fields])
    if isinstance(item.get(text_field), str):
        return item[text_field]
    if isinstance(item.get("messages"), list):
        return _paragraphs_of([turn.get("content") for turn in item["messages"] if isinstance(turn, dict)])
    return _paragraphs_of(list(_strings(item)))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for child in value.values():
            yield from _strings(child)
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child)


def _paragraphs_of(parts: Sequence[Any]) -> str:
    """The string parts one paragraph each (a blank line between: it ends a run of choice lines)."""
    return "\n\n".join(part for part in parts if isinstance(part, str) and part.strip())


def _paragraphs(file: Path) -> Iterator[TrainingText]:
    """A plain-text document's paragraphs (split at blank lines), each named by its first line."""
    lines: list[str] = []
    start = 0
    for number, line in enumerate(read_utf8_text(file).splitlines(), start=1):
        if line.strip():
            if not lines:
                start = number
            lines.append(line)
        elif lines:
            yield TrainingText(f"{file}:{start}", "\n".join(lines))
            lines = []
    if lines:
        yield TrainingText(f"{file}:{start}", "\n".join(lines))


def run_training_texts(cfg: TrainRunConfig) -> Iterator[TrainingText]:
    """The texts of the files a training run (train.py, task=train or task=pretrain) reads."""
    return training_texts(training_data_for(cfg).source_files(), cfg.dataset.text_field)


def worked_example_texts(exam: ExamConfig, english: bool | None = None) -> Iterator[TrainingText]:
    """The worked examples evaluate.py shows before each question of `exam` (its fewshot file, or the
    bundled exemplars): question, choices and explanation, as a model reads them in the prompt."""
    english = exam.english if english is None else english
    for example in read_fewshot(exam.fewshot_path, exam.language or "en", english):
        yield TrainingText(example.source, question_text(example, with_explanation=True))


def question_text(question: ExamQuestion, with_explanation: bool = False) -> str:
    """A question as training data would hold it: stem, labelled choices (and its explanation)."""
    parts = [question.question, format_choices(list(question.choices))]
    return _paragraphs_of([*parts, question.explanation if with_explanation else ""])
