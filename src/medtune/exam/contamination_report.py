"""The contamination audit's results: a verdict per question, the summary, and accuracy split by verdict.

`QuestionContamination.as_dict()` is what a predictions.jsonl row takes (flag, evidence, closest training
record); `ContaminationReport.summary()` what metrics.json takes (counts per flag, the contaminated
fraction, whether it is above the warning threshold); `ContaminationReport.warning()` the loud message;
`accuracy_by_contamination` the accuracy on the clean and on the contaminated questions beside the whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from medtune.reporting.intervals import wilson


class Flag(str, Enum):
    clean = "clean"
    exact = "exact"  # its normalised stem and every choice occur in one training text
    ngram = "ngram"  # one training text shares a long n-gram with it (13 words / 20 characters)
    near_duplicate = "near_duplicate"  # one training text is at least the similarity threshold alike


@dataclass(frozen=True)
class ClosestRecord:
    source: str  # file:line of the training record
    excerpt: str  # of the record, normalised, around the match


@dataclass(frozen=True)
class QuestionContamination:
    """One question's verdict, its evidence, and the training record that gave it (or came closest)."""

    qid: str
    flag: Flag
    ngram_matches: int  # the most of its n-grams one training text holds
    ngrams: int  # its indexed n-grams
    similarity: float  # the best similarity (0-100) of the texts compared with it; 0 if none was
    closest: ClosestRecord | None  # None: no training text came near it

    @property
    def contaminated(self) -> bool:
        return self.flag != Flag.clean

    def as_dict(self) -> dict[str, Any]:
        """The fields a predictions.jsonl row takes: flag, evidence, closest record."""
        return {
            "contamination": self.flag.value,
            "contamination_evidence": {
                "ngram_matches": self.ngram_matches,
                "ngrams": self.ngrams,
                "similarity": round(self.similarity, 1),
            },
            "closest_training_record": asdict(self.closest) if self.closest else None,
        }


@dataclass(frozen=True)
class ContaminationReport:
    """The audit of one exam against a set of training texts."""

    results: tuple[QuestionContamination, ...]
    records: int  # training texts scanned
    warn_fraction: float  # warn when more than this fraction of the questions is contaminated

    def by_id(self) -> dict[str, QuestionContamination]:
        return {result.qid: result for result in self.results}

    def summary(self) -> dict[str, Any]:
        """Counts per flag, the contaminated fraction, and whether it is above `warn_fraction`."""
        counts = Counter(result.flag for result in self.results)
        contaminated = sum(1 for result in self.results if result.contaminated)
        fraction = contaminated / len(self.results) if self.results else 0.0
        return {
            "questions": len(self.results),
            "training_records": self.records,
            "by_flag": {flag.value: counts.get(flag, 0) for flag in Flag},
            "contaminated": contaminated,
            "contaminated_fraction": round(fraction, 4),
            "warn_fraction": self.warn_fraction,
            "warn": fraction > self.warn_fraction,
        }

    def warning(self, exam_name: str, rows_file: str = "predictions.jsonl") -> str | None:
        """The loud message when the contaminated fraction is above `warn_fraction`, else None; `rows_file`
        is the file whose rows name each question's closest training record."""
        summary = self.summary()
        if not summary["warn"]:
            return None
        flags = ", ".join(f"{count} {flag}" for flag, count in summary["by_flag"].items() if flag != "clean" and count)
        first = next(result for result in self.results if result.contaminated)
        where = first.closest.source if first.closest else "the training data"
        return (
            f"CONTAMINATION: {summary['contaminated']} of the {summary['questions']} questions of exam={exam_name} "
            f"({100 * summary['contaminated_fraction']:.1f}%, above contamination.warn_fraction={self.warn_fraction}) "
            f"appear in the training data ({flags}); the first, {first.qid}, in {where}. Accuracy on this exam "
            "overstates the model: report the clean questions' accuracy, or remove those training records "
            f"({rows_file} names each question's closest one)."
        )


def accuracy_by_contamination(report: ContaminationReport, statuses: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Accuracy on all scored questions, on the clean ones and on the contaminated ones.

    `statuses` maps question id -> its status ("correct", "wrong", "invalid", or a `Status`). A scored
    question the audit did not see raises ValueError naming it: the audit must cover the scored exam."""
    verdicts = report.by_id()
    unknown = [qid for qid in statuses if qid not in verdicts]
    if unknown:
        raise ValueError(
            f"{len(unknown)} scored question(s) are not in the contamination audit (the first: {unknown[0]!r}); "
            "audit the same selection of the exam that was scored."
        )
    groups: dict[str, list[bool]] = {"all": [], "clean": [], "contaminated": []}
    for qid, status in statuses.items():
        correct = str(getattr(status, "value", status)) == "correct"
        groups["all"].append(correct)
        groups["contaminated" if verdicts[qid].contaminated else "clean"].append(correct)
    return {
        name: {
            "n": len(values),
            "correct": sum(values),
            "accuracy": sum(values) / len(values) if values else None,
            "accuracy_interval": wilson(sum(values), len(values)).to_dict() if values else None,
        }
        for name, values in groups.items()
    }
