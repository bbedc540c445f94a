"""The contamination audit and calibration where results are made: evaluate.py's predictions, metrics,
console and W&B summary; contamination.py on its own; Table 2's ECE and Brier columns.

Training files here are planted copies of bundled sample-exam questions (one Japanese, one English),
written as Alpaca records with their choices in another order, beside unrelated records."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import pytest

from conftest import cli
from medtune.errors import ConfigError
from medtune.reporting.calibration import softmax
from medtune.reporting.sweep_report import CellOutcome, table2_csv, table2_markdown, table2_rows
from medtune.tracking.offline import find_offline_runs, read_offline_run

PLANTED_JA = "SJA-03"  # the 3rd question of the sample exam: inside exam.max_questions=6
PLANTED_EN = "SEN-01"
PNG = b"\x89PNG\r\n\x1a\n"


def sample_question(qid: str) -> dict:
    language = "ja" if qid.startswith("SJA") else "en"
    text = (resources.files("medtune") / "resources" / "sample" / f"exam_{language}.jsonl").read_text("utf-8")
    return next(q for q in map(json.loads, text.splitlines()) if q["problem_id"] == qid)


def planted_file(path: Path, qids: list[str]) -> Path:
    """An instruction file: an unrelated record on line 1, then a copy of each question (line 2, 3, ...)."""
    records = [{"instruction": "Explain how insulin lowers blood glucose.", "input": "", "output": "Uptake."}]
    for qid in qids:
        question = sample_question(qid)
        choices = list(reversed(question["choices"]))  # another order: still an exact copy
        records.append(
            {
                "instruction": question["problem_text"],
                "input": "\n".join(f"{'abcde'[i]}. {c}" for i, c in enumerate(choices)),
                "output": question["explanation"],
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def rows_of(path: Path) -> dict[str, dict]:
    return {row["id"]: row for row in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def flat(text: str) -> str:
    """Console text with rich's line wrapping undone."""
    return " ".join(text.split())


def test_evaluate_flags_a_planted_question_splits_accuracy_and_calibrates_loglik(run_eval, tmp_path, capsys):
    planted = planted_file(tmp_path / "data" / "train.jsonl", [PLANTED_JA])
    metrics = run_eval(["eval=loglik", "exam.max_questions=6", f"contamination.files=[{planted}]"], name="audited")
    out = tmp_path / "audited"
    rows = rows_of(out / "predictions.jsonl")
    assert len(rows) == 6
    assert rows[PLANTED_JA]["contamination"] == "exact"
    assert rows[PLANTED_JA]["closest_training_record"]["source"] == f"{planted}:2"
    assert rows[PLANTED_JA]["contamination_evidence"]["ngram_matches"] >= 1
    assert {qid for qid, row in rows.items() if row["contamination"] != "clean"} == {PLANTED_JA}

    block = metrics["contamination"]
    assert block["questions"] == 6 and block["by_flag"]["exact"] == 1 and block["warn"]
    split = block["accuracy"]
    assert (split["all"]["n"], split["clean"]["n"], split["contaminated"]["n"]) == (6, 5, 1)
    assert split["contaminated"]["correct"] == int(rows[PLANTED_JA]["status"] == "correct")
    assert split["clean"]["correct"] == sum(r["status"] == "correct" for q, r in rows.items() if q != PLANTED_JA)
    interval = split["clean"]["accuracy_interval"]
    assert interval["method"] == "wilson" and interval["low"] <= split["clean"]["accuracy"] <= interval["high"]
    assert block["strict_accuracy"]["clean"]["n"] == 5
    assert block["warning"].startswith("CONTAMINATION: 1 of the 6 questions of exam=sample")
    assert PLANTED_JA in block["warning"]
    assert json.loads((out / "metrics.json").read_text())["contamination"]["warning"] == block["warning"]

    # loglik: the confidence of each answer is the softmax of its choices' log-probabilities
    calibration = metrics["calibration"]
    assert calibration["source"] == "loglik" and calibration["n"] == 6 and len(calibration["bins"]) == 15
    confidences = [max(softmax(r["choice_logprobs"])) for r in rows.values()]
    brier = sum((c - (r["status"] == "correct")) ** 2 for c, r in zip(confidences, rows.values())) / 6
    assert math.isclose(calibration["brier"], brier, rel_tol=1e-9)
    assert 0.0 <= calibration["ece"] <= 1.0
    assert (out / "reliability.png").read_bytes()[:8] == PNG

    printed = flat(capsys.readouterr().out)
    assert "CONTAMINATION: 1 of the 6 questions of exam=sample" in printed
    assert "contaminated │ 1 │" in printed  # the all / clean / contaminated table
    assert (
        f"calibration: ECE {calibration['ece']:.3f}, Brier {calibration['brier']:.3f} (6 questions, loglik)" in printed
    )

    summary = read_offline_run(find_offline_runs(out)[0]).summary
    assert summary["exam/contamination/by_flag/exact"] == 1
    assert summary["exam/contamination/accuracy/clean/n"] == 5
    assert summary["exam/contamination/warning"] == block["warning"]
    assert summary["exam/calibration/ece"] == pytest.approx(calibration["ece"])
    assert summary["exam/calibration/brier"] == pytest.approx(calibration["brier"])
    assert "exam/calibration/bins" not in summary  # the PNG shows the bins
    assert any(key.startswith("exam/reliability") for key in summary)  # the image


