"""The resolve phase settles derived values before the rules, so the rules see the final config
(issue 22, item 2): evaluate.py run=<dir> takes the run's own prompt, and the prompt-language rule
checks that prompt."""

from __future__ import annotations

import pytest

from medtune.config.eval_schema import EvalRunConfig
from medtune.config.validate import typed_config
from medtune.errors import ConfigError
from medtune.jobs import EVALUATE
from medtune.rules.resolve import resolve_evaluate
from medtune.run_dir import TrainRunDir


@pytest.fixture()
def japanese_run(typed, tmp_path):
    """A run dir whose saved config was trained in prompt A (Japanese); no weights are needed here."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    TrainRunDir(run_dir).write_config(typed(["prompt=medpalm2_cot"]))
    return run_dir


def test_run_prompt_is_settled_before_the_rules_and_the_language_rule_checks_it(compose, japanese_run):
    overrides = [f"run={japanese_run}", "exam=sample_en"]
    with pytest.raises(ConfigError) as refused:
        EVALUATE.validate(compose(overrides, config_name="evaluate"), overrides)
    text = str(refused.value)
    assert "prompt=medpalm2_cot is in ja (prompt.language) but exam=sample_en is in en" in text


def test_prompt_on_the_command_line_wins_over_the_runs_own(compose, japanese_run):
    chosen = [f"run={japanese_run}", "exam=sample_en", "prompt=medpalm2_cot_en"]
    cfg = typed_config(compose(chosen, config_name="evaluate"), EvalRunConfig)
    assert resolve_evaluate(cfg, chosen).prompt.name == "medpalm2_cot_en"
    assert resolve_evaluate(cfg, chosen[:2]).prompt.name == "medpalm2_cot"  # not typed: the run's own
    assert cfg.prompt.name == "medpalm2_cot_en"  # resolving returns a new config; the composed one is unchanged
