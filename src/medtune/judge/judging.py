"""Pair the two systems' answers, ask the judge, and keep every judgment as it arrives.

With swap, each question is judged twice: system a as Assistant 1 (order "ab"), then system b as
Assistant 1 (order "ba"). A judge that prefers a position then helps each system once, and the
average cancels it. Every finished request is appended to `judgments.partial.jsonl`; a run that
stops (killed, or the endpoint gone) keeps them, and the same command with eval.output_dir=<that
dir> judges only what is missing.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medtune.config.generator_schema import GeneratorKind
from medtune.config.judge_schema import JudgeConfig
from medtune.errors import MedtuneError
from medtune.jsonl_store import JsonlStore, SettingsFile
from medtune.judge.answers import System
from medtune.judge.parsing import parse_scores
from medtune.judge.questions import JudgeQuestion
from medtune.judge.rubric import OUTPUT_FORMAT, RUBRIC, SYSTEM_PROMPT, judge_prompt
from medtune.secrets import mask

PARTIAL = "judgments.partial.jsonl"
FINAL = "judgments.jsonl"
STATE = "judge_state.json"


@dataclass(frozen=True)
class Pairing:
    question: JudgeQuestion
    order: str  # "ab": system a is Assistant 1; "ba": system b is
    assistant_1: str
    assistant_2: str
    answer_1: str
    answer_2: str

    @property
    def key(self) -> tuple[str, str]:
        return self.question.qid, self.order


def pairings(
    questions: Sequence[JudgeQuestion],
    a: System,
    b: System,
    answers_a: dict[str, str],
    answers_b: dict[str, str],
    swap: bool,
) -> list[Pairing]:
    pairs = []
    for q in questions:
        pairs.append(Pairing(q, "ab", a.name, b.name, answers_a[q.qid], answers_b[q.qid]))
        if swap:
            pairs.append(Pairing(q, "ba", b.name, a.name, answers_b[q.qid], answers_a[q.qid]))
    return pairs


def judge_settings(cfg: JudgeConfig, model_identity: list) -> dict:
    """What decides a judgment besides the two answers: the judge's model, its decoding, what it is shown.
    Not where it is served: the URL, key, timeouts and concurrency may change between runs."""
    g = cfg.judge
    local = g.kind == GeneratorKind.local
    return {
        "kind": g.kind.value,
        "endpoint_model": None if local else g.endpoint_model,
        "run": g.run if local else None,
        "model": model_identity if local and not g.run else None,
        "max_new_tokens": g.max_new_tokens,
        "temperature": g.temperature,
        "top_k": g.top_k,
        "repetition_penalty": g.repetition_penalty,
        "with_reference": cfg.with_reference,
        "prompt": hashlib.sha256("\n".join([SYSTEM_PROMPT, RUBRIC, OUTPUT_FORMAT]).encode()).hexdigest()[:12],
    }


def scored_row(row: dict, min_score: float) -> dict:
    """Parse (again) the judge's raw text of a row, and put the scores on systems a and b."""
    parsed = parse_scores(row["raw"], min_score)
    first_is_a = row["order"] == "ab"
    row.update(
        score_1=parsed.score_1,
        score_2=parsed.score_2,
        parsed_by=parsed.how,
        reason=parsed.reason,
        status="scored" if parsed.ok else "unparsable",
        score_a=parsed.score_1 if first_is_a else parsed.score_2,
        score_b=parsed.score_2 if first_is_a else parsed.score_1,
    )
    if parsed.cut_chars:  # a judgment longer than any generator writes: only its start was read
        row["cut_chars"] = parsed.cut_chars
    return row


def judgment_row(p: Pairing, raw: str, judge_name: str) -> dict:
    q = p.question
    return {
        "id": q.qid,
        "category": q.category,
        "order": p.order,
        "question": q.question,
        "assistant_1": p.assistant_1,
        "assistant_2": p.assistant_2,
        "answer_1": p.answer_1,
        "answer_2": p.answer_2,
        "judge": judge_name,
        "raw": raw,
    }


def judgment_store(out: Path) -> JsonlStore:
    """judgments.partial.jsonl, appended to as judgments arrive and finished as judgments.jsonl; the
    judge's settings are recorded in judge_state.json."""
    return JsonlStore(
        out / PARTIAL,
        final=out / FINAL,
        settings_at=SettingsFile(out / STATE, field="judge"),
        fix="delete that line (that judgment is asked again), or delete the file to start over.",
    )


