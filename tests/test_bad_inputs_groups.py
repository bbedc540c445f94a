"""Bad inputs about config groups, through the real entry scripts (they only compose configs: fast).

Each script's `--help` lists only the groups and top-level keys it accepts (medtune.hydra_help); an
override of another script's group or key says whose it is and the fix (medtune.hydra_messages),
exit 2, before any run dir exists; the sweep's unknown-key message lists a cell's real keys, and a
list value's message shows the quoting a list of overrides needs.
"""

from __future__ import annotations

import re

import pytest

from conftest import cli

# Each script's groups, in the order of its primary config's defaults list (conf/<script>.yaml).
GROUPS = {
    "train.py": [
        "model",
        "adapter",
        "dataset",
        "prompt",
        "hardware",
        "logger",
        "exam",
        "paths",
        "schedule",
        "experiment",
    ],
    "evaluate.py": ["model", "adapter", "prompt", "hardware", "logger", "exam", "eval", "paths"],
    "judge.py": ["model", "prompt", "hardware", "logger", "paths"],
    "generate_qa.py": ["model", "hardware", "logger", "paths", "experiment"],
    "sweep.py": ["logger", "sweep", "paths"],
    "contamination.py": ["logger", "exam", "paths"],
}
# A few of each script's top-level keys as --help shows them (a value, or a section's key names).
KEYS = {
    "train.py": ["seed: 42", "train.*: max_steps, epochs, learning_rate", "exam_eval.*: enabled, every_steps"],
    "evaluate.py": ["run: null", "predictions: null", "eval.*: mode, backend, endpoint.*, num_shots"],
    "judge.py": ["optimized_metric: judge/b_total", "judge.*: questions, categories"],
    "generate_qa.py": ["dry_run: false", "qa.*: documents"],
    "sweep.py": ["summarize: null", "sweep.*: name, description", "cells.*, systems.*"],
    "contamination.py": ["run: null", "show: 10", "contamination.*: enabled, files, worked_examples"],
}
GROUP_LINE = re.compile(r"^(\S+) \(now [^)]*\): ", re.MULTILINE)


