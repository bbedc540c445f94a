"""Judge questions and answers files: read, check and select.

Questions are JSONL `{"id", "category", "question", "reference"?}`; Vicuna's question file
(`{"question_id", "category", "text"}`, the set the paper translated) reads as is. Answers are
JSONL `{"id", "answer"}`, or Vicuna's `{"question_id", "text"}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from medtune.data.json_files import describe_value, iter_json_objects, text_field
from medtune.errors import DataError

# The paper's nine categories, in the order of its Tables III and IV.
PAPER_CATEGORIES = (
    "Generic",
    "Knowledge",
    "Roleplay",
    "Common-Sense",
    "Fermi",
    "Counterfactual",
    "Coding",
    "Math",
    "Writing",
)
ID_FIELDS = ("id", "question_id")
QUESTION_FIELDS = ("question", "text")
ANSWER_FIELDS = ("answer", "text", "response", "output")


@dataclass(frozen=True)
class JudgeQuestion:
    qid: str
    category: str
    question: str
    reference: str | None = None


def bundled_questions() -> Path:
    return Path(str(resources.files("medtune") / "resources" / "judge" / "questions_vi.jsonl"))


def present_field(item: dict, names: Sequence[str]) -> str | None:
    """The first of `names` that `item` has, whatever its value (a null one is refused, not skipped)."""
    return next((name for name in names if name in item), None)


def identifier(value: Any, key: str, where: str) -> str:
    """A question id: text or a whole number; null, empty and other values raise `DataError`."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        shown = "empty" if isinstance(value, str) else describe_value(value)
        raise DataError(f'{where}: {key!r} is {shown}; give every question an id, e.g. "knowledge_01".')
    return str(value).strip()


def read_questions(path: str | None) -> list[JudgeQuestion]:
    """The questions of a judge questions file (None: the bundled Vietnamese set), each field checked."""
    source = Path(path) if path else bundled_questions()
    questions, seen = [], set()
    for where, item in iter_json_objects(source):
        id_key, text_key = present_field(item, ID_FIELDS), present_field(item, QUESTION_FIELDS)
        if id_key is None or text_key is None or "category" not in item:
            raise DataError(
                f"{where}: a judge question needs 'id', 'category' and 'question' (Vicuna's "
                f"'question_id' and 'text' also work); this line has {sorted(item)}. Fix or delete it."
            )
        qid = identifier(item[id_key], id_key, where)
        text = text_field(item, text_key, where, "write the question, or delete the line")
        category = text_field(item, "category", where, 'give the question\'s category, e.g. "Knowledge"').strip()
        if qid in seen:
            raise DataError(f"{where}: question id {qid} appears twice; give every question its own id.")
        seen.add(qid)
        questions.append(JudgeQuestion(qid, category, text, _reference(item, where)))
    if not questions:
        raise DataError(f"{source} holds no question; point judge.questions at a JSONL file of questions.")
    return questions


def _reference(item: dict, where: str) -> str | None:
    """The optional reference answer: absent, null or "" is none; anything but text is refused."""
    if item.get("reference") in (None, ""):
        return None
    return text_field(item, "reference", where, "write the reference answer, or leave the field out")


def select_questions(
    questions: list[JudgeQuestion], categories: Sequence[str], max_questions: int | None
) -> list[JudgeQuestion]:
    if categories:
        wanted = {c.lower() for c in categories}
        known = sorted({q.category for q in questions})
        unknown = sorted(c for c in categories if c.lower() not in {k.lower() for k in known})
        if unknown:
            raise DataError(
                f"judge.categories={list(categories)}: {unknown} not in the question file, whose "
                f"categories are {known}; pick from those."
            )
        questions = [q for q in questions if q.category.lower() in wanted]
    return questions[:max_questions] if max_questions else questions


def category_order(questions: Sequence[JudgeQuestion]) -> list[str]:
    """The paper's categories first, in its order, then any others as they first appear."""
    present = list(dict.fromkeys(q.category for q in questions))
    paper = [c for c in PAPER_CATEGORIES if c in present]
    return paper + [c for c in present if c not in paper]


def read_answers(path: Path) -> dict[str, str]:
    """id -> answer text of an answers file; later lines win (a resumed file may repeat an id).

    An answer of "" is kept: a system that answered nothing is judged so (medtune's own answers
    files hold such answers). A null or non-text answer is refused: it would be judged as "None".
    """
    answers = {}
    for where, item in iter_json_objects(Path(path)):
        id_key, answer_key = present_field(item, ID_FIELDS), present_field(item, ANSWER_FIELDS)
        if id_key is None or answer_key is None:
            raise DataError(
                f"{where}: an answer needs 'id' (or 'question_id') and 'answer' (or 'text'); "
                f"this line has {sorted(item)}. Fix or delete it."
            )
        fix = 'write the system\'s answer as a string ("" where it gave none), or delete the line'
        answers[identifier(item[id_key], id_key, where)] = text_field(item, answer_key, where, fix, allow_empty=True)
    return answers
