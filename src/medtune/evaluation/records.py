"""One line of predictions.jsonl per question: what the model saw, wrote, and how it was scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtune.jsonl_store import read_jsonl
from medtune.vocabulary import ExamQuestion, ScoredAnswer, Status


def prediction_row(question: ExamQuestion, prompt: str, output: str, scored: ScoredAnswer) -> dict[str, Any]:
    """The predictions.jsonl row: the paper's reading at the top level, the strict one under "strict"."""
    return {
        "id": question.qid,
        "status": scored.status.value,
        "parsed": list(scored.parsed),
        "gold": list(question.answers),
        "accepted": [list(s) for s in question.accepted],
        "voided": question.voided,
        "output": output,
        "answer_text": scored.answer_text,
        "reason": scored.reason,
        "strict": {
            "status": scored.strict_status.value,
            "parsed": list(scored.strict_parsed),
            "reason": scored.strict_reason,
        },
        "similarities": scored.similarities,
        "exact_match": scored.exact_match,
        "gestalt_score": scored.gestalt_score,
        "points": question.points,
        "block": question.block,
        "category": question.category,
        "prompt": prompt,
    }


def scored_from_row(row: dict[str, Any]) -> ScoredAnswer:
    """The `ScoredAnswer` a row was written from; a row without "strict" reads strict = the paper's."""
    strict = row.get("strict") or {}
    return ScoredAnswer(
        status=Status(row["status"]),
        parsed=tuple(row["parsed"]),
        answer_text=row.get("answer_text", ""),
        similarities=row.get("similarities", {}),
        exact_match=row.get("exact_match", False),
        gestalt_score=row.get("gestalt_score", 0.0),
        reason=row.get("reason", ""),
        strict_status=Status(strict["status"]) if "status" in strict else None,
        strict_parsed=tuple(strict.get("parsed", ())),
        strict_reason=strict.get("reason", ""),
    )


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a predictions file. Only its last line may be cut short by a crash (no newline after it,
    or not JSON): that line is skipped. Any other line that is not a JSON object raises
    `medtune.jsonl_store.JsonlLineError` (a DataError) naming file:line."""
    return read_jsonl(Path(path)).rows