def test_votes_over_shuffled_choices_calibrate_by_their_agreement(run_eval, tmp_path):
    metrics = run_eval(["eval=loglik", "eval.shuffles=3", "exam.max_questions=4", "logger=none"], name="votes")
    rows = rows_of(tmp_path / "votes" / "predictions.jsonl")
    calibration = metrics["calibration"]
    assert calibration["source"] == "votes" and calibration["n"] == 4
    mean = sum(r["agreement"] for r in rows.values()) / 4
    assert math.isclose(calibration["mean_confidence"], mean, rel_tol=1e-9)
    assert (tmp_path / "votes" / "reliability.png").is_file()


def test_greedy_answers_have_no_calibration_and_enabled_false_audits_nothing(run_eval, tmp_path, capsys):
    planted = planted_file(tmp_path / "train.jsonl", [PLANTED_JA])
    metrics = run_eval(
        [
            "eval.max_new_tokens=4",
            "exam.max_questions=3",
            "logger=none",
            f"contamination.files=[{planted}]",
            "contamination.enabled=false",
        ],
        name="greedy",
    )
    assert "calibration" not in metrics and "contamination" not in metrics
    assert not (tmp_path / "greedy" / "reliability.png").exists()
    assert all("contamination" not in row for row in rows_of(tmp_path / "greedy" / "predictions.jsonl").values())
    printed = flat(capsys.readouterr().out)
    assert "calibration: none (greedy answers carry no confidence)" in printed
    assert "contamination audit" not in printed


def test_out_of_range_settings_and_a_missing_file_are_refused_together(compose, tmp_path, tiny_cache):
    from medtune.jobs import EVALUATE

    missing = tmp_path / "missing.jsonl"
    cfg = compose(
        [
            f"paths.cache_dir={tiny_cache}",
            "contamination.warn_fraction=1.5",
            "contamination.ngram_words=0",
            f"contamination.files=[{missing}]",
        ],
        config_name="evaluate",
    )
    with pytest.raises(ConfigError) as caught:
        EVALUATE.validate(cfg)
    text = str(caught.value)
    assert "contamination.warn_fraction=1.5: a fraction" in text
    assert "contamination.ngram_words=0: must be 1 or more" in text
    assert f"contamination.files: {missing} does not exist" in text


def test_contamination_script_flags_planted_japanese_and_english_copies(tmp_path):
    planted = planted_file(tmp_path / "data" / "train.jsonl", [PLANTED_JA, PLANTED_EN])
    notes = tmp_path / "data" / "notes.md"
    notes.write_text("# Notes\n\nThe thyroid makes hormones.\n", encoding="utf-8")
    out = tmp_path / "audit"
    done = cli("contamination.py", f"contamination.files=[{tmp_path / 'data'}]", f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = rows_of(out / "contamination.jsonl")
    assert len(rows) == 40
    flagged = {qid: row for qid, row in rows.items() if row["flag"] != "clean"}
    assert set(flagged) == {PLANTED_JA, PLANTED_EN}
    assert flagged[PLANTED_JA]["flag"] == flagged[PLANTED_EN]["flag"] == "exact"
    assert flagged[PLANTED_JA]["closest_training_record"]["source"] == f"{planted}:2"
    assert flagged[PLANTED_EN]["closest_training_record"]["source"] == f"{planted}:3"
    assert flagged[PLANTED_EN]["evidence"]["similarity"] > 90
    summary = json.loads((out / "contamination.json").read_text())
    assert summary["by_flag"]["exact"] == 2 and summary["contaminated"] == 2 and summary["questions"] == 40
    assert summary["warning"].startswith("CONTAMINATION: 2 of the 40 questions of exam=sample")
    printed = flat(done.stdout)
    assert "CONTAMINATION: 2 of the 40 questions" in printed and "contamination.jsonl names" in printed
    assert PLANTED_JA in printed and PLANTED_EN in printed  # the flagged questions' table


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["contamination.files=[{missing}]"], "contamination.files: {missing} does not exist"),
        ([], "nothing to audit: give the training data with contamination.files="),
    ],
)
def test_contamination_script_names_a_missing_file_or_the_missing_sources(tmp_path, args, phrase):
    missing = tmp_path / "no" / "train.jsonl"
    done = cli("contamination.py", *(a.format(missing=missing) for a in args), f"hydra.run.dir={tmp_path / 'out'}")
    assert done.returncode == 2
    assert phrase.format(missing=missing) in flat(done.stderr)
    assert not (tmp_path / "out" / "contamination.json").exists()


