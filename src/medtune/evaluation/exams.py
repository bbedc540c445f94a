"""Read medical multiple-choice exams (IgakuQA, JJSIMQA, MedQA or any JSONL) into `ExamQuestion`s.

IgakuQA is a folder per year of `<exam>-<block>.jsonl` files with `_metadata` (category, kinki) and
`_translate` (English) files beside them; other exams are a file or folder whose field names a
`FieldMapping` gives. Answers become lowercase letters (numbers for numeric questions), answer-key
corrections (`AnswerOverrides`) apply by problem_id, and an `ExamFilter` picks the questions to score.
Every bad input raises `DataError` naming file:line, the problem and the fix.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from medtune.data.readers import bundled_sample_dir, iter_json_objects
from medtune.errors import DataError
from medtune.evaluation.types import LETTERS, ExamQuestion

ESSENTIAL_BLOCKS = frozenset({"B", "E"})  # IgakuQA's "hisshu" blocks
SIDE_SUFFIXES = ("_metadata", "_translate")
EXAM_FILE = re.compile(r"^(?P<exam>\d+)-(?P<block>[A-Za-z])$")
SAMPLE_EXAM_FILES = ("exam_ja.jsonl", "exam_en.jsonl")
OVERRIDE_KEYS = frozenset({"problem_id", "accept", "void", "note"})
AnswerSets = tuple[tuple[str, ...], ...]


@dataclass
class ExamFilter:
    """Which questions to score; the default is the IgakuQA paper's subset (277 questions of 2018)."""

    text_only: bool = True  # drop questions that come with an image
    min_answers: int = 1
    max_answers: int = 2
    require_choices: bool = True  # drop numeric-answer questions
    blocks: list[str] = field(default_factory=list)  # IgakuQA block letters; empty = all
    max_questions: int | None = None  # the first N that pass

    @classmethod
    def everything(cls) -> ExamFilter:
        return cls(text_only=False, min_answers=0, max_answers=99, require_choices=False)

    def keeps(self, q: ExamQuestion) -> bool:
        if (self.text_only and not q.text_only) or (self.require_choices and q.is_numeric):
            return False
        in_blocks = not self.blocks or q.block.upper() in {b.upper() for b in self.blocks}
        return in_blocks and self.min_answers <= q.num_answers <= self.max_answers

    def apply(self, questions: Sequence[ExamQuestion]) -> list[ExamQuestion]:
        kept = [q for q in questions if self.keeps(q)]
        return kept if self.max_questions is None else kept[: self.max_questions]


@dataclass
class FieldMapping:
    """The record field that holds each part of a question; the last three may be absent from the data."""

    id: str = "problem_id"  # absent: `<file stem>:<line>`
    question: str = "problem_text"
    choices: str = "choices"
    answer: str = "answer"
    points: str = "points"  # absent: 1
    text_only: str = "text_only"  # absent: True
    explanation: str = "explanation"  # absent: ""


@dataclass
class AnswerOverrides:
    """Answer-key corrections by problem_id: replacement answer sets, or void (every answer is correct)."""

    accept: dict[str, AnswerSets] = field(default_factory=dict)
    void: set[str] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # problem_id -> file:line of the override

    def apply(self, q: ExamQuestion) -> ExamQuestion:
        if q.qid in self.void:
            return replace(q, voided=True)
        if q.qid not in self.accept:
            return q
        where = f"{self.sources[q.qid]} (override of {q.qid}, from {q.source})"
        sets = tuple(_check_letters(s, len(q.choices), where) if q.choices else s for s in self.accept[q.qid])
        return replace(q, answers=sets[0], accepted=sets[1:])


def bundled_overrides_path() -> Path:
    return Path(str(resources.files("medtune") / "resources" / "answer_overrides.jsonl"))


def load_overrides(path: Path | None = None) -> AnswerOverrides:
    """The overrides in `path` (JSONL); `None` loads the bundled file of known corrections."""
    path = bundled_overrides_path() if path is None else Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such overrides file; fix the path, or pass None for the bundled one.")
    overrides = AnswerOverrides()
    for where, item in iter_json_objects(path):
        qid = _override_id(item, where, overrides)
        if item.get("void") is True:
            overrides.void.add(qid)
        else:
            overrides.accept[qid] = _override_sets(item["accept"], where)
        overrides.notes[qid], overrides.sources[qid] = str(item.get("note", "")), where
    return overrides


