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

from medtune.data.readers import iter_json_objects
from medtune.errors import DataError

# The paper's nine categories, in the order of its Tables III and IV.
PAPER_CATEGORIES = ("Generic", "Knowledge", "Roleplay", "Common-Sense", "Fermi", "Counterfactual", "Coding",
                    "Math", "Writing")
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


def first_field(item: dict, names: Sequence[str]):
    return next((item[n] for n in names if item.get(n) not in (None, "")), None)


def read_questions(path: str | None) -> list[JudgeQuestion]:
    source = Path(path) if path else bundled_questions()
    questions, seen = [], set()
    for where, item in iter_json_objects(source):
        qid, text = first_field(item, ID_FIELDS), first_field(item, QUESTION_FIELDS)
        if qid is None or text is None or not str(item.get("category") or "").strip():
            raise DataError(f"{where}: a judge question needs 'id', 'category' and 'question' (Vicuna's "
                            f"'question_id' and 'text' also work); this line has {sorted(item)}. Fix or delete it.")
        if str(qid) in seen:
            raise DataError(f"{where}: question id {qid} appears twice; give every question its own id.")
        seen.add(str(qid))
        questions.append(JudgeQuestion(str(qid), str(item["category"]).strip(), str(text), item.get("reference")))
    if not questions:
        raise DataError(f"{source} holds no question; point judge.questions at a JSONL file of questions.")
    return questions


def select_questions(questions: list[JudgeQuestion], categories: Sequence[str],
                     max_questions: int | None) -> list[JudgeQuestion]:
    if categories:
        wanted = {c.lower() for c in categories}
        known = sorted({q.category for q in questions})
        unknown = sorted(c for c in categories if c.lower() not in {k.lower() for k in known})
        if unknown:
            raise DataError(f"judge.categories={list(categories)}: {unknown} not in the question file, whose "
                            f"categories are {known}; pick from those.")
        questions = [q for q in questions if q.category.lower() in wanted]
    return questions[:max_questions] if max_questions else questions


def category_order(questions: Sequence[JudgeQuestion]) -> list[str]:
    """The paper's categories first, in its order, then any others as they first appear."""
    present = list(dict.fromkeys(q.category for q in questions))
    paper = [c for c in PAPER_CATEGORIES if c in present]
    return paper + [c for c in present if c not in paper]


def read_answers(path: Path) -> dict[str, str]:
    """id -> answer text of an answers file; later lines win (a resumed file may repeat an id)."""
    answers = {}
    for where, item in iter_json_objects(Path(path)):
        qid, answer = first_field(item, ID_FIELDS), first_field(item, ANSWER_FIELDS)
        if qid is None:
            raise DataError(f"{where}: an answer needs 'id' (or 'question_id') and 'answer' (or 'text'); "
                            f"this line has {sorted(item)}. Fix or delete it.")
        answers[str(qid)] = "" if answer is None else str(answer)
    return answers
