"""generate_qa.py: documents -> chunks -> generator -> parsed, validated, deduplicated Alpaca records.

    python generate_qa.py qa.generator.kind=endpoint qa.generator.url=http://127.0.0.1:8000/v1
    python train.py dataset=generated_qa dataset.path=outputs/generate_qa/runs/<stamp>/qa_pairs.jsonl

Each record is `{instruction, input: "", output, source: "<document>#<chunk>", generator}`, which
`read_records` reads as Alpaca. Records and a progress line are appended as each chunk finishes
(see `medtune.qa.store`), so the same command with `hydra.run.dir=<that dir>` continues an
interrupted run; deduplication covers the records already there. Endpoint requests run
`generator.concurrency` at a time and are written in chunk order; local models decode
`generator.batch_size` chunks at a time.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any

from medtune.config.generator_schema import GeneratorKind
from medtune.config.job import JobContext, Workspace
from medtune.config.qa_schema import GenerateQARunConfig, QAGenerationConfig
from medtune.errors import ConfigError
from medtune.qa.chunking import (
    Chunk,
    Measure,
    char_measure,
    chunk_documents,
    default_chars_per_token,
    load_documents,
    token_measure,
)
from medtune.qa.dedupe import Deduper
from medtune.qa.parsing import parse_pairs
from medtune.qa.prompt import load_template, render
from medtune.qa.store import RunStore, chunk_hash, sha256
from medtune.qa.validate import REASONS, Limits, rejection
from medtune.reporting.console import console

UNPARSABLE_KEPT_CHARS = 2000  # a response with no readable pair is kept (this much) in its progress line


def settings_of(cfg, template: str, measure: Measure) -> dict[str, Any]:
    """What shapes the output; a resumed run must match it (the URL, timeouts and concurrency may change)."""
    qa, gen = cfg.qa, cfg.qa.generator
    local = gen.kind == GeneratorKind.local
    return {
        "template_sha256": sha256(template),
        "language": qa.language,
        "pairs_per_chunk": qa.pairs_per_chunk,
        "chunk_tokens": qa.chunk_tokens,
        "chunk_overlap_tokens": qa.chunk_overlap_tokens,
        "chunk_measure": measure.description,
        "min_answer_chars": qa.min_answer_chars,
        "min_question_chars": qa.min_question_chars,
        "dedupe_threshold": qa.dedupe_threshold,
        "generator": {
            "kind": gen.kind.value,
            "model": (gen.run or cfg.model.name) if local else gen.endpoint_model,
            "max_new_tokens": gen.max_new_tokens,
            "temperature": gen.temperature,
            "top_k": gen.top_k,
            "repetition_penalty": gen.repetition_penalty,
            "system_prompt": gen.system_prompt,
            **({"seed": cfg.seed} if local and gen.temperature > 0 else {}),  # what a sampled local run draws
        },
    }


def chunk_measure(qa: QAGenerationConfig, generator) -> Measure:
    tokenizer = getattr(generator, "tokenizer", None)
    if tokenizer is not None:
        return token_measure(tokenizer, generator.name)
    return char_measure(qa.chars_per_token or default_chars_per_token(qa.language))


def check_context(qa: QAGenerationConfig, generator, template: str, measure: Measure) -> None:
    """A local model must fit instructions + chunk + answer; its prompts would otherwise lose their start."""
    model = getattr(generator, "model", None)
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not limit:
        return
    needed = measure.size(render(template, "", qa.pairs_per_chunk)) + qa.chunk_tokens + qa.generator.max_new_tokens
    if needed > limit:
        prompt_tokens = needed - qa.chunk_tokens - qa.generator.max_new_tokens
        problem = (
            f"qa.chunk_tokens={qa.chunk_tokens} + the template (~{prompt_tokens:.0f} tokens) + "
            f"qa.generator.max_new_tokens={qa.generator.max_new_tokens} is {needed:.0f} tokens, more "
            f"than {generator.name} reads ({limit}); lower qa.chunk_tokens or qa.generator.max_new_tokens."
        )
        raise ConfigError([problem])


def responses(
    generator, kind: GeneratorKind, chunks: list[Chunk], template: str, n: int, width: int
) -> Iterator[tuple[Chunk, str]]:
    """(chunk, response) in chunk order; endpoint requests overlap, `width` at a time."""
    from medtune.llm.protocol import ChatRequest

    def request(chunk: Chunk) -> ChatRequest:
        return ChatRequest(user=render(template, chunk.text, n))

    if kind == GeneratorKind.endpoint:
        pool = ThreadPoolExecutor(max_workers=width)
        try:
            futures = [pool.submit(lambda c=c: generator.generate([request(c)], progress=False)[0]) for c in chunks]
            for chunk, future in zip(chunks, futures):
                yield chunk, future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # a failure stops the queue; requests in flight end
        return
    for start in range(0, len(chunks), width):
        batch = chunks[start : start + width]
        yield from zip(batch, generator.generate([request(c) for c in batch], progress=False))


class Tally:
    """Counts of one chunk's response, kept as its progress line."""

    def __init__(self, chunk: Chunk, hash_: str):
        self.row: dict[str, Any] = {"chunk": chunk.id, "hash": hash_, "chars": len(chunk.text)}
        self.dropped: Counter = Counter()
        self.duplicates: Counter = Counter()

    def finish(self, parsed, response: str, written: int) -> dict[str, Any]:
        if parsed.unparsable:
            self.row["response"] = response[:UNPARSABLE_KEPT_CHARS]  # what the generator wrote instead
        self.row.update(
            {
                "format": parsed.format,
                "pairs_parsed": len(parsed.pairs),
                "unparsable": parsed.unparsable,
                "rejected_fragments": parsed.rejected,
                "dropped": dict(self.dropped),
                "duplicates_exact": self.duplicates["exact"],
                "duplicates_near": self.duplicates["near"],
                "written": written,
                "finished_at": time.time(),
            }
        )
        if parsed.cut_chars:  # a response longer than any generator writes: only its start was read
            self.row["cut_chars"] = parsed.cut_chars
        return self.row