@pytest.mark.parametrize("script", [s if s == "train.py" else pytest.param(s, marks=pytest.mark.slow) for s in GROUPS])
def test_help_lists_only_the_scripts_own_groups_then_its_top_level_keys(script):
    done = cli(script, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    groups_at, keys_at = text.index("== Config groups (group=option) =="), text.index("== Top-level keys")
    assert GROUP_LINE.findall(text[groups_at:keys_at]) == GROUPS[script]
    assert not GROUP_LINE.findall(text[keys_at:])
    for key in KEYS[script]:
        assert key in text[keys_at:], key
    others = {g for groups in GROUPS.values() for g in groups} - set(GROUPS[script])
    assert not [g for g in others if re.search(rf"^{g} \(now", text, re.MULTILINE)]
    assert f"python {script} --cfg job shows every key with its value" in text


@pytest.mark.slow
def test_help_shows_the_chosen_option_and_keeps_the_options_of_each_group():
    text = cli("evaluate.py", "exam=igakuqa", "--help").stdout
    assert "exam (now igakuqa): igakuqa, jjsimqa, jsonl, medqa_en, sample, sample_en" in text
    assert "eval (now generate): endpoint, generate, loglik, vi_sampling" in text
    assert "evaluate.py exam=igakuqa exam.years=[2018] prompt=alpaca_cot" in text  # the primary config's examples


OTHER_SCRIPTS = [
    (
        ["evaluate.py", "dataset=sample"],
        [
            "dataset=sample: `dataset` is a config group of train.py, not evaluate.py",
            "evaluate.py asks an exam's questions: pick them with exam=<option>",
            "Leave it out of the evaluate.py command, or run it with train.py: python train.py dataset=sample.",
        ],
    ),
    (
        ["evaluate.py", "+dataset=sample"],
        ["+dataset=sample: `dataset` is a config group of train.py, not evaluate.py"],
    ),
    (
        ["train.py", "eval.backend=endpoint"],
        [
            "eval.backend=endpoint: `eval` is a config group of evaluate.py, not train.py",
            "train.py's exam check during training is set with exam_eval.* (enabled, every_steps, mode",
            "run it with evaluate.py: python evaluate.py eval.backend=endpoint.",
        ],
    ),
    (
        ["train.py", "judge.swap=false"],
        [
            "judge.swap=false: `judge` is a key of judge.py's config, not train.py's",
            "train.py's top-level keys are: task, task_name, seed",
            "python judge.py judge.swap=false.",
        ],
    ),
    (
        ["evaluate.py", "sweep=smoke"],
        [
            "sweep=smoke: `sweep` is a config group of sweep.py, not evaluate.py",
            "evaluate.py's groups are: model, adapter, prompt, hardware, logger, exam, eval, paths.",
            "python sweep.py sweep=smoke.",
        ],
    ),
    (
        ["judge.py", "exam=sample"],
        [
            "exam=sample: `exam` is a config group of train.py, evaluate.py and contamination.py, not judge.py",
            "judge.py's questions are open ones, given with judge.questions=<file>",
            "run it with train.py, evaluate.py or contamination.py: python train.py exam=sample.",
        ],
    ),
    (
        ["evaluate.py", "experiment=swallow70b_untuned"],
        [
            "`experiment` is a config group of train.py and generate_qa.py, not evaluate.py",
            "Its options set keys of the whole config: add it here with a leading + (+experiment=swallow70b_untuned)",
        ],
    ),
    (
        ["sweep.py", "model=tiny"],
        [
            "model=tiny: `model` is a config group of train.py, evaluate.py, generate_qa.py and judge.py, not sweep.py",
            """A sweep gives it to its cells' train.py and evaluate.py with 'sweep.extra_train=["model=tiny"]' or """
            """'sweep.extra_evaluate=["model=tiny"]'.""",
        ],
    ),
]


@pytest.mark.parametrize("args, phrases", OTHER_SCRIPTS, ids=[" ".join(a) for a, _ in OTHER_SCRIPTS])
def test_an_override_of_another_scripts_group_says_whose_it_is(tmp_path, args, phrases):
    out = tmp_path / "outputs"
    done = cli(*args, f"paths.output_root={out}")
    assert done.returncode == 2, done.stderr[-2000:]
    for phrase in phrases:
        assert phrase in done.stderr, f"{phrase!r} not in:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    assert not out.exists()  # refused while composing: no run dir


SWEEP_KEYS = [
    (
        ['sweep.cells.tiny-none-A.evalute=["prompt=alpaca_cot"]'],
        [
            "sweep.cells.tiny-none-A.evalute is not a key of sweep.cells.tiny-none-A (a CellConfig); its keys are: "
            "label, model, tuning, prompt, train, evaluate, reference, natural_reference.",
            """Did you mean 'sweep.cells.tiny-none-A.evaluate=["prompt=alpaca_cot"]'?""",
        ],
    ),
    (
        ["sweep.cells.tiny-none-A.evaluate=[prompt=alpaca_cot]"],
        [
            "'sweep.cells.tiny-none-A.evaluate=[prompt=alpaca_cot]' cannot be parsed",
            "a list of overrides is typed with each item in double quotes and the whole override in single quotes, "
            """e.g. 'sweep.cells.tiny-none-A.evaluate=["prompt=alpaca_cot"]'.""",
        ],
    ),
    (
        ["sweep.cells.tiny-none-A.evalute=[prompt=alpaca_cot]"],
        [
            """e.g. 'sweep.cells.tiny-none-A.evalute=["prompt=alpaca_cot"]'. """
            "Also, sweep.cells.tiny-none-A.evalute is not a key of sweep.cells.tiny-none-A (a CellConfig); its keys "
            "are: label, model, tuning, prompt, train, evaluate, reference, natural_reference. Did you mean "
            "sweep.cells.tiny-none-A.evaluate?",
        ],
    ),
    (
        ['sweep.cells.tiny-none-A.train="adapter=lora"'],
        ["""sweep.cells.tiny-none-A.train is a list: 'sweep.cells.tiny-none-A.train=["adapter=lora"]'"""],
    ),
    (
        ["sweep.extra_train=dataset.path=/data/usmle_jp.jsonl"],
        ["""e.g. 'sweep.extra_train=["dataset.path=/data/usmle_jp.jsonl"]'."""],
    ),
]


@pytest.mark.parametrize("args, phrases", SWEEP_KEYS, ids=[a[0] for a, _ in SWEEP_KEYS])
def test_the_sweeps_unknown_key_message_lists_a_cells_keys_and_quotes_list_values(tmp_path, args, phrases):
    out = tmp_path / "outputs"
    done = cli("sweep.py", *args, "sweep.dry_run=true", f"paths.output_root={out}")
    assert done.returncode == 2, done.stderr[-2000:]
    said = " ".join(done.stderr.split())
    for phrase in phrases:
        assert phrase in said, f"{phrase!r} not in:\n{done.stderr}"
    assert not out.exists()


def test_a_sweep_file_with_an_unknown_cell_key_names_the_file_and_the_cells_keys(tmp_path):
    conf = tmp_path / "conf"
    (conf / "sweep").mkdir(parents=True)
    (conf / "sweep" / "typo.yaml").write_text(
        "name: typo\ncells:\n  one:\n    model: tiny\n    train: [adapter=lora]\n    evalute: [prompt=alpaca_cot]\n"
    )
    out = tmp_path / "outputs"
    done = cli("sweep.py", "--config-dir", str(conf), "sweep=typo", f"paths.output_root={out}")
    assert done.returncode == 2, done.stderr[-2000:]
    assert (
        "conf/sweep/typo.yaml sets sweep.cells.one.evalute, which is not a key of sweep.cells.one (a CellConfig); "
        "its keys are: label, model, tuning, prompt, train, evaluate, reference, natural_reference. Did you mean "
        "sweep.cells.one.evaluate? Fix it in conf/sweep/typo.yaml."
    ) in done.stderr
    assert not out.exists()


@pytest.mark.slow
def test_a_cell_override_of_the_other_stage_says_which_list_it_belongs_in(tmp_path):
    done = cli(
        "sweep.py",
        "sweep.dry_run=true",
        'sweep.common_evaluate=["exam=sample","train.max_steps=3"]',
        f"paths.output_root={tmp_path / 'outputs'}",
    )
    assert done.returncode == 2, done.stderr[-2000:]
    said = " ".join(done.stderr.split())
    assert (
        "[evaluate] train.max_steps=3 (sweep.common_evaluate): train.max_steps=3: `train` is a key of train.py's "
        "config, not evaluate.py's"
    ) in said
    assert "Put train.max_steps=3 in the train overrides (sweep.common_train, or the cell's own train list)" in said
    assert "nothing was launched" in said


def test_a_key_of_no_script_is_still_an_unknown_key_of_this_one(tmp_path):
    done = cli("evaluate.py", "sed=1", f"paths.output_root={tmp_path}")
    assert done.returncode == 2 and "sed is not a key of the evaluate.py config" in done.stderr
    assert "config group of" not in done.stderr
