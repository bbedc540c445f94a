"""What each entry script accepts, its config groups and top-level keys: its `--help`, and whose a key is.

Hydra's own `--help` lists every folder of conf/ as a group of every script, and the whole composed
config. medtune's (`hydra.help.template: ${medtune_help:}` in conf/hydra/default.yaml and
conf/hydra/sweep.yaml; the resolver is registered by `medtune.config.store.register_configs`) lists
the groups the script's primary config composes, each with its options and the one chosen, then its
top-level keys: run-level keys with their values, sections with the names of their keys; then every
key with its composed value and its help, from the schema's field metadata (`medtune.config.reference`).

`owners` says which other scripts take a group or a top-level key, and `other_script_problem` words
the message for an override of another script's group or key (`python evaluate.py dataset=sample`:
whose it is, what this script calls the same wish where it has one, and the fix), which
`medtune.hydra_messages` gives before its unknown-key message. A script's groups are those of its
primary config's defaults list (conf/<job>.yaml), its keys those of its typed schema.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from medtune.config.reference import help_lines
from medtune.config.store import SCHEMAS
from medtune.override_shape import keys_at, override_for, quoted_list, shell_quoted

REPO_CONF = Path(__file__).resolve().parents[2] / "conf"  # the repository's configs (editable install)


@dataclass(frozen=True)
class ScriptConfig:
    """One entry script as the command line sees it: its config groups and its top-level keys."""

    script: str  # train.py
    groups: tuple[str, ...]  # in the order of its primary config's defaults list
    keys: tuple[str, ...]  # its schema's top-level keys (groups' sections included)

    def takes(self, name: str) -> bool:
        return name in self.groups or name in self.keys


def conf_dir() -> Path:
    """The conf/ beside the running entry script, else the repository's."""
    beside = Path(sys.argv[0]).resolve().parent / "conf" if sys.argv and sys.argv[0] else None
    return beside if beside is not None and beside.is_dir() else REPO_CONF


def primary_groups(conf: Path, config_name: str) -> tuple[str, ...]:
    """The groups the defaults list of conf/<config_name>.yaml composes (not Hydra's, not re-packaged ones)."""
    path = conf / f"{config_name}.yaml"
    try:
        defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults") or []
    except (OSError, yaml.YAMLError):
        return ()
    groups: list[str] = []
    for entry in defaults:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue  # the schema's name, _self_
        words = str(next(iter(entry))).split()
        if words[0] == "override" or len(words) > 2:
            continue
        group = words[-1]  # "optional schedule" -> schedule
        if "@" in group or group == "hydra" or group.startswith("hydra/") or group in groups:
            continue
        groups.append(group)
    return tuple(groups)


@lru_cache(maxsize=4)
def script_configs(conf: Path = REPO_CONF) -> tuple[ScriptConfig, ...]:
    """Every entry script's groups and keys."""
    from medtune.jobs import JOBS

    return tuple(
        ScriptConfig(job.script, primary_groups(conf, job.name), tuple(f.name for f in dataclasses.fields(job.schema)))
        for job in JOBS
    )


def script_config(script: str, conf: Path | None = None) -> ScriptConfig | None:
    return next((s for s in script_configs(conf or conf_dir()) if s.script == script), None)


def owners(name: str, script: str, conf: Path | None = None) -> list[ScriptConfig]:
    """The other scripts that take `name` (a group or a top-level key); [] when `script` takes it itself."""
    configs = script_configs(conf or conf_dir())
    own = next((s for s in configs if s.script == script), None)
    if own is not None and own.takes(name):
        return []
    return [s for s in configs if s.script != script and s.takes(name)]


