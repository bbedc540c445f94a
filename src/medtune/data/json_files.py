"""The one JSON reader of medtune's inputs (`iter_json_objects`), and the checks of the fields it yields.

`iter_json_objects` reads training data, exams, predictions, judge questions and answers and
documents alike. It reads UTF-8 with or without a byte-order mark, refuses other encodings naming
the one the file looks like, refuses a key given twice in one record (JSON would keep the last value
silently), and tells a JSON array saved as `.jsonl` from a broken file. Text fields are checked by
`text_field`: null, empty and non-string values are refused, never turned into the text "None".
Before any file is read, `medtune.data.file_checks` refuses a path that is no regular file (a
device, a FIFO, a folder) or is over the size limit, naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from medtune.data.file_checks import check_data_file
from medtune.errors import DataError

UTF8_BOM = b"\xef\xbb\xbf"
# Byte-order marks of the encodings medtune does not read; UTF-32 first (its LE mark begins with UTF-16's).
FOREIGN_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32 LE", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32 BE", "UTF-32"),
    (b"\xff\xfe", "UTF-16 LE", "UTF-16"),
    (b"\xfe\xff", "UTF-16 BE", "UTF-16"),
)
EIGHT_BIT = "Latin-1 / Windows-1252 or another 8-bit encoding"


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