def earlier_judgments(out: Path, settings: dict) -> dict[tuple[str, str], dict]:
    """Judgments of an earlier run in `out` with the same judge settings, keyed by (question id, order)."""
    rows = judgment_store(out).open(
        settings,
        what="judgments made by a judge",
        reuse_final=True,
        fresh="judge into another directory (eval.output_dir=...; judge.a.answers / judge.b.answers can point at "
        f"this one's answers_*.jsonl to reuse them), or delete {FINAL}, {PARTIAL} and {STATE} here to judge "
        "again.",
    )
    return {(str(r["id"]), r["order"]): r for r in rows}


def run_judgments(
    make_judge: Callable[[], object],
    judge_name: str,
    pairs: list[Pairing],
    judge: JudgeConfig,
    out: Path,
    settings: dict,
) -> list[dict]:
    """Every pairing's judgment row, in order: reused when an earlier run judged the same answers.
    `make_judge()` gives the judge's generator; it is called only when something is left to judge."""
    from medtune.llm.protocol import ChatRequest, EndpointError
    from medtune.reporting.progress_bar import progress_bar

    earlier = earlier_judgments(out, settings)
    store = judgment_store(out)
    done: dict[tuple[str, str], dict] = {}
    for p in pairs:
        row = earlier.get(p.key)
        if row is not None and row["answer_1"] == p.answer_1 and row["answer_2"] == p.answer_2:
            done[p.key] = row
    todo = [p for p in pairs if p.key not in done]
    if done and todo:
        from medtune.reporting.console import console

        console.print(f"resuming: {len(done)} of {len(pairs)} judgments already made in {out}")
    generator = make_judge() if todo else None
    chunk = max(1, judge.judge.concurrency if judge.judge.kind == GeneratorKind.endpoint else judge.judge.batch_size)
    with progress_bar(total=len(todo), desc="judging", unit="judgment", disable=not todo) as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            requests = [
                ChatRequest(
                    user=judge_prompt(
                        p.question.question,
                        p.answer_1,
                        p.answer_2,
                        p.question.reference if judge.with_reference else None,
                    ),
                    system=SYSTEM_PROMPT,
                )
                for p in part
            ]
            try:
                texts = generator.generate(requests, progress=False)
            except EndpointError as error:
                raise EndpointError(
                    f"{error} Judging stopped after {len(done)} of {len(pairs)} judgments; they are kept in "
                    f"{out / PARTIAL}. Run the same command with eval.output_dir={out} to judge the rest."
                ) from error
            rows = [judgment_row(p, text, judge_name) for p, text in zip(part, texts)]
            store.append(rows)
            done.update((p.key, row) for p, row in zip(part, rows))
            bar.update(len(part))
    return [scored_row(dict(done[p.key]), judge.min_score) for p in pairs]


class UnreadableJudge(MedtuneError):
    """Not one judgment could be read: there is no table to give, and the run fails."""


def reasons_line(rows: Sequence[dict]) -> str:
    """The reasons judgments could not be read, most frequent first: "no pair of scores found x8, ..."."""
    counts = Counter(row.get("reason") or "unknown" for row in rows)
    return ", ".join(f"{reason} x{count}" for reason, count in counts.most_common(3))


def check_readable(rows: Sequence[dict], out: Path, judge_key: str = "judge.judge") -> None:
    """Raise UnreadableJudge when every judgment is unparsable, after keeping them in judgments.jsonl."""
    unreadable = [row for row in rows if row["status"] != "scored"]
    where = out / FINAL
    if unreadable and len(unreadable) == len(rows):
        judgment_store(out).finish(list(rows))
        sample = " ".join(str(unreadable[0].get("raw") or "").split())[:100]
        raise UnreadableJudge(
            mask(
                f"all {len(rows)} judgments were unparsable: the judge model did not follow the format; see {where} "
                f"for its raw outputs (reasons: {reasons_line(unreadable)}; the first one reads {sample!r}). No "
                f"table was made. Use a judge that gives two scores on its first line (another "
                f"{judge_key}.endpoint_model or {judge_key}.run), or raise {judge_key}.max_new_tokens if its answers "
                "are cut short; then judge again into another directory (judge.output_dir=...) or here with "
                "overwrite=true (it replaces these judgments)."
            )
        )


def warn_unreadable(rows: Sequence[dict], out: Path) -> None:
    """A warning with the count of unparsable judgments, when there are some (they are left out of the table)."""
    unreadable = [row for row in rows if row["status"] != "scored"]
    if not unreadable:
        return
    print(
        f"medtune: warning: {len(unreadable)} of {len(rows)} judgments were unparsable and are left out of the "
        f"scores (reasons: {reasons_line(unreadable)}); each one's raw text and reason are in {out / FINAL} "
        '(status "unparsable").',
        file=sys.stderr,
        flush=True,
    )