def joined(words: list[str], conjunction: str = "and") -> str:
    """The words as a list in prose: "a", "a and b", "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


# --- another script's group or key -------------------------------------------------------------------

# What the same wish is called in the script the user ran, where there is such a thing.
SAME_WISH_HERE = {
    ("train.py", "eval"): "train.py's exam check during training is set with exam_eval.* ({keys})",
    ("evaluate.py", "exam_eval"): "evaluate.py's own settings of the evaluation are eval.* ({keys})",
    ("evaluate.py", "dataset"): "evaluate.py asks an exam's questions: pick them with exam=<option>",
    ("evaluate.py", "train"): "evaluate.py evaluates a finished training with run=<its run dir>",
    ("judge.py", "exam"): "judge.py's questions are open ones, given with judge.questions=<file>",
}
SAME_WISH_KEYS = {"eval": "exam_eval", "exam_eval": "eval"}


def other_script_problem(
    name: str, overrides: list[str], schema: type, script: str, move_to: dict[str, str], as_group: bool
) -> str | None:
    """The message for an override of a group or key (`name`) that another script has and `script` has not:
    whose it is, what `script` calls the same wish (or its own groups / keys), and the fix."""
    others = owners(name, script)
    if not others:
        return None
    typed = override_for(name, overrides)
    plain = f"{typed[1]}={typed[2]}" if typed else f"{name}=..."
    given = shell_quoted(f"{typed[0]}{plain}") if typed else name
    names = [o.script for o in others]
    group = all(name in o.groups for o in others)
    if group:
        head = f"{given}: `{name}` is a config group of {joined(names)}, not {script}"
    elif len(names) == 1:
        head = f"{given}: `{name}` is a key of {names[0]}'s config, not {script}'s"
    else:
        head = f"{given}: `{name}` is a key of the configs of {joined(names)}, not {script}'s"
    hint = SAME_WISH_HERE.get((script, name))
    own = script_config(script)
    if hint:
        hint = hint.format(keys=", ".join(keys_at(schema, SAME_WISH_KEYS.get(name, name))))
    elif own is not None and group:
        hint = f"{script}'s groups are: {', '.join(own.groups)}"
    else:
        hint = f"{script}'s top-level keys are: {', '.join(f.name for f in dataclasses.fields(schema))}"
    global_option = as_group and is_global_group(conf_dir(), name, typed[2] if typed else "")
    return f"{head}; {hint}. {other_script_fix(plain, names, script, move_to, global_option)}."


def other_script_fix(plain: str, names: list[str], script: str, move_to: dict[str, str], global_option: bool) -> str:
    """Where the override `plain` (of the scripts `names`) goes instead, seen from `script`."""
    run_there = f"run it with {joined(names, 'or')}: python {names[0]} {shell_quoted(plain)}"
    stages = [stage for stage in ("train", "evaluate") if f"{stage}.py" in names]
    if names[0] in move_to:
        return f"Put {shell_quoted(plain)} in {move_to[names[0]]}, or leave it out"
    if script == "sweep.py" and stages:
        lists = " or ".join(quoted_list(f"sweep.extra_{stage}", plain) for stage in stages)
        return f"A sweep gives it to its cells' {joined([f'{s}.py' for s in stages])} with {lists}"
    if global_option:
        plus = shell_quoted("+" + plain)
        return f"Its options set keys of the whole config: add it here with a leading + ({plus}), or {run_there}"
    return f"Leave it out of the {script} command, or {run_there}"


def is_global_group(conf: Any, group: str, option: str) -> bool:
    """Whether conf/<group>/<option>.yaml is `# @package _global_` (an experiment): `+group=option` may apply it."""
    try:
        head = (conf / group / f"{option}.yaml").read_text().splitlines()[:3]
    except OSError:
        return False
    return any(line.replace(" ", "") == "#@package_global_" for line in head)


# --- --help ------------------------------------------------------------------------------------------


def script_help(*, _root_: DictConfig) -> str:
    """`${medtune_help:}`: the `--help` text of the script that composed `_root_` (Hydra's help template)."""
    try:
        text = help_text(_root_)
    except Exception as error:  # noqa: BLE001 - help must never fail; say what is missing instead
        text = f"(medtune could not list this script's groups: {type(error).__name__}: {error})\n"
    return text.replace("$", "$$")  # Hydra passes the template through string.Template


def help_text(root: DictConfig) -> str:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    name = str(hc.job.name)
    script = f"{name}.py"
    main = next((s for s in hc.runtime.config_sources if s.provider == "main" and s.schema == "file"), None)
    conf = Path(main.path) if main else conf_dir()
    choices = {str(k): v for k, v in hc.runtime.choices.items()}
    groups = list(primary_groups(conf, str(hc.job.config_name or name)))
    groups += [g for g in choices if g not in groups and "@" not in g and not g.startswith("hydra")]
    loader = GlobalHydra.instance().config_loader()
    lines = [*header(conf, str(hc.job.config_name or name)), f"python {script} [group=option ...] [key=value ...]", ""]
    lines.append("== Config groups (group=option) ==")
    for group in groups:
        options = sorted(loader.get_group_options(group))
        chosen = choices.get(group)
        lines.append(f"{group} (now {chosen if chosen is not None else 'none'}): {', '.join(options)}")
    lines += ["", "== Top-level keys (key=value; a key inside a section: section.key=value) =="]
    container = OmegaConf.to_container(root, resolve=False, enum_to_str=True)
    for key, value in container.items():
        if key == "hydra":
            continue
        section = isinstance(value, dict) and value
        lines.append(f"{key}.*: {', '.join(section_keys(value))}" if section else f"{key}: {shown(value)}")
    schema = SCHEMAS.get(f"{hc.job.config_name or name}_schema")
    if schema is not None:
        lines += ["", "== Keys and their help (key=value: the value this command composes) ==", ""]
        lines += help_lines(schema, container, help_width())
    lines += [
        "",
        *textwrap.wrap(
            f"python {script} --cfg job shows every key with its value (add --resolve to resolve them); "
            f"python {script} --hydra-help shows Hydra's own flags and groups (hydra/launcher=..., hydra/sweeper=...).",
            help_width(),
            break_on_hyphens=False,
        ),
    ]
    return "\n".join(lines) + "\n"


def help_placeholders_on_demand() -> None:
    """Hydra fills every placeholder a help template may hold before it looks at the template: both lists
    of config groups (each option listed by deep-copying the config repository: about 3 s of a `--help`)
    and the whole config as YAML. medtune's template (`${medtune_help:}`, rendered by `script_help`)
    uses none of them, `--hydra-help`'s uses the flags and Hydra's groups: each is now computed when
    its template asks for it, and the text is the same."""
    import string

    from hydra._internal.hydra import Hydra

    if getattr(Hydra.get_help, "on_demand", False):
        return

    def get_help(self, help_cfg, cfg, args_parser, resolve: bool) -> str:
        def is_hydra_group(name: str) -> bool:
            return name.startswith("hydra/") or name == "hydra"

        producers = {
            "FLAGS_HELP": lambda: self.format_args_help(args_parser),
            "HYDRA_CONFIG_GROUPS": lambda: self.format_config_groups(is_hydra_group),
            "APP_CONFIG_GROUPS": lambda: self.format_config_groups(lambda name: not is_hydra_group(name)),
            "CONFIG": lambda: OmegaConf.to_yaml(cfg, resolve=resolve),
        }

        class OnDemand(dict):
            def __missing__(self, key: str) -> str:
                return producers[key]()  # an unknown placeholder: KeyError, as Hydra's own substitute raises

        return string.Template(help_cfg.template).substitute(OnDemand())

    get_help.on_demand = True  # type: ignore[attr-defined]
    Hydra.get_help = get_help


def help_width() -> int:
    """The terminal's columns, kept between 80 and 100 (100 when the output is not a terminal)."""
    return max(80, min(100, shutil.get_terminal_size((100, 24)).columns))


def header(conf: Path, config_name: str) -> list[str]:
    """The comment block that opens conf/<config_name>.yaml: what the script does and example commands."""
    try:
        text = (conf / f"{config_name}.yaml").read_text()
    except OSError:
        return []
    block = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        block.append(line[2:] if line.startswith("# ") else line[1:])
    return [*block, ""] if block else []


def section_keys(value: dict[str, Any]) -> list[str]:
    return [f"{k}.*" if isinstance(v, (dict, DictConfig)) else str(k) for k, v in value.items()]


def shown(value: Any) -> str:
    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    return (
        yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
        .strip()
        .removesuffix("...")
        .strip()
    )
