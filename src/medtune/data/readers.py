"""Readers for the training formats, all turned into `InstructionRecord`s, and the JSON reader of every input.

Formats: Alpaca (`instruction` / `input` / `output`), prompt/response (the Vietnamese paper) and
exam records in IgakuQA's fields (`problem_text` / `choices` / `answer`). Files are JSON Lines or a
JSON list (`.json`); a folder is read file by file. Every problem names `file:line` and the field.

`iter_json_objects` is the one JSON reader of medtune's inputs (training data, exams, predictions,
judge questions and answers, documents). It reads UTF-8 with or without a byte-order mark, refuses
other encodings naming the one the file looks like, refuses a key given twice in one record (JSON
would keep the last value silently), and tells a JSON array saved as `.jsonl` from a broken file.
Text fields are checked by `text_field`: null, empty and non-string values are refused, never
turned into the text "None". Before any file is read, `medtune.data.file_checks` refuses a path
that is no regular file (a device, a FIFO, a folder) or is over the size limit, naming it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from medtune.config.schema import DatasetFormat
from medtune.data.answers import AnswerProblem, read_answer_key
from medtune.data.choice_texts import AmbiguousAnswer, letters_for_texts
from medtune.data.file_checks import check_data_file
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
UTF8_BOM = b"\xef\xbb\xbf"
# Byte-order marks of the encodings medtune does not read; UTF-32 first (its LE mark begins with UTF-16's).
FOREIGN_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32 LE", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32 BE", "UTF-32"),
    (b"\xff\xfe", "UTF-16 LE", "UTF-16"),
    (b"\xfe\xff", "UTF-16 BE", "UTF-16"),
)
EIGHT_BIT = "Latin-1 / Windows-1252 or another 8-bit encoding"


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


# --- reading a file: encoding, JSON Lines or a JSON array, duplicate keys ---------------------------


def read_utf8_text(path: Path) -> str:
    """The text of `path` as UTF-8 (a leading BOM dropped); another encoding raises `DataError` naming it,
    and so does a path that is no regular file or is too large (`check_data_file`: it is never opened)."""
    data = check_data_file(path).read_bytes()
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    for bom, name, iconv in FOREIGN_BOMS:
        if data.startswith(bom):
            raise _not_utf8(path, f"{name} (it starts with a {name} byte-order mark)", iconv)
    if b"\x00" in data[:4096]:
        raise _not_utf8(path, *_nul_pattern(data[:4096]))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        name, iconv = _eight_bit_guess(data)
        raise _not_utf8(
            Path(f"{path}:{line}"), f"{name} (byte 0x{data[error.start]:02x} is not UTF-8)", iconv, source=path
        ) from None


def _not_utf8(where: Path, looks_like: str, iconv: str, source: Path | None = None) -> DataError:
    source = Path(where) if source is None else source
    converted = source.with_name(f"{source.stem}.utf8{source.suffix}")
    return DataError(
        f"{where}: not UTF-8 text: the file looks like {looks_like}. medtune reads UTF-8 (a BOM is "
        f"fine): convert it, e.g. `iconv -f {iconv} -t UTF-8 {source} > {converted}`, or re-save it "
        "as UTF-8 in your editor."
    )


def _nul_pattern(head: bytes) -> tuple[str, str]:
    """What a start of file holding NUL bytes looks like: UTF-16 without a BOM (ASCII text leaves every
    other byte 0: odd offsets for little-endian, even for big-endian), or binary data."""
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if odd > 4 * even and odd >= len(head) // 8:
        return "UTF-16 LE (every other byte is NUL; no byte-order mark)", "UTF-16LE"
    if even > 4 * odd and even >= len(head) // 8:
        return "UTF-16 BE (every other byte is NUL; no byte-order mark)", "UTF-16BE"
    return "UTF-32 or binary data (it holds NUL bytes, which text in UTF-8 never does)", "UTF-32"


def _eight_bit_guess(data: bytes) -> tuple[str, str]:
    """The encoding a file that is not UTF-8 most likely is: Shift_JIS when it decodes as such and holds
    kana (Japanese exam files often are), else one of the 8-bit encodings (which cannot be told apart)."""
    try:
        text = data.decode("cp932")
    except UnicodeDecodeError:
        return EIGHT_BIT, "WINDOWS-1252"
    if any("\u3040" <= ch <= "\u30ff" for ch in text):
        return "Shift_JIS (CP932)", "CP932"
    return EIGHT_BIT, "WINDOWS-1252"


class _Repeated(dict):
    """A JSON object that gave a key twice: parsed as JSON does (the last value kept), the key noted."""

    repeated: str = ""


class _JsonDecoder(json.JSONDecoder):
    """A decoder that marks each object giving a key twice (`_Repeated`) and counts them in `repeats`."""

    def __init__(self) -> None:
        super().__init__(object_pairs_hook=self._object)
        self.repeats = 0

    def _object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        seen: set[str] = set()
        marked = _Repeated(obj)
        marked.repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        self.repeats += 1
        return marked


def _repeated_key(value: Any, at: str = "") -> str | None:
    """Where in `value` a key is given twice: "problem_id", or "meta.source" in a nested object; else None."""
    if isinstance(value, _Repeated):
        return f"{at}{value.repeated}"
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = _repeated_key(child, f"{at}{key}." if isinstance(value, dict) else f"{at.rstrip('.')}[{key}].")
        if found:
            return found
    return None


def _record(item: Any, where: str, expected: str, decoder: _JsonDecoder) -> dict[str, Any]:
    """`item` as one record: a JSON object without a repeated key (looked for only where `decoder` met one)."""
    if not isinstance(item, dict):
        kind = "null" if item is None else type(item).__name__
        raise DataError(
            f'{where}: a {kind}, expected {expected}; write each record as one {{"field": value, ...}} object.'
        )
    repeated = _repeated_key(item) if decoder.repeats else None
    if repeated:
        raise DataError(
            f"{where}: the key {repeated!r} appears twice in one record (JSON would keep only the last "
            f"value, silently); keep one {repeated.rsplit('.', 1)[-1]!r} and delete the other."
        )
    return item


def iter_json_objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, object) from a JSON Lines file (`file:line`) or a `.json` list (`file:item N`).

    Problems raise `DataError`: an encoding other than UTF-8, a line that is not JSON (or a JSON
    array saved as .jsonl), a line that is not an object, a key given twice in one object.
    """
    path = Path(path)
    text = read_utf8_text(path)
    decoder = _JsonDecoder()
    if text.lstrip().startswith("["):
        items = _json_array(path, text, decoder)
        if items is not None:
            for index, item in enumerate(items, start=1):
                where = f"{path}:item {index}"
                yield where, _record(item, where, "a JSON object per item", decoder)
            return
    # Lines end at "\n" only: str.splitlines would also cut at U+2028, U+0085 and others, which JSON
    # strings may hold as they are (a "\r" before the "\n" is JSON whitespace).
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.lstrip("\ufeff")  # files joined with `cat` keep each one's BOM
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        decoder.repeats = 0
        try:
            item = decoder.decode(line)
        except json.JSONDecodeError as error:
            raise _not_json_lines(path, text, where, error) from None
        yield where, _record(item, where, "a JSON object per line", decoder)


