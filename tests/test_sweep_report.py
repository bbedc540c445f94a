"""Tests of the sweep report: exact McNemar, the 2x2 contingency, Table 2 rows, and the files on disk.

The Table 2 grid reproduces three rows of the paper from their counts (1-1, 1-2, 2-1 with prompt A),
then adds what real sweeps have: a failed cell, a cell whose reference failed, and a dangling reference.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from medtune.reporting.intervals import correct_map, paired_difference, wilson
from medtune.reporting.paired_report import compare_pairs, read_statuses, table3_markdown
from medtune.reporting.seed_summary import seed_rows
from medtune.reporting.stats import Contingency, contingency, mcnemar_exact
from medtune.reporting.sweep_report import (
    CellOutcome,
    plot_figure2,
    print_table2,
    table2_rows,
    write_report,
    write_table2,
)

# ---------------------------------------------------------------- McNemar


def test_mcnemar_hand_computed_tail():
    # 2 * (C(20,0) + C(20,1)) / 2^20 = 42 / 1048576
    assert math.isclose(mcnemar_exact(1, 19), 4.005432128906250e-05, rel_tol=1e-12)
    assert math.isclose(mcnemar_exact(1, 19), 42 / 1048576, rel_tol=1e-12)


def test_mcnemar_small_cases():
    assert mcnemar_exact(5, 5) == 1.0  # 2 * P(X <= 5) > 1, capped
    assert mcnemar_exact(0, 0) == 1.0  # no discordant pairs: no evidence either way
    assert mcnemar_exact(3, 0) == 0.25  # 2 * 1/8
    assert mcnemar_exact(2, 1) == 1.0  # 2 * (1 + 3) / 8 = 1


@pytest.mark.parametrize("b, c", [(1, 19), (3, 0), (7, 2), (40, 61), (400, 600)])
def test_mcnemar_is_symmetric(b, c):
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_mcnemar_large_counts_stay_finite():
    # 2 ** 1000 overflows a float; exact fractions keep the small tail.
    p = mcnemar_exact(400, 600)
    assert math.isfinite(p)
    assert 0.0 < p < 1e-8


@pytest.mark.parametrize("b, c", [(-1, 3), (2.0, 3), (True, 1)])
def test_mcnemar_rejects_non_counts(b, c):
    with pytest.raises(ValueError):
        mcnemar_exact(b, c)


# ---------------------------------------------------------------- contingency


def test_contingency_counts_only_shared_ids_and_invalid_as_not_correct():
    a = {"q1": "correct", "q2": "correct", "q3": "wrong", "q4": "invalid", "q5": "correct", "only_a": "correct"}
    b = {"q1": "correct", "q2": "invalid", "q3": "correct", "q4": "wrong", "q5": "wrong", "only_b": "wrong"}
    table = contingency(a, b)
    assert table == Contingency(both_correct=1, a_only=2, b_only=1, neither=1)
    assert table.n == 5
    assert table.p_value() == mcnemar_exact(2, 1)


def test_contingency_markdown_layout():
    text = Contingency(12, 19, 1, 5).to_markdown("Swallow", "GPT-4")
    lines = text.splitlines()
    assert lines[0] == "| | GPT-4 correct | GPT-4 wrong |"
    assert lines[2] == "| **Swallow correct** | 12 | 19 |"
    assert lines[3] == "| **Swallow wrong** | 1 | 5 |"


# ---------------------------------------------------------------- Table 2


def _metrics(correct: int, invalid: int, wrong: int) -> dict:
    n = correct + invalid + wrong
    return {"n": n, "correct": correct, "invalid": invalid, "wrong": wrong, "points": correct, "points_total": n}


def _grid() -> list[CellOutcome]:
    return [
        CellOutcome(
            "llama2-none-A", "1-1 (A)", "Llama 2 70B", "none", "A", status="done", metrics=_metrics(53, 9, 215)
        ),
        CellOutcome(
            "llama2-qlora-A",
            "1-2 (A)",
            "Llama 2 70B",
            "qlora",
            "A",
            reference="llama2-none-A",
            status="done",
            metrics=_metrics(89, 14, 174),
        ),
        CellOutcome(
            "swallow-none-A",
            "2-1 (A)",
            "Swallow 70B",
            "none",
            "A",
            reference="llama2-none-A",
            status="done",
            metrics=_metrics(102, 2, 173),
            natural_reference=False,
        ),
        CellOutcome(
            "swallow-qlora-A",
            "2-2 (A)",
            "Swallow 70B",
            "qlora",
            "A",
            reference="swallow-none-A",
            status="failed",
            error="CUDA out of memory",
        ),
        CellOutcome(
            "swallow-lora-A",
            "2-3 (A)",
            "Swallow 70B",
            "lora",
            "A",
            reference="swallow-qlora-A",
            status="done",
            metrics=_metrics(99, 3, 175),
        ),
        CellOutcome(
            "gpt4-A",
            "4-1 (A)",
            "GPT-4",
            "predictions",
            "A",
            reference="no-such-cell",
            status="done",
            metrics=_metrics(150, 0, 127),
        ),
        CellOutcome("swallow-qlora-B", "2-2 (B)", "Swallow 70B", "qlora", "B", reference="swallow-none-A"),
    ]


def test_table2_reproduces_paper_rows():
    rows = {row["label"]: row for row in table2_rows(_grid())}
    base, tuned, swallow = rows["1-1 (A)"], rows["1-2 (A)"], rows["2-1 (A)"]
    assert (base["correct"], base["invalid"], base["wrong"], base["n"]) == (53, 9, 215, 277)
    assert f"{base['accuracy']:.3f}" == "0.191"
    assert base["improvement"] is None and base["improvement_text"] == "-"
    assert f"{tuned['accuracy']:.3f}" == "0.321"
    assert math.isclose(tuned["improvement"], (89 - 53) / 277)
    assert tuned["improvement_text"] == "+0.130" and tuned["reference"] == "llama2-none-A"
    assert f"{swallow['accuracy']:.3f}" == "0.368"
    # Not the natural base: the paper names the reference by its cell number in front.
    assert swallow["improvement_text"] == "(#1-1) +0.177"


def test_table2_skips_unfinished_cells_and_flags_missing_references():
    rows = table2_rows(_grid())
    assert [row["cell"] for row in rows] == [
        "llama2-none-A",
        "llama2-qlora-A",
        "swallow-none-A",
        "swallow-lora-A",
        "gpt4-A",
    ]
    by_cell = {row["cell"]: row for row in rows}
    assert by_cell["swallow-lora-A"]["improvement"] is None
    assert by_cell["swallow-lora-A"]["improvement_text"] == "- (reference swallow-qlora-A missing)"
    assert by_cell["gpt4-A"]["improvement_text"] == "- (reference no-such-cell missing)"


def test_table2_negative_improvement_and_metrics_accuracy_preferred():
    cells = [
        CellOutcome("base", status="done", metrics={**_metrics(50, 0, 50), "accuracy": 0.5}),
        CellOutcome("worse", status="done", reference="base", metrics={**_metrics(49, 1, 50), "accuracy": 0.49}),
    ]
    rows = table2_rows(cells)
    assert rows[0]["label"] == "base"  # no label: the name stands in
    assert rows[1]["improvement_text"] == "-0.010"


def test_duplicate_cell_names_are_rejected():
    with pytest.raises(ValueError, match="dup"):
        table2_rows([CellOutcome("dup"), CellOutcome("dup")])


def test_write_table2_markdown_and_csv(tmp_path):
    md_path, csv_path = write_table2(table2_rows(_grid()), tmp_path)
    md = md_path.read_text(encoding="utf-8").splitlines()
    assert md[0] == (
        "| Cell | Model | Tuning | Prompt | Correct | Invalid | Wrong | Accuracy | 95% interval | Improvement "
        "| Strict invalid | Strict accuracy |"
    )
    # Metrics written before the strict reading existed show "-" in its columns.
    assert "| 2-1 (A) | Swallow 70B | none | A | 102 | 2 | 173 | 0.368 | [0.314, 0.426] | (#1-1) +0.177 | - | - |" in md
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["improvement"] == "" and rows[0]["reference"] == ""
    assert math.isclose(float(rows[1]["accuracy"]), 89 / 277)


def test_table2_carries_the_strict_reading_beside_the_paper_one(tmp_path):
    strict = {"correct": 80, "invalid": 40, "wrong": 157, "accuracy": 80 / 277, "n": 277}
    cells = [
        CellOutcome(
            "swallow-A",
            label="3-1 (A)",
            model="Swallow 70B",
            tuning="none",
            prompt="A",
            status="done",
            metrics={**_metrics(102, 2, 173), "strict": strict},
        )
    ]
    rows = table2_rows(cells)
    assert rows[0]["strict_invalid"] == 40 and math.isclose(rows[0]["strict_accuracy"], 80 / 277)
    md_path, csv_path = write_table2(rows, tmp_path)
    assert (
        "| 3-1 (A) | Swallow 70B | none | A | 102 | 2 | 173 | 0.368 | [0.314, 0.426] | - | 40 | 0.289 |"
        in md_path.read_text()
    )
    with csv_path.open(newline="", encoding="utf-8") as handle:
        assert list(csv.DictReader(handle))[0]["strict_correct"] == "80"


def test_print_table2_uses_rich_console(capsys):
    print_table2(table2_rows(_grid()))
    out = capsys.readouterr().out
    assert "Table 2" in out and "0.321" in out


# ---------------------------------------------------------------- predictions and the full report


def _write_predictions(path: Path, statuses: dict[str, str], torn_tail: bool = False) -> Path:
    lines = [json.dumps({"id": qid, "status": status, "output": "..."}) for qid, status in statuses.items()]
    text = "\n".join(lines) + "\n" + ('{"id": "q-torn", "sta' if torn_tail else "")
    path.write_text(text, encoding="utf-8")
    return path


def _paper_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Predictions giving the paper's Swallow vs GPT-4 table: 12, 19 / 1, 5 (plus unpaired ids)."""
    a, b = {}, {}
    plan = [("correct", "correct")] * 12 + [("correct", "wrong")] * 10 + [("correct", "invalid")] * 9
    plan += [("invalid", "correct")] + [("wrong", "wrong")] * 3 + [("invalid", "wrong")] * 2
    for i, (sa, sb) in enumerate(plan):
        a[f"q{i:03d}"], b[f"q{i:03d}"] = sa, sb
    a["only-a"], b["only-b"] = "correct", "correct"
    return (_write_predictions(tmp_path / "a.jsonl", a, torn_tail=True), _write_predictions(tmp_path / "b.jsonl", b))