def _override_id(item: dict[str, Any], where: str, overrides: AnswerOverrides) -> str:
    """The problem_id of a well-formed override line, not yet overridden."""
    unknown = sorted(set(item) - OVERRIDE_KEYS)
    if unknown:
        raise DataError(f"{where}: unknown field {unknown[0]!r}; an override has {sorted(OVERRIDE_KEYS)}.")
    if "problem_id" not in item:
        raise DataError(f"{where}: missing 'problem_id'; name the question the override corrects.")
    if ("accept" in item) == ("void" in item) or item.get("void", True) is not True:
        raise DataError(f'{where}: give either "accept": [["a"], ["d"]] or "void": true, not both or neither.')
    qid = str(item["problem_id"])
    if qid in overrides.sources:
        raise DataError(f"{where}: {qid} is already overridden at {overrides.sources[qid]}; keep one line per id.")
    return qid


def _override_sets(value: Any, where: str) -> AnswerSets:
    if not isinstance(value, list) or not value or not all(isinstance(s, list) and s for s in value):
        raise DataError(f"{where}: 'accept' must be a non-empty list of non-empty answer sets, e.g. [[\"a\"], [\"d\"]].")
    return tuple(tuple(sorted({unicodedata.normalize("NFKC", str(x)).strip().lower() for x in s})) for s in value)


def read_exam_jsonl(
    path: Path, fields: FieldMapping | None = None, filt: ExamFilter | None = None,
    overrides: AnswerOverrides | None = None,
) -> list[ExamQuestion]:
    """Every question of a JSONL/JSON file or folder; `overrides=None` applies the bundled corrections."""
    fields, filt = fields or FieldMapping(), filt or ExamFilter()
    overrides = load_overrides(None) if overrides is None else overrides
    questions = [to_question(item, where, fields) for file in _exam_files(Path(path)) for where, item in _items(file)]
    _check_unique(questions)
    return filt.apply([overrides.apply(q) for q in questions])


def _exam_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder; fix the exam path.")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json") and not p.stem.endswith(SIDE_SUFFIXES))
    if not files:
        raise DataError(f"{path}: the folder holds no .jsonl or .json exam files.")
    return files


def _items(path: Path) -> list[tuple[str, dict[str, Any]]]:
    items = list(iter_json_objects(path))
    if not items:
        raise DataError(f"{path}: the file is empty; an exam file needs at least one question: add questions, "
                        "or point exam.path at the right file.")
    return items


def _check_unique(questions: Sequence[ExamQuestion]) -> None:
    seen: dict[str, str] = {}
    for q in questions:
        if q.qid in seen:
            raise DataError(f"{q.source}: problem_id {q.qid!r} is already used at {seen[q.qid]}; ids must be unique: "
                            "give each question its own id.")
        seen[q.qid] = q.source


def to_question(item: dict[str, Any], where: str, fields: FieldMapping) -> ExamQuestion:
    """One record as an `ExamQuestion`, its answers normalised and checked against its choices."""
    for key in ("question", "choices", "answer"):
        if getattr(fields, key) not in item:
            raise DataError(f"{where}: missing field {getattr(fields, key)!r} (the {key}); the record has "
                            f"{sorted(item)}; set FieldMapping.{key} to the field that holds it.")
    question = str(item[fields.question]).strip()
    if not question:
        raise DataError(f"{where}: the question text ({fields.question!r}) is empty.")
    choices = _choices(item[fields.choices], where, fields.choices)
    sets = _answer_sets(item[fields.answer], len(choices), where, fields.answer)
    text_only = item.get(fields.text_only, True)
    if not isinstance(text_only, bool):
        raise DataError(f"{where}: {fields.text_only!r} is {text_only!r}, expected true or false.")
    return ExamQuestion(
        qid=str(item[fields.id]) if fields.id in item else _line_id(where), question=question, choices=choices,
        answers=sets[0], accepted=sets[1:], points=_points(item.get(fields.points, 1), where, fields.points),
        text_only=text_only, explanation=str(item.get(fields.explanation) or ""), source=where,
    )


def _line_id(where: str) -> str:
    file, line = where.rsplit(":", 1)
    return f"{Path(file).stem}:{line}"


