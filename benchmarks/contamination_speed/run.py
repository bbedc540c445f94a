"""Contamination audit speed: 100,000 training records against 1,000 exam questions, English and Japanese.

The audit has to be cheap enough to run before every training run's exam check. This benchmark builds a
synthetic training set of realistic lengths and a synthetic exam, plants copies of some questions in the
training set, and times `medtune.exam.contamination` as a run would use it:

* index: `ExamIndex(questions)` (normalisation, n-grams and shingles of the exam, boilerplate removed);
* read: `training_texts(file)` alone, i.e. reading and parsing the JSON Lines file (for reference);
* read + scan: `training_texts(file)` streamed through `ExamIndex.scan`, then `report()`: the audit's cost.

Training records (written to one JSON Lines file): 45% English Alpaca records (instruction 15-120 words,
output 20-250 words), 45% Japanese Alpaca records (instruction 40-300 characters, output 60-600), 10%
pretraining documents (`{"text"}`, 1,500-5,000 characters, either language). Questions: half English
(stem 30-120 words), half Japanese (stem 40-250 characters), five choices each. Text is drawn from the
bundled sample texts' words and characters, with about a third of it clauses of those texts (up to 8 words
or 12 characters, never two in a row), so training records and questions share short phrases as real medical text does (the candidates the
near-duplicate check compares); each question ends in one of a few stock question lines.

Planted, and checked (recall): 5% of the questions copied verbatim into an instruction record, 5% as a
near-duplicate (every 7th word or 11th character changed, so no 13-word / 20-character n-gram survives),
5% as a long span of the stem inside a pretraining document. Flags on the other 85% are counted as
false positives.

    .venv/bin/python benchmarks/contamination_speed/run.py           # minutes: data, then the audit
    .venv/bin/python benchmarks/contamination_speed/run.py --smoke   # seconds (tests run it)

Writes benchmarks/results/contamination_speed.md (`--out`; the smoke mode writes nothing unless given one).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from medtune.exam.contamination import ExamIndex, Flag  # noqa: E402
from medtune.exam.contamination_sources import training_texts  # noqa: E402
from medtune.exam.contamination_text import normalise  # noqa: E402
from medtune.vocabulary import ExamQuestion  # noqa: E402

RESOURCES = REPO / "src" / "medtune" / "resources"
QUESTION_LINES = {
    "en": [
        "Which of the following is the most likely diagnosis?",
        "Which of the following is the most appropriate next step in management?",
        "Which of the following is the most likely cause?",
    ],
    "ja": ["最も考えられるのはどれか。", "まず行うべき検査はどれか。", "治療として適切なのはどれか。2つ選べ。"],
}


def others_cpu_seconds() -> float:
    """CPU-seconds used so far by every process but this one (Linux /proc/stat; 0 elsewhere)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK") - sum(os.times()[:2])


