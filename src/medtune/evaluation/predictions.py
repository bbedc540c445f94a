"""Published systems' answers in IgakuQA's baseline format: `{"problem_id": "112A1", "prediction": "a,b"}`."""

from __future__ import annotations

from pathlib import Path

from medtune.data.file_checks import check_data_file
from medtune.data.json_files import describe_value, iter_json_objects
from medtune.errors import DataError
from medtune.exam.scoring import score_letters
from medtune.vocabulary import ExamQuestion, ScoredAnswer, Status


def prediction_files(path: Path, system: str | None) -> list[Path]:
    """A file, or the files of one system in a folder (`112-A_gpt4.jsonl` ... for system `gpt4`)."""
    if path.exists() and not path.is_dir():  # a FIFO or a device is refused before anything opens it
        return [check_data_file(path, "predictions")]
    if not path.is_dir():
        raise DataError(f"predictions={path} does not exist; point it at a predictions file or folder.")
    if not system:
        raise DataError(f"predictions={path} is a folder: name the system whose files to read, e.g. system_name=gpt4.")
    files = sorted(p for p in path.rglob(f"*_{system}.jsonl"))
    if not files:
        found = sorted({p.stem.split("_", 1)[-1] for p in path.rglob("*.jsonl") if "_" in p.stem})
        raise DataError(
            f"predictions={path} has no *_{system}.jsonl files; systems found: {', '.join(found) or 'none'}."
        )
    return files


def read_predictions(path: Path, system: str | None = None) -> dict[str, str]:
    """problem_id -> prediction of the file(s); "" is a prediction of nothing (scored invalid)."""
    predictions: dict[str, str] = {}
    for file in prediction_files(Path(path), system):
        for where, item in iter_json_objects(file):
            if "problem_id" not in item or "prediction" not in item:
                raise DataError(
                    f"{where}: a prediction needs 'problem_id' and 'prediction' (e.g. \"a,b\"); this "
                    f"line has {sorted(item)}. Fix or delete it."
                )
            predictions[_problem_id(item["problem_id"], where)] = _prediction(item["prediction"], where)
    return predictions


def _problem_id(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        shown = "empty" if isinstance(value, str) else describe_value(value)
        raise DataError(f"{where}: 'problem_id' is {shown}; give the id of the exam question, e.g. \"112A1\".")
    return str(value).strip()


def _prediction(value: object, where: str) -> str:
    """The prediction as written: a string ("" where the system gave none), or a number for a numeric question."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    fix = (
        'write the letters as one string, e.g. "a,b"'
        if isinstance(value, list)
        else 'write the answer as a string, e.g. "a,b" ("" where the system gave none)'
    )
    raise DataError(f"{where}: 'prediction' is {describe_value(value)}, not text; {fix}.")


def score_prediction(question: ExamQuestion, prediction: str, strict: bool) -> ScoredAnswer:
    """Score one `"a,b"` prediction.

    strict: IgakuQA's own rule, so published accuracies reproduce exactly: the prediction is split
    on "," and compared verbatim with the key (so "a, b" with a space does not match "a,b").
    Otherwise letters are trimmed and normalised (ｅ, E, ⑤ -> e) first.
    """
    if not strict:
        return score_letters(question, [p for p in prediction.split(",") if p.strip()])
    tokens = tuple(prediction.split(",")) if prediction else ()
    if question.voided or any(sorted(tokens) == sorted(gold) for gold in question.gold_sets()):
        return ScoredAnswer(Status.correct, tokens, prediction, exact_match=True, gestalt_score=1.0)
    given = [t for t in tokens if t]
    if len(given) != question.num_answers:
        reason = f"gave {len(given)} answer(s), the question asks for {question.num_answers}"
        return ScoredAnswer(Status.invalid, tokens, prediction, reason=reason)
    off = [t for t in given if t != t.strip()]
    reason = f"{off[0]!r} is not a bare letter (predictions_format=lenient trims it)" if off else "a different answer"
    return ScoredAnswer(Status.wrong, tokens, prediction, reason=reason)
