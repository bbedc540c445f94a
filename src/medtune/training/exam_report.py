"""What training's exam check reports: per exam (the target under exam/, each retention exam under
retention/<name>/) the accuracy before and after with 95% Wilson intervals under both readings, the
paired difference after - before with its paired-bootstrap interval, McNemar's p and the words
"within noise" when the interval covers 0, the loglik calibration, and the accuracy on the clean and
the contaminated questions. `exam_summary` gives the flat keys of train_summary.json and W&B;
`write_exam_check` the per-question file exam_check.jsonl and the whole record, exam_check.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medtune.exam.contamination_report import accuracy_by_contamination
from medtune.reporting.intervals import PairedDifference, correct_map, paired_difference
from medtune.training.exam_check import CheckedExam, Measurement

READINGS = (("", False), ("strict_", True))  # key prefix, strict reading


def verdict(difference: PairedDifference) -> str:
    """`within noise` when the interval covers 0, else `gain beyond noise` / `loss beyond noise`."""
    if difference.within_noise:
        return "within noise"
    return "gain beyond noise" if difference.difference > 0 else "loss beyond noise"


def before_after(exam: CheckedExam, strict: bool = False) -> PairedDifference | None:
    """After - before on the same questions (None without both askings)."""
    if exam.before is None or exam.after is None:
        return None
    statuses = [m.statuses(exam.questions, strict) for m in (exam.before, exam.after)]
    return paired_difference(correct_map(statuses[0]), correct_map(statuses[1]))


def _accuracy_keys(p: str, when: str, measurement: Measurement) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for reading, strict in READINGS:
        tally = measurement.metrics.get("strict") if strict else measurement.metrics
        interval = (tally or {}).get("accuracy_interval")
        if interval:
            keys[f"{p}{reading}accuracy_{when}_low"] = interval["low"]
            keys[f"{p}{reading}accuracy_{when}_high"] = interval["high"]
            keys[f"{p}{reading}accuracy_{when}_se"] = interval["standard_error"]
    found = measurement.calibration()
    if found is not None:
        keys[f"{p}ece_{when}"] = found.ece
        keys[f"{p}brier_{when}"] = found.brier
    return keys


def _difference_keys(p: str, exam: CheckedExam) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for reading, strict in READINGS:
        difference = before_after(exam, strict)
        if difference is None:
            continue
        keys.update(
            {
                f"{p}{reading}difference": difference.difference,
                f"{p}{reading}difference_low": difference.low,
                f"{p}{reading}difference_high": difference.high,
                f"{p}{reading}difference_se": difference.standard_error,
                f"{p}{reading}mcnemar_p": difference.p_value,
                f"{p}{reading}difference_verdict": verdict(difference),
            }
        )
    return keys


def _contamination_keys(p: str, exam: CheckedExam) -> dict[str, Any]:
    report = exam.contamination
    if report is None:
        return {}
    summary = report.summary()
    keys: dict[str, Any] = {
        f"{p}contaminated": summary["contaminated"],
        f"{p}contaminated_fraction": summary["contaminated_fraction"],
        f"{p}contamination_records": summary["training_records"],
    }
    warning = report.warning(exam.name, "exam_check.jsonl")
    if warning:
        keys[f"{p}contamination_warning"] = warning
    for when, measurement in (("before", exam.before), ("after", exam.after)):
        if measurement is None:
            continue
        split = accuracy_by_contamination(report, measurement.statuses(exam.questions))
        for subset in ("clean", "contaminated"):
            keys[f"{p}accuracy_{when}_{subset}"] = split[subset]["accuracy"]
            interval = split[subset]["accuracy_interval"]
            if interval:
                keys[f"{p}accuracy_{when}_{subset}_low"] = interval["low"]
                keys[f"{p}accuracy_{when}_{subset}_high"] = interval["high"]
            keys[f"{p}n_{subset}"] = split[subset]["n"]
    return keys


def exam_keys(exam: CheckedExam) -> dict[str, Any]:
    """Every summary key of one exam of the check (prefix exam/ or retention/<name>/)."""
    p, before, after = exam.prefix, exam.before, exam.after
    if after is None:
        return {}
    keys: dict[str, Any] = {f"{p}name": exam.name, f"{p}n": after.metrics["n"]}
    for when, measurement in (("before", before), ("after", after)):
        if measurement is None:
            continue
        row = measurement.row()
        for key in ("accuracy", "invalid", "strict_accuracy", "strict_invalid", "answer_loss"):
            keys[f"{p}{key}_{when}"] = row.get(key)
        keys.update(_accuracy_keys(p, when, measurement))
    keys.update(_difference_keys(p, exam))
    keys.update(_contamination_keys(p, exam))
    return keys


def exam_summary(exams: list[CheckedExam], best: dict[str, Any] | None) -> dict[str, Any]:
    """The check's keys for train_summary.json and the W&B summary (nothing unless asked before and after)."""
    if not exams or exams[0].before is None or exams[0].after is None:
        return {}
    summary: dict[str, Any] = {}
    for exam in exams:
        summary.update(exam_keys(exam))
    if best is not None:
        summary.update({"exam/best_accuracy": best["accuracy"], "exam/best_step": best["step"]})
    return summary


def question_rows(exam: CheckedExam) -> list[dict[str, Any]]:
    """One row per question: its answers and statuses before and after, and its contamination verdict."""
    verdicts = exam.contamination.by_id() if exam.contamination is not None else {}
    rows = []
    for i, question in enumerate(exam.questions):
        row: dict[str, Any] = {"exam": exam.name, "role": exam.role, "id": question.qid}
        for when, measurement in (("before", exam.before), ("after", exam.after)):
            if measurement is None:
                continue
            answer = measurement.answers[i]
            row[f"parsed_{when}"] = list(answer.parsed)
            row[f"status_{when}"] = answer.status.value
            row[f"strict_status_{when}"] = answer.strict_status.value
            if measurement.confidences is not None:
                row[f"confidence_{when}"] = round(measurement.confidences[i], 4)
        if question.qid in verdicts:
            row.update(verdicts[question.qid].as_dict())
        rows.append(row)
    return rows


def exam_record(exam: CheckedExam) -> dict[str, Any]:
    """The whole check of one exam for exam_check.json: totals per asking, differences in words, audit."""
    record: dict[str, Any] = {
        "exam": exam.name,
        "role": exam.role,
        "questions": len(exam.questions),
        "askings": [{"step": m.step, **m.metrics} for m in exam.measurements],
    }
    for reading, strict in READINGS:
        difference = before_after(exam, strict)
        if difference is not None:
            record[f"{reading}difference"] = {
                **difference.to_dict(),
                "verdict": verdict(difference),
                "words": difference.words("before", "after"),
            }
    if exam.contamination is not None:
        record["contamination"] = exam.contamination.summary()
        record["contamination_warning"] = exam.contamination.warning(exam.name, "exam_check.jsonl")
        if exam.after is not None:
            record["accuracy_by_contamination"] = accuracy_by_contamination(
                exam.contamination, exam.after.statuses(exam.questions)
            )
    return record


def write_exam_check(run_dir: Path, exams: list[CheckedExam]) -> None:
    """exam_check.jsonl (a row per question of every exam) and exam_check.json (one record per exam)."""
    with open(run_dir / "exam_check.jsonl", "w", encoding="utf-8") as out:
        for exam in exams:
            for row in question_rows(exam):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    records = [exam_record(exam) for exam in exams]
    (run_dir / "exam_check.json").write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