def test_table2_gets_ece_and_brier_columns_where_metrics_have_them():
    def metrics(correct: int, calibration: dict | None) -> dict:
        found = {"correct": correct, "invalid": 0, "wrong": 40 - correct, "n": 40, "accuracy": correct / 40}
        return {**found, "calibration": calibration} if calibration else found

    cells = [
        CellOutcome("loglik", "1-1", "tiny", "none", "A", status="done", metrics=metrics(10, None)),
        CellOutcome(
            "voted",
            "1-2",
            "tiny",
            "lora",
            "A",
            status="done",
            metrics=metrics(12, {"ece": 0.1234, "brier": 0.2345, "source": "votes", "n": 40}),
        ),
    ]
    rows = table2_rows(cells)
    md = table2_markdown(rows).splitlines()
    assert md[0].endswith("| Strict invalid | Strict accuracy | ECE | Brier |")
    assert md[1].count("---:") == 10
    assert md[2].endswith("| - | - | - | - |") and md[3].endswith("| 0.123 | 0.234 |")
    csv_lines = table2_csv(rows).splitlines()
    assert csv_lines[0].endswith(",ece,brier,calibration_source")
    assert csv_lines[2].endswith(",0.1234,0.2345,votes") and csv_lines[1].endswith(",,,")
    plain = table2_markdown(table2_rows(cells[:1])).splitlines()[0]
    assert plain.endswith("| Strict invalid | Strict accuracy |")  # no calibrated cell: no such columns


@pytest.mark.slow
def test_a_training_runs_own_data_is_audited_by_evaluate_and_by_contamination_py(run_train, run_eval, tmp_path, capsys):
    # dataset=sample (the suite's default) holds the sample exam itself: every question is a copy
    trained = run_train(["train.max_steps=2", "train.eval_steps=0", "exam_eval.enabled=false"], name="trained")
    metrics = run_eval(
        [f"run={trained.run_dir}", "eval=loglik", "exam.max_questions=5", "logger=none"], name="eval-of-run"
    )
    block = metrics["contamination"]
    assert block["by_flag"]["exact"] == 5 and block["accuracy"]["clean"]["n"] == 0
    assert block["accuracy"]["clean"]["accuracy"] is None and block["warning"]
    out = trained.run_dir / "eval" / f"sample_{metrics['prompt']}_loglik"
    rows = rows_of(out / "predictions.jsonl")
    assert all(row["closest_training_record"]["source"].split("/")[-1].startswith("exam_") for row in rows.values())

    audit = tmp_path / "audit"
    done = cli(
        "contamination.py", f"run={trained.run_dir}", "contamination.worked_examples=false", f"hydra.run.dir={audit}"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((audit / "contamination.json").read_text())
    assert summary["contaminated"] == summary["questions"] == 40
    assert summary["sources"] == [f"the training data of run={trained.run_dir}"]

    # Evaluated where its training data is not (moved, another machine): a warning, no audit, the answers
    config = trained.run_dir / "config.yaml"
    dataset = "dataset:\n  name: sample\n  path: null"
    assert dataset in config.read_text()
    config.write_text(
        config.read_text().replace(dataset, f"dataset:\n  name: sample\n  path: {tmp_path / 'gone.jsonl'}")
    )
    capsys.readouterr()
    moved = run_eval(
        [f"run={trained.run_dir}", "eval=loglik", "exam.max_questions=2", "logger=none", "overwrite=true"],
        name="eval-moved",
    )
    assert "contamination" not in moved and moved["n"] == 2
    assert f"run={trained.run_dir}'s training data cannot be read here" in flat(capsys.readouterr().out)