def test_read_statuses_forgives_only_a_torn_last_line(tmp_path):
    path = _write_predictions(tmp_path / "p.jsonl", {"q1": "correct", "q2": "wrong"}, torn_tail=True)
    assert read_statuses(path) == {"q1": "correct", "q2": "wrong"}
    path.write_text('{"id": "q1", "status": "correct"}\nnot json\n{"id": "q2", "status": "wrong"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_statuses(path)


def test_write_report_end_to_end(tmp_path):
    cells = _grid()
    pred_a, pred_b = _paper_pair(tmp_path)
    by_name = {cell.name: cell for cell in cells}
    by_name["swallow-none-A"].predictions_path = pred_a
    by_name["gpt4-A"].predictions_path = pred_b
    pairs = [("swallow-none-A", "gpt4-A"), ("swallow-qlora-A", "gpt4-A"), ("llama2-none-A", "gpt4-A")]
    out = tmp_path / "report"

    summary = write_report(cells, pairs, out, title="Sweep: 70B on IgakuQA")

    for name in ("table2.md", "table2.csv", "figure2.png", "table3.md", "report.md", "summary.json"):
        assert (out / name).is_file(), name
    with (out / "table2.csv").open(newline="", encoding="utf-8") as handle:
        rows = {row["cell"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"llama2-none-A", "llama2-qlora-A", "swallow-none-A", "swallow-lora-A", "gpt4-A"}
    assert (
        rows["llama2-qlora-A"]["correct"],
        rows["llama2-qlora-A"]["invalid"],
        rows["llama2-qlora-A"]["wrong"],
        rows["llama2-qlora-A"]["n"],
    ) == ("89", "14", "174", "277")
    assert math.isclose(float(rows["swallow-none-A"]["improvement"]), (102 - 53) / 277)

    table3 = (out / "table3.md").read_text(encoding="utf-8")
    assert "| **2-1 (A) correct** | 12 | 19 |" in table3
    assert "| **2-1 (A) wrong** | 1 | 5 |" in table3
    assert "p = 4.005e-05" in table3
    # One cell failed, the other has no predictions: both pairs are listed, not compared.
    assert "swallow-qlora-A vs gpt4-A: swallow-qlora-A: failed (CUDA out of memory)" in table3
    assert "llama2-none-A vs gpt4-A: llama2-none-A: no predictions file" in table3

    png = (out / "figure2.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1024

    report = (out / "report.md").read_text(encoding="utf-8")
    assert report.startswith("# Sweep: 70B on IgakuQA")
    assert "2-2 (A) (failed): CUDA out of memory" in report and "2-2 (B) (pending)" in report
    assert "![Figure 2](figure2.png)" in report and "### 2-1 (A) vs 4-1 (A)" in report

    saved = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert saved["best"] == summary["best"] == "gpt4-A"
    assert [f["cell"] for f in saved["failed"]] == ["swallow-qlora-A"]
    pair = saved["pairs"][0]
    assert (pair["both_correct"], pair["a_only"], pair["b_only"], pair["neither"]) == (12, 19, 1, 5)
    assert math.isclose(pair["p_value"], mcnemar_exact(19, 1), rel_tol=1e-12)
    assert len(saved["skipped_pairs"]) == 2
    assert Path(summary["files"]["figure2"]) == out / "figure2.png"


def test_figure2_without_finished_cells_is_still_a_png(tmp_path):
    path = plot_figure2([CellOutcome("a", status="failed", error="boom")], tmp_path / "fig.png")
    assert path.read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------- intervals (issue 21)


def test_table2_rows_carry_wilson_intervals_for_both_readings(tmp_path):
    strict = {"correct": 80, "invalid": 40, "wrong": 157, "accuracy": 80 / 277, "n": 277}
    cells = [CellOutcome("s", label="3-1 (A)", status="done", metrics={**_metrics(102, 2, 173), "strict": strict})]
    row = table2_rows(cells)[0]
    paper, strict_interval = wilson(102, 277), wilson(80, 277)
    assert (row["accuracy_low"], row["accuracy_high"]) == (paper.low, paper.high)
    assert row["accuracy_se"] == pytest.approx(math.sqrt(102 / 277 * 175 / 277 / 277))
    assert (row["strict_accuracy_low"], row["strict_accuracy_high"]) == (strict_interval.low, strict_interval.high)
    _, csv_path = write_table2([row], tmp_path)
    with csv_path.open(newline="", encoding="utf-8") as handle:
        saved = list(csv.DictReader(handle))[0]
    assert float(saved["accuracy_low"]) == pytest.approx(0.3136, abs=1e-4)  # worked by hand: 0.370033 - 0.056440
    assert float(saved["accuracy_high"]) == pytest.approx(0.4265, abs=1e-4)


def test_improvement_over_the_reference_gets_a_paired_interval_when_both_predictions_exist(tmp_path):
    base, tuned = {}, {}
    for i in range(60):  # the tuned cell gains 3 questions and loses 2: within noise
        base[f"q{i}"] = "correct" if i % 2 else "wrong"
        tuned[f"q{i}"] = base[f"q{i}"]
    for i in (0, 2, 4):
        tuned[f"q{i}"] = "correct"
    for i in (1, 3):
        tuned[f"q{i}"] = "invalid"
    cells = [
        CellOutcome(
            "base",
            label="1-1",
            status="done",
            metrics=_metrics(30, 0, 30),
            predictions_path=_write_predictions(tmp_path / "base.jsonl", base),
        ),
        CellOutcome(
            "tuned",
            label="1-2",
            reference="base",
            status="done",
            metrics=_metrics(31, 2, 27),
            predictions_path=_write_predictions(tmp_path / "tuned.jsonl", tuned),
        ),
    ]
    row = table2_rows(cells)[1]
    expected = paired_difference(correct_map(base), correct_map(tuned))
    assert (row["improvement_low"], row["improvement_high"]) == (expected.low, expected.high)
    assert row["improvement_low"] < 0 < row["improvement_high"]
    assert row["improvement_verdict"] == "within noise"
    assert row["improvement_text"] == f"+0.017 [{expected.low:+.3f}, {expected.high:+.3f}] within noise"


def test_table3_gives_the_paired_difference_and_says_when_it_is_beyond_noise(tmp_path):
    pred_a, pred_b = _paper_pair(tmp_path)
    cells = [
        CellOutcome("a", label="2-1 (A)", status="done", metrics=_metrics(31, 0, 6), predictions_path=pred_a),
        CellOutcome("b", label="4-1 (A)", status="done", metrics=_metrics(13, 0, 24), predictions_path=pred_b),
    ]
    compared, _ = compare_pairs([("a", "b")], {c.name: c for c in cells})
    pair = compared[0]
    # 37 shared questions: B - A = (1 - 19) / 37 on the discordant ones
    assert pair["difference"] == pytest.approx(-18 / 37)
    assert pair["difference_high"] < 0 and not pair["within_noise"]
    assert "so 2-1 (A) is better beyond noise (McNemar p = 4.005e-05)" in pair["difference_text"]
    assert "Paired bootstrap (95%, questions resampled): 4-1 (A) - 2-1 (A) = -0.486" in table3_markdown(compared, [])


# ---------------------------------------------------------------- seeds (issue 21)


def _seeded_grid() -> list[CellOutcome]:
    cells = [
        CellOutcome("base", label="1-1", model="Llama 2", tuning="none", status="done", metrics=_metrics(53, 40, 184))
    ]
    for seed, correct in ((1, 80), (2, 89), (3, 95)):
        cells.append(
            CellOutcome(
                f"tuned__seed{seed}",
                label="1-2",
                model="Llama 2",
                tuning="qlora",
                reference="base",
                status="done",
                metrics=_metrics(correct, 10, 277 - 10 - correct),
                base="tuned",
                seed=seed,
            )
        )
    return cells


def test_seeds_fold_into_mean_and_sample_standard_deviation_per_cell():
    rows = table2_rows(_seeded_grid())
    assert [row["label"] for row in rows] == ["1-1", "1-2 seed 1", "1-2 seed 2", "1-2 seed 3"]
    folded = {row["cell"]: row for row in seed_rows(rows)}
    tuned = folded["tuned"]
    values = [80 / 277, 89 / 277, 95 / 277]
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    assert tuned["seeds"] == [1, 2, 3] and tuned["n_seeds"] == 3
    assert tuned["accuracy_mean"] == pytest.approx(mean) and tuned["accuracy_sd"] == pytest.approx(sd)
    assert tuned["accuracy_per_seed"] == pytest.approx(values)
    assert tuned["improvement_mean"] == pytest.approx(mean - 53 / 277)
    assert folded["base"]["n_seeds"] == 1 and folded["base"]["accuracy_sd"] == 0.0


def test_seeded_table2_shows_mean_sd_and_every_seed_in_md_csv_and_figure(tmp_path):
    summary = write_report(_seeded_grid(), [], tmp_path, title="seeds")
    md = (tmp_path / "table2.md").read_text(encoding="utf-8")
    assert "| 1-2 | Llama 2 | qlora |  | 3 | 0.318 ± 0.027 | 0.289 (s1), 0.321 (s2), 0.343 (s3) |" in md
    assert "### Every seed" in md and "| 1-2 seed 2 |" in md
    with (tmp_path / "table2_seeds.csv").open(newline="", encoding="utf-8") as handle:
        saved = {row["cell"]: row for row in csv.DictReader(handle)}
    assert saved["tuned"]["seeds"] == "1 2 3" and float(saved["tuned"]["accuracy_sd"]) == pytest.approx(
        0.0273, abs=1e-4
    )
    assert [row["cell"] for row in summary["seed_rows"]] == ["base", "tuned"]
    assert (tmp_path / "figure2.png").read_bytes().startswith(b"\x89PNG")
