"""Check every cell's train.py and evaluate.py overrides before the first cell runs.

Each stage's overrides are composed in this process with Hydra's compose API over the same
`conf/` the stage reads (about 0.1 s a composition, against seconds for a `--cfg job` process),
then checked against the typed schema (TrainRunConfig / EvalRunConfig) and by the rules that
read the config alone. So a typo'd key, a group option that does not exist, a value of the wrong
type, a required value left unset or a contradiction between keys stops the sweep before it
spends hours on the cells in front of the broken one, and every problem of every cell is
reported at once.

What depends on the machine that runs a stage (model weights, data and exam files, CUDA devices,
installed packages) is left to that stage's own check where it runs: a sweep is often launched
from a machine that holds none of them. Cells that share a training are composed once.

Composition errors are worded by `medtune.hydra_messages`, as train.py and evaluate.py word them;
this module, like `entry.py`, imports Hydra because composing is Hydra's to do.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from medtune.config.eval_schema import EvalRunConfig
from medtune.config.schema import TrainRunConfig
from medtune.config.sweep_schema import SweepConfig, every_evaluate, every_train
from medtune.errors import ConfigError
from medtune.sweep.cells import (
    all_cells,
    cell_dir,
    evaluate_overrides,
    train_dir_of,
    train_overrides,
)

Compose = Callable[[str, list[str]], DictConfig]
STAGES = {"train": ("train", TrainRunConfig), "evaluate": ("evaluate", EvalRunConfig)}  # stage -> (config, schema)
COMPOSITION_ERRORS = (HydraException, OmegaConfBaseException)  # what a broken override makes compose raise
SEARCH_TEMPLATE = "search.template"  # the cell name under which an Optuna search's template is checked


@dataclass
class OverrideProblem:
    """One problem of a stage's configuration; `override` and `origin` are set when one override causes it."""

    stage: str  # train | evaluate
    message: str
    override: str | None = None
    origin: str | None = None  # the sweep key that holds the override, e.g. sweep.cells.<name>.train
    cells: list[str] = field(default_factory=list)

    def render(self) -> str:
        who = f"cell {self.cells[0]}" if len(self.cells) == 1 else f"cells {', '.join(self.cells)}"
        if self.override is None:
            return f"{who} [{self.stage}]: {self.message}"
        return f"{who} [{self.stage}] {self.override} ({self.origin}): {self.message}"


class SweepCheckError(ConfigError):
    """The cells' overrides have problems: nothing was launched."""

    def __init__(self, sweep: SweepConfig, problems: list[OverrideProblem]):
        super().__init__([p.render() for p in problems])
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        Exception.__init__(
            self,
            (
                f"sweep={sweep.name}: {len(problems)} {noun} in the cells' overrides, found before any cell ran "
                f"(nothing was launched):\n{lines}\n"
                f"Fix them in conf/sweep/{sweep.name}.yaml (or override those lists on the command line) and run "
                f"the sweep again."
            ),
        )