def process(chunk: Chunk, response: str, hash_: str, deduper: Deduper, limits: Limits, generator_name: str):
    parsed = parse_pairs(response)
    tally = Tally(chunk, hash_)
    records = []
    for question, answer in parsed.pairs:
        reason = rejection(question, answer, chunk.text, limits)
        if reason is not None:
            tally.dropped[reason] += 1
            continue
        repeat = deduper.check(question)
        if repeat is not None:
            tally.duplicates[repeat] += 1
            continue
        records.append(
            {
                "instruction": question.strip(),
                "input": "",
                "output": answer.strip(),
                "source": chunk.id,
                "generator": generator_name,
            }
        )
    return records, tally.finish(parsed, response, len(records))


def summarize(
    rows: list[dict], documents: int, chunks: list[Chunk], total_chunks: int, this_run: dict
) -> dict[str, Any]:
    dropped = Counter()
    for row in rows:
        dropped.update(row.get("dropped", {}))
    formats = Counter(row.get("format", "none") for row in rows)
    return {
        "documents": documents,
        "chunks": len(chunks),
        "chunks_in_documents": total_chunks,  # selected / all
        "chunks_done": len(rows),
        "chunks_resumed": this_run["resumed"],
        "requests": this_run["requests"],
        "responses_unparsable": sum(bool(r.get("unparsable")) for r in rows),
        "responses_cut": sum(bool(r.get("cut_chars")) for r in rows),
        "fragments_unparsable": sum(r.get("rejected_fragments", 0) for r in rows),
        "pairs_parsed": sum(r.get("pairs_parsed", 0) for r in rows),
        "dropped": {reason: dropped.get(reason, 0) for reason in REASONS},
        "dropped_total": sum(dropped.values()),
        "duplicates_exact": sum(r.get("duplicates_exact", 0) for r in rows),
        "duplicates_near": sum(r.get("duplicates_near", 0) for r in rows),
        "written": sum(r.get("written", 0) for r in rows),
        "written_this_run": this_run["written"],
        "formats": dict(formats),
        **{k: this_run[k] for k in ("status", "generator", "output", "seconds")},
        **({"error": this_run["error"]} if this_run.get("error") else {}),
    }