class TextSource:
    """Words (English) and characters (Japanese) of the bundled texts, and their clauses, to draw from."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        english, japanese = [], []
        for path in sorted(RESOURCES.rglob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                for value in _strings(json.loads(line)):
                    (japanese if re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", value) else english).append(value)
        self.words = " ".join(english).split()
        self.chars = [ch for ch in "".join(japanese) if not ch.isspace()]
        self.clauses = {
            # short clauses only (normalised: "45-year-old" is three words): the stock phrases records and
            # questions share, none as long as an n-gram
            "en": [normalise(c).split()[:8] for c in re.split(r"[.,;:?!]", " ".join(english)) if len(c.split()) >= 3],
            "ja": [normalise(c)[:12] for c in re.split(r"[、。]", "".join(japanese)) if len(c) >= 4],
        }

    def english(self, words: int) -> str:
        out: list[str] = []
        clause = False  # never two clauses in a row: two stock phrases side by side would make a long n-gram
        while len(out) < words:
            clause = not clause and self.rng.random() < 0.5
            out += (
                self.rng.choice(self.clauses["en"])
                if clause
                else self.rng.choices(self.words, k=self.rng.randint(3, 10))
            )
        return " ".join(out[:words])

    def japanese(self, chars: int) -> str:
        out: list[str] = []
        size = 0
        clause = False
        while size < chars:
            clause = not clause and self.rng.random() < 0.5
            piece = (
                self.rng.choice(self.clauses["ja"])
                if clause
                else "".join(self.rng.choices(self.chars, k=self.rng.randint(4, 14)))
            )
            out.append(piece + self.rng.choice("、。"))
            size += len(piece) + 1
        return "".join(out)[:chars]

    def text(self, language: str, low: int, high: int) -> str:
        size = self.rng.randint(low, high)
        return self.english(size) if language == "en" else self.japanese(size)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for child in value.values():
            yield from _strings(child)
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child)


def make_questions(source: TextSource, count: int) -> list[ExamQuestion]:
    rng = source.rng
    questions = []
    for number in range(count):
        language = "en" if number % 2 == 0 else "ja"
        stem = source.text(language, 30, 120) if language == "en" else source.text(language, 40, 250)
        # random words before the stock question line: a clause (shared with other questions) right before
        # it would make a 13-word span that two questions share
        stem += (
            " " + " ".join(rng.choices(source.words, k=4))
            if language == "en"
            else "".join(rng.choices(source.chars, k=6)) + "。"
        ) + rng.choice(QUESTION_LINES[language])
        choices = tuple(
            source.text(language, 1, 5) if language == "en" else source.text(language, 3, 12) for _ in "abcde"
        )
        questions.append(ExamQuestion(qid=f"q{number}", question=stem, choices=choices, answers=("a",)))
    return questions


def near_duplicate(question: ExamQuestion, language: str, source: TextSource) -> str:
    """The question with every 7th word (English) or 11th character (Japanese) replaced."""
    if language == "en":
        words = question.question.split()
        return " ".join(source.rng.choice(source.words) if i % 7 == 3 else w for i, w in enumerate(words))
    chars = list(question.question)
    return "".join(source.rng.choice(source.chars) if i % 11 == 5 else c for i, c in enumerate(chars))


def labelled(choices) -> str:
    return "\n".join(f"{label}. {choice}" for label, choice in zip("abcde", choices))


def write_training_file(path: Path, source: TextSource, records: int, questions: list[ExamQuestion]) -> dict:
    """`records` training records in `path`, the planted copies among them; returns qid -> planted kind."""
    rng = source.rng
    planted: dict[str, str] = {}
    shuffled = questions[:]
    rng.shuffle(shuffled)
    share = max(1, len(questions) // 20)
    kinds = ["exact"] * share + ["near_duplicate"] * share + ["ngram"] * share
    plants: list[dict] = []
    for question, kind in zip(shuffled, kinds):
        planted[question.qid] = kind
        language = "en" if int(question.qid[1:]) % 2 == 0 else "ja"  # as make_questions alternates
        if kind == "exact":
            plants.append({"instruction": question.question, "input": labelled(question.choices), "output": "a"})
        elif kind == "near_duplicate":
            plants.append(
                {
                    "instruction": near_duplicate(question, language, source),
                    "input": labelled(question.choices),
                    "output": "a",
                }
            )
        else:
            if language == "en":
                words = question.question.split()
                span = " ".join(words[5:35])
            else:
                span = question.question[5:60]
            text = source.text(language, 300, 900) + (" " if language == "en" else "。") + span
            plants.append({"text": text + " " + source.text(language, 300, 900)})
    slots = set(rng.sample(range(records), len(plants)))
    plant_iter = iter(plants)
    with path.open("w", encoding="utf-8") as out:
        for number in range(records):
            if number in slots:
                item = next(plant_iter)
            else:
                draw = rng.random()
                if draw < 0.1:
                    language = rng.choice(("en", "ja"))
                    low, high = (250, 800) if language == "en" else (1500, 5000)
                    item = {"text": source.text(language, low, high)}
                else:
                    language = "en" if draw < 0.55 else "ja"
                    item = (
                        {"instruction": source.text("en", 15, 120), "input": "", "output": source.text("en", 20, 250)}
                        if language == "en"
                        else {
                            "instruction": source.text("ja", 40, 300),
                            "input": "",
                            "output": source.text("ja", 60, 600),
                        }
                    )
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
    return planted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=1_000)
    parser.add_argument("--smoke", action="store_true", help="2,000 records, 60 questions: a check that it runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="the report (default: benchmarks/results/...)")
    args = parser.parse_args()
    if args.smoke:
        args.records, args.questions = 2_000, 60
    out = args.out or (None if args.smoke else REPO / "benchmarks" / "results" / "contamination_speed.md")

    source = TextSource(random.Random(args.seed))
    questions = make_questions(source, args.questions)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "training.jsonl"
        planted = write_training_file(path, source, args.records, questions)
        size_mb = path.stat().st_size / 1e6
        chars = sum(len(t.text) for t in training_texts([path]))

        load_before, others_before = os.getloadavg()[0], others_cpu_seconds()
        start, cpu_start = time.perf_counter(), time.process_time()
        index = ExamIndex(questions)
        indexed, cpu_indexed = time.perf_counter(), time.process_time()
        for text in training_texts([path]):
            index.scan(text)
        report = index.report()
        scanned, cpu_scanned = time.perf_counter(), time.process_time()
        others = others_cpu_seconds() - others_before
        start_read = time.perf_counter()
        for _ in training_texts([path]):
            pass
        read_only = time.perf_counter() - start_read
        load_after = os.getloadavg()[0]

    verdicts = report.by_id()
    recall = {kind: Counter() for kind in ("exact", "near_duplicate", "ngram")}
    for qid, kind in planted.items():
        recall[kind][verdicts[qid].flag.value] += 1
    false_flags = Counter(v.flag.value for qid, v in verdicts.items() if qid not in planted and v.flag != Flag.clean)
    build_s, scan_s = indexed - start, scanned - indexed
    lines = [
        "# Contamination audit speed",
        "",
        f"Command: `python benchmarks/contamination_speed/run.py{' --smoke' if args.smoke else ''}` "
        f"(records {args.records:,}, questions {args.questions:,}, seed {args.seed})",
        "",
        f"Machine: {os.cpu_count()} CPUs, shared with other sessions: 1-minute load average {load_before:.2f} "
        f"before the timed part and {load_after:.2f} after; other processes used {others:.1f} CPU-seconds "
        f"during it ({others / max(scan_s + build_s, 1e-9):.2f} CPUs busy on average besides this one). "
        "The audit itself runs on one core.",
        "",
        f"Training file: {args.records:,} records, {size_mb:.1f} MB of JSON Lines, {chars / 1e6:.1f} M characters "
        f"of text ({chars / args.records:.0f} a record).",
        "",
        "| step | wall s | CPU s (this process) |",
        "|---|---:|---:|",
        f"| index the exam ({args.questions:,} questions) | {build_s:.2f} | {cpu_indexed - cpu_start:.2f} |",
        f"| read + scan + report ({args.records:,} records) | {scan_s:.2f} | {cpu_scanned - cpu_indexed:.2f} |",
        f"| **total** | **{build_s + scan_s:.2f}** | **{cpu_scanned - cpu_start:.2f}** |",
        f"| of which reading and parsing the file (timed alone afterwards) | {read_only:.2f} | |",
        "",
        f"Scan rate: {args.records / scan_s:,.0f} records/s, {chars / scan_s / 1e6:.2f} M characters/s.",
        "",
        "Planted copies found (flag given: count):",
        "",
        "| planted as | questions | flags |",
        "|---|---:|---|",
    ]
    for kind, flags in recall.items():
        shown = ", ".join(f"{flag} {count}" for flag, count in sorted(flags.items()))
        lines.append(f"| {kind} | {sum(flags.values())} | {shown} |")
    lines += [
        "",
        f"Questions not planted but flagged: {sum(false_flags.values())} of {len(verdicts) - len(planted)}"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(false_flags.items()))})" if false_flags else "")
        + ".",
        "",
        f"Summary: {json.dumps(report.summary())}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