@contextmanager
def composer(conf_dir: Path) -> Iterator[Compose]:
    """compose(config_name, overrides) over `conf_dir`, inside or outside a running Hydra app
    (sweep.py's own Hydra is set aside for the duration and put back after)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import JobRuntime

    from medtune.config.store import register_configs

    register_configs()
    running = GlobalHydra.instance().hydra
    job_name = JobRuntime.instance().conf.get("name")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
            yield lambda name, overrides: compose(config_name=name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
        if running is not None:
            GlobalHydra.instance().initialize(running)
        if job_name is not None:
            JobRuntime.instance().set("name", job_name)


def check_sweep_cells(sweep: SweepConfig, names: list[str], sweep_dir: Path, group: str, scripts: Path) -> None:
    """Compose and check the train and evaluate stages of cells `names` (and a search's template);
    raises SweepCheckError listing every problem found."""
    problems = sweep_problems(sweep, names, sweep_dir, group, scripts / "conf")
    if problems:
        raise SweepCheckError(sweep, problems)


def sweep_problems(
    sweep: SweepConfig, names: list[str], sweep_dir: Path, group: str, conf_dir: Path
) -> list[OverrideProblem]:
    cells = {name: all_cells(sweep)[name] for name in names}
    if sweep.search.n_trials > 0:
        cells[SEARCH_TEMPLATE] = sweep.search.template
    found: dict[tuple, OverrideProblem] = {}
    trainings: dict[Path, list[OverrideProblem]] = {}
    with composer(conf_dir) as compose:
        for name, cell in cells.items():
            run = train_dir_of(sweep, cell, sweep_dir)
            stage_problems = []
            if run is not None:
                if run not in trainings:  # cells that share a training are composed once
                    tagged = tag(
                        train_overrides(sweep, cell, run, group),
                        every_train(sweep),
                        cell.train or [],
                        "sweep.common_train / sweep.extra_train" if sweep.extra_train else "sweep.common_train",
                        origin_of(sweep, name, "train"),
                    )
                    trainings[run] = check_stage(compose, "train", tagged)
                stage_problems += trainings[run]
            out = cell_dir(sweep_dir, name) / "eval"
            tagged = tag(
                evaluate_overrides(sweep, cell, out, group, run),
                every_evaluate(sweep),
                cell.evaluate,
                "sweep.common_evaluate / sweep.extra_evaluate" if sweep.extra_evaluate else "sweep.common_evaluate",
                origin_of(sweep, name, "evaluate"),
            )
            stage_problems += check_stage(compose, "evaluate", tagged)
            for problem in stage_problems:
                key = (problem.stage, problem.override, problem.origin, problem.message)
                merged = found.setdefault(
                    key, OverrideProblem(problem.stage, problem.message, problem.override, problem.origin)
                )
                merged.cells.append(name)
    return list(found.values())


def origin_of(sweep: SweepConfig, name: str, stage: str) -> str:
    if name == SEARCH_TEMPLATE:
        return f"sweep.{SEARCH_TEMPLATE}.{stage}"
    return f"sweep.{'systems' if name in sweep.systems else 'cells'}.{name}.{stage}"


def tag(
    overrides: list[str], common: list[str], own: list[str], common_origin: str, own_origin: str
) -> list[tuple[str, str]]:
    """Each override with the sweep key it comes from (the rest are the ones the sweep adds itself)."""
    origins = [common_origin] * len(common) + [own_origin] * len(own)
    return [(o, origins[i] if i < len(origins) else "the sweep itself") for i, o in enumerate(overrides)]


def check_stage(compose: Compose, stage: str, tagged: list[tuple[str, str]]) -> list[OverrideProblem]:
    """Compose one stage; when an override breaks composition, find it, report it and go on without it."""
    config_name, schema = STAGES[stage]
    problems: list[OverrideProblem] = []
    remaining = list(tagged)
    while True:
        try:
            cfg = compose(config_name, [o for o, _ in remaining])
            break
        except COMPOSITION_ERRORS as error:
            culprit, cause = first_breaking(compose, config_name, remaining, error)
            if culprit is None:
                return [*problems, OverrideProblem(stage, composition_message(cause, None, config_name, schema))]
            override, origin = culprit
            problems.append(
                OverrideProblem(stage, composition_message(cause, override, config_name, schema), override, origin)
            )
            remaining.remove(culprit)
    for message in config_problems(cfg, config_name, schema):
        override, origin = setting_override(message, remaining)
        problems.append(OverrideProblem(stage, message, override, origin))
    return problems


def setting_override(message: str, tagged: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    """The override that sets the key a rule's message starts with (`train.max_steps=0 must be ...`), if any."""
    for override, origin in reversed(tagged):  # the last override of a key is the one that counts
        key, equals, _ = override.partition("=")
        key = key.lstrip("+~")
        if equals and re.match(rf"{re.escape(key)}[= ]", message):
            return override, origin
    return None, None


def first_breaking(
    compose: Compose, config_name: str, tagged: list[tuple[str, str]], error: Exception
) -> tuple[tuple[str, str] | None, Exception]:
    """The first override whose addition makes composition fail, and that failure."""
    for end in range(1, len(tagged) + 1):
        try:
            compose(config_name, [o for o, _ in tagged[:end]])
        except COMPOSITION_ERRORS as failure:
            return tagged[end - 1], failure
    return None, error


# Where an override of the other stage belongs (hydra_messages says it instead of "run python train.py ...").
MOVE_TO = {
    "train.py": "the train overrides (sweep.common_train, or the cell's own train list)",
    "evaluate.py": "the evaluate overrides (sweep.common_evaluate, or the cell's own evaluate list)",
}


def composition_message(error: Exception, override: str | None, config_name: str, schema: type) -> str:
    """Hydra's composition error as train.py / evaluate.py themselves would say it (`medtune.hydra_messages`)."""
    from medtune.hydra_messages import composition_problem, first_line

    message = composition_problem(error, [override] if override else [], schema, f"{config_name}.py", MOVE_TO)
    return message or f"{first_line(str(error)) or type(error).__name__}."


def config_problems(cfg: DictConfig, config_name: str, schema: type) -> list[str]:
    """What the composed config breaks: unset required values, keys added with +, types, and the
    rules that read the config alone (not the machine)."""
    from medtune.config.validate import missing_value_problems, unknown_key_problem
    from medtune.hydra_messages import omegaconf_failure

    problems = missing_value_problems(cfg)
    unknown = unknown_key_problem(cfg, schema)
    if unknown:
        problems.append(unknown)
    if problems:
        return problems
    try:
        typed = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:  # e.g. an interpolation that does not resolve
        return [omegaconf_failure(error, f"{config_name}.py")]
    return [problem for rule in portable_rules(typed) for problem in rule(typed)]


def portable_rules(typed: Any) -> list[Callable[[Any], list[str]]]:
    """The cross-key rules that need neither the model's files, the data's, nor this machine's devices."""
    from medtune.jobs import EVALUATE, TRAIN

    return list((TRAIN if isinstance(typed, TrainRunConfig) else EVALUATE).portable_rules)