def print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"medtune generate_qa ({summary['status']})")
    table.add_column("count", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("generator", summary["generator"]),
        ("documents", summary["documents"]),
        ("chunks (done / selected)", f"{summary['chunks_done']} / {summary['chunks']}"),
        ("chunks resumed from an earlier run", summary["chunks_resumed"]),
        ("requests answered this run", summary["requests"]),
        ("responses with no readable pair", summary["responses_unparsable"]),
        ("fragments that could not be read", summary["fragments_unparsable"]),
        ("pairs parsed", summary["pairs_parsed"]),
        *((f"dropped: {reason}", n) for reason, n in summary["dropped"].items() if n),
        ("duplicates (exact / near)", f"{summary['duplicates_exact']} / {summary['duplicates_near']}"),
        ("records written (this run)", f"{summary['written']} ({summary['written_this_run']})"),
    ]
    for name, value in rows:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


def workspace(cfg: GenerateQARunConfig, job: JobContext) -> tuple[GenerateQARunConfig, Workspace | None]:
    """A generation run holds its run dir and one W&B run; a dry run writes nothing."""
    if cfg.dry_run:
        return cfg, None
    return cfg, Workspace(job.run_dir, setting="hydra.run.dir", activity="QA generation", job_type="generate_qa")


def check_existing(cfg: GenerateQARunConfig, job: JobContext, directory) -> GenerateQARunConfig:
    """Before generate_qa.py writes into its run dir: QA pairs there made with other settings (recorded in
    qa_state.json) are refused, or deleted with overwrite=true; the same settings continue the run. How
    chunks are measured depends on the generator's tokenizer, known once it is loaded: `RunStore.open`
    checks that (and documents that changed) then."""
    from pathlib import Path

    from medtune.errors import DataError
    from medtune.finished import HeldResults, present, settle, written_at
    from medtune.jsonl_store import SettingsFile, normalized, read_jsonl
    from medtune.nested import changes
    from medtune.qa.store import PAIRS_FILE, PROGRESS_FILE, STATE_FILE, SUMMARY_FILE

    out = Path(directory)
    done = len(read_jsonl(out / PROGRESS_FILE).rows)
    if not done:
        return cfg
    try:
        record = SettingsFile(out / STATE_FILE).read() or {}
    except DataError:
        record = {}
    if "settings" in record:
        current = normalized(settings_of(cfg, load_template(cfg.qa), char_measure(1.0)))
        before = {k: v for k, v in record["settings"].items() if k != "chunk_measure"}
        changed = changes(before, {k: v for k, v in current.items() if k != "chunk_measure"}, "qa.")
    else:
        changed = [f"the settings the pairs were made with: not recorded ({STATE_FILE} is missing or unreadable)"]
    summary = out / SUMMARY_FILE
    try:
        complete = json.loads(summary.read_text(encoding="utf-8")).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        complete = False
    holds = (
        f"a finished QA generation ({PAIRS_FILE}, {SUMMARY_FILE} from {written_at(summary)})"
        if complete
        else f"an interrupted QA generation ({done} chunk(s) done in {PROGRESS_FILE})"
    )
    files = present(out, (PAIRS_FILE, PROGRESS_FILE, STATE_FILE, SUMMARY_FILE))
    settle(
        HeldResults(out, holds, changed, files),
        cfg.overwrite,
        "hydra.run.dir",
        "start a new run dir (leave out hydra.run.dir, or point it somewhere else)",
    )
    return cfg


def run(cfg: GenerateQARunConfig, job: JobContext, tracker) -> int | None:
    """The generate_qa.py task: how many records qa_pairs.jsonl holds (None for a dry run, which asks nothing)."""
    from medtune.quiet import quiet_third_party

    quiet_third_party(cpu_only=cfg.hardware.accelerator.value == "cpu")
    template = load_template(cfg.qa)
    documents = load_documents(cfg.qa.documents, cfg.qa.text_field)
    if cfg.dry_run:
        return dry_run(cfg, template, documents)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    return _generate(cfg, job, tracker, template, documents)


def metrics(written: int | None) -> dict[str, Any]:
    """What `optimized_metric` picks from: qa/records, the records qa_pairs.jsonl holds."""
    return {} if written is None else {"qa/records": written}


def dry_run(cfg, template: str, documents) -> None:
    measure = char_measure(cfg.qa.chars_per_token or default_chars_per_token(cfg.qa.language))
    chunks = chunk_documents(documents, cfg.qa.chunk_tokens, cfg.qa.chunk_overlap_tokens, measure)
    console.print(
        f"generate_qa dry run: {len(documents)} document(s) -> {len(chunks)} chunk(s) by {measure.description} "
        "(a local generator cuts by its tokenizer instead). The first prompt:"
    )
    console.print(render(template, chunks[0].text, cfg.qa.pairs_per_chunk), markup=False)