def _choices(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or any(isinstance(c, (list, dict)) for c in value):
        raise DataError(f"{where}: {key!r} is a {type(value).__name__}, expected a list of strings ([] for numeric).")
    blank = [LETTERS[i] for i, c in enumerate(value) if c is None or not str(c).strip()]
    if blank:
        raise DataError(f"{where}: choice {blank[0]} ({key!r}) is empty ({len(blank)} of {len(value)} blank); give "
                        "every choice its text, or [] for a question with a numeric answer.")
    return tuple(str(c) for c in value)


def _answer_sets(value: Any, n_choices: int, where: str, key: str) -> AnswerSets:
    """The printed key as answer sets: the first is the key, the rest alternatives written "a or d"."""
    raw = [unicodedata.normalize("NFKC", str(v)).strip() for v in (value if isinstance(value, list) else [value])]
    raw = [v for v in raw if v and v != ","]
    if not raw:
        raise DataError(f"{where}: the answer ({key!r}) is empty; give the correct letter(s), e.g. [\"c\"].")
    if n_choices == 0:
        return (_numbers(raw, where, key),)
    alternatives = re.split(r"\s+or\s+", ",".join(raw), flags=re.IGNORECASE)
    return tuple(_check_letters(_letters(alt), n_choices, f"{where}: answer {key!r}") for alt in alternatives)


def _letters(text: str) -> tuple[str, ...]:
    """ "a,c" / "A C" / "ac" -> ("a", "c"); anything but ASCII letters stays a token (and fails the check)."""
    tokens = [t.lower() for t in re.split(r"[,、/\s]+", text) if t]
    return tuple(ch for t in tokens for ch in (t if t.isalpha() and t.isascii() else [t]))


def _check_letters(letters: Sequence[str], n_choices: int, where: str) -> tuple[str, ...]:
    valid = LETTERS[:n_choices]
    for letter in letters:
        if letter not in valid:
            raise DataError(f"{where}: {letter!r} is not one of the {n_choices} choice letters "
                            f"({valid[0]}–{valid[-1]}); fix the answer key.")
    if not letters:
        raise DataError(f"{where}: the answer is empty; give the correct letter(s), e.g. [\"c\"].")
    return tuple(sorted(set(letters)))


def _numbers(values: list[str], where: str, key: str) -> tuple[str, ...]:
    for value in values:
        if not _is_number(value):
            raise DataError(f"{where}: answer {value!r} ({key!r}) is not a number, and the question has no "
                            "choices; give the choices, or a numeric answer such as [\"12\"].")
    return tuple(values)


def _points(value: Any, where: str, key: str) -> int:
    if not _is_number(value) or not float(value).is_integer():
        raise DataError(f"{where}: points ({key!r}) is {value!r}, expected a whole number such as 1 or 3.")
    return int(float(value))


def _is_number(value: Any) -> bool:
    try:
        return float(value) == float(value)  # not NaN
    except (TypeError, ValueError):
        return False


def read_igakuqa(
    root: Path, years: Sequence[int | str], filt: ExamFilter | None = None, english: bool = False,
    overrides: AnswerOverrides | None = None,
) -> list[ExamQuestion]:
    """IgakuQA questions of `years` (folders under `root`), ordered by year, block and line.

    `english=True` takes question and choices from the `_translate` files. `overrides=None` applies
    the bundled corrections; pass `AnswerOverrides()` to score by the printed keys.
    """
    filt = filt or ExamFilter()
    overrides = load_overrides(None) if overrides is None else overrides
    questions: list[ExamQuestion] = []
    for year in sorted({str(y) for y in years}):
        for path in _block_files(Path(root), year, {b.upper() for b in filt.blocks}):
            questions.extend(_read_block(path, year, english))
    _check_unique(questions)
    return filt.apply([overrides.apply(q) for q in questions])


def _block_files(root: Path, year: str, blocks: set[str]) -> list[Path]:
    """The year's exam files in block order; only `blocks` when given, so only their side files are read."""
    folder = root / year
    if not folder.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit()) if root.is_dir() else []
        raise DataError(f"{folder}: no such year folder; years found under {root}: {', '.join(found) or 'none'}. "
                        "Fix the years or the IgakuQA root.")
    files = sorted(p for p in folder.glob("*.jsonl") if not p.stem.endswith(SIDE_SUFFIXES))
    for p in files:
        if not EXAM_FILE.match(p.stem):
            raise DataError(f"{p}: not named <exam>-<block>.jsonl (e.g. 112-A.jsonl); rename or move it.")
    if not files:
        raise DataError(f"{folder}: no <exam>-<block>.jsonl files in the year folder.")
    return [p for p in sorted(files, key=lambda p: (_block_of(p), p.name)) if not blocks or _block_of(p) in blocks]