def _json_array(path: Path, text: str, decoder: _JsonDecoder) -> list[Any] | None:
    """The items of a file that is one JSON array; None for JSON Lines that start with "[" (a list per line).

    Medtune reads an array from a `.json` file; the same array in a `.jsonl` file is refused with the
    rename, so a file's name keeps saying what it holds.
    """
    try:
        items = decoder.decode(text)
    except json.JSONDecodeError as error:
        if path.suffix == ".json":
            raise DataError(
                f"{path}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno}); the file "
                "starts with '[' like a JSON array of records: fix the JSON there."
            ) from None
        return None
    if not isinstance(items, list):
        return None
    if path.suffix != ".json":
        raise DataError(
            f"{path}: this is a JSON array, not JSON lines: name it .json (medtune reads both), e.g. "
            f"`mv {path} {path.with_suffix('.json')}`, or write one record per line."
        )
    return items


def _not_json_lines(path: Path, text: str, where: str, error: json.JSONDecodeError) -> DataError:
    """The error for a line that is not JSON; when the whole file is one (pretty-printed) object, say so."""
    if text.lstrip().startswith("{"):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):
            lists = [key for key, value in whole.items() if isinstance(value, list)]
            fix = (
                f"its records may be the list under {lists[0]!r}: save that list as a .json file, or write its "
                "records one per line"
                if lists
                else "write the record on one line, or save records as a JSON array in a .json file"
            )
            return DataError(
                f"{path}: the file is one JSON object spread over several lines, not JSON Lines (one "
                f"record per line); {fix}."
            )
    return DataError(f"{where}: not valid JSON ({error.msg}, column {error.colno}); fix or delete the line.")


# --- fields -------------------------------------------------------------------------------------------


def describe_value(value: Any) -> str:
    """A JSON value as messages name it: null, true, a number (12), a list, an object, or the string's repr."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


def text_field(
    item: dict[str, Any],
    key: str,
    where: str,
    empty_fix: str = "write the text, or delete the record",
    allow_empty: bool = False,
) -> str:
    """The string `item[key]`; null, empty (unless `allow_empty`) and non-strings raise `DataError`.

    The message names `where` (file:line), the field, what it holds and the fix; `empty_fix` is the
    fix for null and empty values (e.g. why the field may not be empty).
    """
    value = item[key]
    if isinstance(value, str) and (allow_empty or value.strip()):
        return value
    if value is None:
        raise DataError(f"{where}: {key!r} is null; {empty_fix}.")
    if isinstance(value, str):
        raise DataError(f"{where}: {key!r} is empty; {empty_fix}.")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise DataError(
            f'{where}: {key!r} is {describe_value(value)}, not text; write it as a JSON string ("{value}").'
        )
    joined = "join it into one string" if isinstance(value, list) else "write it as a JSON string"
    raise DataError(f"{where}: {key!r} is {describe_value(value)}, not text; {joined}.")


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
