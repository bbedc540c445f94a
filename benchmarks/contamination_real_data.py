"""Contamination audit on the shared data: JJSimQA and MedQA used as training data, against IgakuQA 2018.

The exam is every 2018 question medtune's IgakuQA reader reads (exam=igakuqa with its filters off,
choice texts not required), in Japanese and in IgakuQA's English translation (exam.english=true); the
paper's subset that exam=igakuqa selects by default (277 questions) is counted beside it. The training
sides are the two shared exam files read as training data (`training_texts`, exam records: stem,
labelled choices), each alone and both together. The prompt's worked examples (IgakuQA's few-shot file,
questions of the 100th exam) are audited too.

Also: how many IgakuQA questions share a character n-gram with JJSimQA for n = 13, 15, 18, 20, 25 (the
evidence for the default of 20, see medtune.exam.contamination), and the questions most similar to a
JJSimQA or MedQA record with the text of both, to judge the near-duplicate threshold.

    .venv/bin/python benchmarks/contamination_real_data.py   # MEDTUNE_SHARED names the data folder

Writes benchmarks/results/contamination_real_data.md (`--out`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from medtune.config.exam_schema import ExamConfig  # noqa: E402
from medtune.exam.contamination import ContaminationConfig, audit_contamination  # noqa: E402
from medtune.exam.contamination_sources import question_text, training_texts, worked_example_texts  # noqa: E402
from medtune.exam.contamination_text import normalise  # noqa: E402
from medtune.exam.igakuqa import select_igakuqa  # noqa: E402
from medtune.exam.selection import ExamFilter  # noqa: E402

FLAGS = ("clean", "exact", "ngram", "near_duplicate")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "contamination_real_data.md")
    args = parser.parse_args()
    shared = Path(os.environ.get("MEDTUNE_SHARED", REPO.parent / "shared")).resolve()
    data = shared / "data"
    if not (data / "igakuqa" / "2018").is_dir():
        sys.exit(f"IgakuQA not found at {data}/igakuqa/2018; set MEDTUNE_SHARED to the folder that holds data/.")
    igakuqa, jjsimqa, medqa = data / "igakuqa", data / "jjsimqa" / "jjsimqa.jsonl", data / "medqa_en" / "medqa_en.jsonl"
    everything = ExamFilter(text_only=False, min_answers=0, max_answers=99, require_choices=False)
    exams = {
        english: select_igakuqa(igakuqa, [2018], everything, english=english, needs_choice_text=False).questions
        for english in (False, True)
    }
    subset = {q.qid for q in select_igakuqa(igakuqa, [2018], ExamFilter()).questions}
    training = {
        "JJSimQA": [jjsimqa],
        "MedQA": [medqa],
        "JJSimQA + MedQA": [jjsimqa, medqa],
        "IgakuQA 2018's own files (a check)": [igakuqa / "2018"],
    }

    lines = [
        "# Contamination audit on the shared data",
        "",
        "Command: `python benchmarks/contamination_real_data.py` (default settings: 13-word and 20-character "
        "n-grams, near-duplicates from rapidfuzz similarity 85)",
        "",
        f"Exam: IgakuQA 2018, every question medtune reads ({len(exams[False])}; the default exam=igakuqa "
        f"subset is {len(subset)} of them), in Japanese and in its English translation. Training data: "
        "JJSimQA (460 Japanese questions) and MedQA (1,273 English questions) read as training records.",
        "",
        "| exam | training data | records | " + " | ".join(FLAGS) + " | contaminated (of the 277) | seconds |",
        "|---|---|---:|" + "---:|" * len(FLAGS) + "---:|---:|",
    ]
    reports = {}
    for english, questions in exams.items():
        for name, files in training.items():
            if english and name.startswith(
                "IgakuQA"
            ):  # its folder holds the Japanese text (translations are side files)
                continue
            start = time.perf_counter()
            report = audit_contamination(questions, training_texts(files))
            seconds = time.perf_counter() - start
            reports[english, name] = report
            counts = report.summary()["by_flag"]
            in_subset = sum(1 for r in report.results if r.contaminated and r.qid in subset)
            lines.append(
                f"| IgakuQA 2018 {'English' if english else 'Japanese'} | {name} | {report.records} | "
                + " | ".join(str(counts[flag]) for flag in FLAGS)
                + f" | {in_subset} | {seconds:.1f} |"
            )
    fewshot = ExamConfig(
        name="igakuqa",
        path=str(igakuqa),
        language="ja",
        fewshot_path=str(igakuqa / "fewshot" / "prompt_translate.jsonl"),
    )
    for english, questions in exams.items():
        report = audit_contamination(questions, worked_example_texts(fewshot, english=english))
        counts = report.summary()["by_flag"]
        lines.append(
            f"| IgakuQA 2018 {'English' if english else 'Japanese'} | the prompt's worked examples | {report.records} | "
            + " | ".join(str(counts[flag]) for flag in FLAGS)
            + f" | {sum(1 for r in report.results if r.contaminated and r.qid in subset)} | |"
        )

    lines += ["", "## Character n-gram size: IgakuQA 2018 (Japanese) against JJSimQA", ""]
    lines += ["| n (characters) | questions flagged `ngram` or `exact` | example n-gram |", "|---:|---:|---|"]
    for size in (13, 15, 18, 20, 25):
        settings = ContaminationConfig(ngram_chars=size, excerpt_chars=size + 8)  # the excerpt: the n-gram, ±4
        report = audit_contamination(exams[False], training_texts([jjsimqa]), settings)
        hit = [r for r in report.results if r.flag in ("ngram", "exact")]
        example = f"{hit[0].qid}: {hit[0].closest.excerpt}" if hit else ""
        lines.append(f"| {size} | {len(hit)} | {example} |")

    lines += ["", "## The closest pairs (highest similarity), with both texts", ""]
    by_id = {english: {q.qid: q for q in questions} for english, questions in exams.items()}
    for (english, name), report in reports.items():
        if name == "JJSimQA + MedQA" or name.startswith("IgakuQA"):
            continue
        closest = sorted(
            (r for r in report.results if r.closest), key=lambda r: (r.contaminated, r.similarity), reverse=True
        )[:3]
        lines += [f"### IgakuQA 2018 {'English' if english else 'Japanese'} against {name}", ""]
        if not closest:
            lines.append("No training text came near any question (none shares enough short shingles with one).")
        for result in closest:
            question = by_id[english][result.qid]
            lines += [
                f"- **{result.qid}**: flag `{result.flag.value}`, similarity {result.similarity:.1f}, "
                f"{result.ngram_matches} of its {result.ngrams} n-grams; closest record "
                f"`{Path(result.closest.source).name}`",
                f"  - question: {normalise(question_text(question))[:400]}",
                f"  - record: {result.closest.excerpt[:400]}",
            ]
        lines.append("")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