def _block_of(path: Path) -> str:
    return EXAM_FILE.match(path.stem)["block"].upper()


def _read_block(path: Path, year: str, english: bool) -> list[ExamQuestion]:
    block = _block_of(path)
    metadata = _by_id(path.with_name(f"{path.stem}_metadata.jsonl"), required=False)
    translations = _by_id(path.with_name(f"{path.stem}_translate.jsonl"), required=True) if english else {}
    questions = []
    for where, item in _items(path):
        if english:
            where, item = _english(item, where, translations)
        q = replace(to_question(item, where, FieldMapping()), year=year, block=block, essential=block in ESSENTIAL_BLOCKS)
        meta_where, meta = metadata.get(q.qid, ("", {}))
        kinki = _kinki(meta.get("kinki", []), len(q.choices), meta_where)
        questions.append(replace(q, category=str(meta.get("category", "")), kinki=kinki))
    return questions


def _by_id(path: Path, required: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    if not path.is_file():
        if required:
            raise DataError(f"{path}: no such translation file; add it or read the Japanese version (english=False).")
        return {}
    records = {}
    for where, item in iter_json_objects(path):
        if "problem_id" not in item:
            raise DataError(f"{where}: missing 'problem_id'; a side file is joined to the questions by it.")
        records[str(item["problem_id"])] = (where, item)
    return records


def _english(item: dict[str, Any], where: str, translations: dict) -> tuple[str, dict[str, Any]]:
    """The Japanese record with the translation's text; its answer and points where the translation has them."""
    qid = str(item.get("problem_id", ""))
    if qid not in translations:
        raise DataError(f"{where}: problem {qid!r} has no record in the _translate file; add one or use english=False.")
    en_where, en = translations[qid]
    for key in ("problem_text_en", "choices_en"):
        if key not in en:
            raise DataError(f"{en_where}: missing field {key!r}; a translation needs problem_text_en and choices_en.")
    if len(en["choices_en"]) != len(item.get("choices", [])):
        raise DataError(f"{en_where}: {len(en['choices_en'])} English choices for the "
                        f"{len(item.get('choices', []))} of {where}; fix the translation.")
    merged = {**item, "problem_text": en["problem_text_en"], "choices": en["choices_en"]}
    return en_where, merged | {k: en[k] for k in ("answer", "points") if k in en}


def _kinki(values: Any, n_choices: int, where: str) -> tuple[str, ...]:
    """Contraindicated letters, written ["c", "e"], ["ce"] or full-width ["ｂ"]."""
    text = unicodedata.normalize("NFKC", "".join(str(v) for v in (values if isinstance(values, list) else [values])))
    letters = [ch for ch in text.lower() if ch.isalnum()]
    return _check_letters(letters, n_choices, f"{where}: kinki") if letters else ()


def shuffle_choices(questions: Sequence[ExamQuestion], seed: int) -> list[ExamQuestion]:
    """Each question's choices in a seeded order of its own (by problem_id); answers, accepted and kinki follow.

    Explanations that name letters are left as written; numeric questions are unchanged.
    """
    return [q if q.is_numeric else _shuffled(q, random.Random(f"{seed}:{q.qid}")) for q in questions]


def _shuffled(q: ExamQuestion, rng: random.Random) -> ExamQuestion:
    order = list(range(len(q.choices)))
    rng.shuffle(order)  # new position i holds old choice order[i]
    new_letter = {LETTERS[old]: LETTERS[new] for new, old in enumerate(order)}

    def remap(letters: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(new_letter[x] for x in letters))

    return replace(q, choices=tuple(q.choices[old] for old in order), answers=remap(q.answers),
                   accepted=tuple(remap(s) for s in q.accepted), kinki=remap(q.kinki))


def read_sample_exam() -> list[ExamQuestion]:
    """The bundled sample exam (Japanese, then English): every question, explanations filled."""
    everything, no_overrides = ExamFilter.everything(), AnswerOverrides()
    return [q for name in SAMPLE_EXAM_FILES
            for q in read_exam_jsonl(bundled_sample_dir() / name, FieldMapping(), everything, no_overrides)]