def _generate(cfg, job: JobContext, tracker, template: str, documents) -> int:
    from medtune.llm.access import make_generator
    from medtune.reporting.progress_bar import progress_bar
    from medtune.tracking.wandb_run import flatten

    qa = cfg.qa
    started = time.perf_counter()
    with console.status("Loading the generator"):
        generator = make_generator(
            qa.generator, model_cfg=cfg.model, hardware=cfg.hardware, cache_dir=cfg.paths.cache_dir, key="qa.generator"
        )
    if qa.generator.kind == GeneratorKind.local:
        import torch

        torch.manual_seed(cfg.seed)  # a sampled local generator draws from the run's seed
    measure = chunk_measure(qa, generator)
    check_context(qa, generator, template, measure)
    all_chunks = chunk_documents(documents, qa.chunk_tokens, qa.chunk_overlap_tokens, measure)
    chunks = all_chunks[: qa.max_chunks] if qa.max_chunks else all_chunks
    settings = settings_of(cfg, template, measure)
    settings_hash = sha256(json.dumps(settings, sort_keys=True))
    hashes = {c.id: chunk_hash(settings_hash, c.text) for c in all_chunks}
    store = RunStore(job.run_dir)
    finished, kept = store.open(settings, hashes)
    deduper = Deduper(qa.dedupe_threshold)
    for record in kept:
        deduper.add(str(record.get("instruction", "")))
    pending = [c for c in chunks if c.id not in finished]
    this_run = {
        "resumed": len(chunks) - len(pending),
        "requests": 0,
        "written": 0,
        "status": "interrupted",
        "generator": generator.name,
        "output": str(store.pairs_path),
        "seconds": 0.0,
    }
    console.print(
        f"generate_qa: {len(documents)} document(s), {len(chunks)} chunk(s) of <= {qa.chunk_tokens} tokens "
        f"({measure.description}); {this_run['resumed']} done before, {len(pending)} to ask {generator.name}."
    )
    limits = Limits(qa.min_question_chars, qa.min_answer_chars)
    width = qa.generator.concurrency if qa.generator.kind == GeneratorKind.endpoint else qa.generator.batch_size
    samples: list[dict] = []
    try:
        with (
            progress_bar(total=len(chunks), initial=this_run["resumed"], desc="chunks", unit="chunk") as bar,
            closing(
                responses(generator, qa.generator.kind, pending, template, qa.pairs_per_chunk, max(1, width))
            ) as stream,
        ):
            for chunk, response in stream:
                records, row = process(chunk, response, hashes[chunk.id], deduper, limits, generator.name)
                store.append(records, row)
                finished[chunk.id] = row
                this_run["requests"] += 1
                this_run["written"] += len(records)
                samples.extend(records[: max(0, 50 - len(samples))])
                tracker.log({"qa/chunks_done": len(finished), "qa/written_this_run": this_run["written"]})
                bar.update(1)
        this_run["status"] = "complete"
    except BaseException as error:
        this_run["error"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        this_run["seconds"] = round(time.perf_counter() - started, 3)
        rows = list(finished.values())  # every finished chunk, earlier runs' included
        summary = summarize(rows, len(documents), chunks, len(all_chunks), this_run)
        store.write_summary(summary)
        tracker.summarize(flatten(summary, "qa/"))
        if samples:
            tracker.log_table(
                "qa/samples",
                ["source", "instruction", "output"],
                [[r["source"], r["instruction"], r["output"]] for r in samples],
            )
        print_summary(summary)
    if summary["written"]:
        console.print(
            f"[green]{summary['written']} records in {store.pairs_path}[/green]\n"
            f"train on them: python train.py dataset=generated_qa dataset.path={store.pairs_path}"
        )
    else:
        console.print(
            f"[yellow]No records were written: {summary['responses_unparsable']} of {summary['chunks_done']} "
            f"responses had no readable pair. What {generator.name} wrote is in {store.progress_path} "
            "(field 'response'); an untuned or tiny model rarely follows the template.[/yellow]"
        )
    return summary["written"]
