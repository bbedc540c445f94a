"""Hydra's composition errors, said as medtune says its own: the override, the problem and the fix.

Hydra composes the config before an entry script's task runs, so an unknown key, a group option
that does not exist, an override it cannot parse or a run dir it cannot create never reach
`run_task`. `entry.run_cli` catches them and asks `composition_problem` for the message. The fixes
name the schema's own keys and the config folders' options; they never suggest `+key=value` for a
key of a typed group, since medtune refuses keys its schema does not have.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def composition_problem(error: BaseException, argv: list[str], schema: type, script: str) -> str | None:
    """The medtune message for a Hydra / OmegaConf error raised while composing, or None for any other error."""
    overrides = [a for a in argv if not a.startswith("-")]
    if isinstance(error, OverrideParseException):
        return unparsable_override(error, argv)
    if isinstance(error, MissingConfigException):
        return missing_option(error, script)
    if isinstance(error, ConfigCompositionException):
        return composition_failure(error, overrides, schema, script)
    if isinstance(error, OmegaConfBaseException):
        return omegaconf_failure(error, script)
    return None


# --- unknown keys ------------------------------------------------------------------------------------


def schema_node(schema: type, path: str) -> Any:
    root = OmegaConf.structured(schema)
    return OmegaConf.select(root, path) if path else root


def is_mapping(node: Any, ref_type: Any = None) -> bool:
    """A `Dict[str, ...]` field (dataset.mixture): its entries are the user's to name."""
    if typing.get_origin(ref_type) in (dict, typing.Dict):
        return True
    return isinstance(node, DictConfig) and OmegaConf.get_type(node) is dict


def override_for(key: str, overrides: list[str]) -> tuple[str, str, str] | None:
    """(prefix: "", "+", "++" or "~"; key; value) of the override that sets `key` or a key under it."""
    for override in overrides:
        typed, _, value = override.partition("=")
        bare = typed.lstrip("+~")
        if bare == key or bare.startswith(key + "."):
            return typed[: len(typed) - len(bare)], bare, value
    return None


def unknown_key(full_key: str, overrides: list[str], schema: type, script: str, ref_type: Any = None) -> str:
    parent, _, leaf = full_key.rpartition(".")
    node = schema_node(schema, parent)
    typed = override_for(full_key, overrides)
    where = parent or f"the {script} config"
    if is_mapping(node, ref_type):
        example = f"+{typed[1]}={typed[2]}" if typed else f"+{full_key}.<key>=<value>"
        return (
            f"{full_key} is not an entry of {where}, a mapping whose entries you name yourself: add a new entry "
            f"with a leading +, e.g. {example}."
        )
    keys = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(leaf, keys, n=1)
    if close and typed:
        fixed = (f"{parent}.{close[0]}" if parent else close[0]) + typed[1][len(full_key) :]
        fix = f"Did you mean ~{fixed}?" if typed[0] == "~" else f"Did you mean {fixed}={typed[2]}?"
    elif close:
        fix = f"Did you mean {parent + '.' if parent else ''}{close[0]}?"
    else:
        fix = f"Use one of them (python {script} --cfg job shows every key with its value)."
    return f"{full_key} is not a key of {where}; its keys are: {', '.join(keys)}. {fix}"


# --- composition errors ------------------------------------------------------------------------------

DELETE_MISSING = re.compile(r"Could not delete from config\. '([^']+)' does not exist")
APPEND_EXISTING = re.compile(r"Could not append to config\. An item is already at '([^']+)'")
MERGING = re.compile(r"Error merging override (\S+)")


def composition_failure(error: ConfigCompositionException, overrides: list[str], schema: type, script: str) -> str:
    cause = error.__cause__
    text = str(error)
    key = getattr(cause, "full_key", None)
    if isinstance(cause, (KeyError, AttributeError)) and key:  # ConfigKeyError / ConfigAttributeError
        return unknown_key(key, overrides, schema, script, getattr(cause, "ref_type", None))
    if match := DELETE_MISSING.search(text):
        return unknown_key(match.group(1), overrides, schema, script)
    if match := APPEND_EXISTING.search(text):
        typed = override_for(match.group(1), overrides)
        example = f"{typed[1]}={typed[2]}" if typed else f"{match.group(1)}=<value>"
        return (
            f"+{example} adds a key, but {match.group(1)} is already in the config: set it without the +, "
            f"e.g. {example}."
        )
    if cause is not None and key:  # a value of the wrong type, or not one of an enum's names
        return wrong_value(key, text, str(cause), overrides, schema)
    detail = f": {first_line(str(cause))}" if cause is not None else ""
    return (
        f"{first_line(text)}{detail}. Check that override against python {script} --help (the groups and "
        f"their options) and python {script} --cfg job (every key with its value)."
    )


def wrong_value(key: str, text: str, cause: str, overrides: list[str], schema: type) -> str:
    typed = override_for(key, overrides)
    given = f"{typed[1]}={typed[2]}" if typed else (MERGING.search(text).group(1) if MERGING.search(text) else key)
    problem = first_line(cause)
    options = re.search(r"expected one of \[([^\]]*)\]", problem)
    if options:
        first = options.group(1).split(",")[0].strip()
        return f"{given}: {problem}; pick one of them, e.g. {key}={first}."
    default = OmegaConf.select(OmegaConf.structured(schema), key, default=None, throw_on_missing=False)
    example = f", e.g. {key}={default}" if default is not None and not isinstance(default, (DictConfig, list)) else ""
    return f"{given}: {problem}; give {key} a value of that type{example}."


# --- group options -----------------------------------------------------------------------------------

NOT_FOUND = re.compile(r"In '([^']+)': Could not find '([^']+)'")
PRIMARY_CONFIGS = ("train", "evaluate", "sweep", "hydra/config")  # what composes every group: not worth naming


def missing_option(error: MissingConfigException, script: str) -> str:
    missing = error.missing_cfg_file or ""
    options = list(error.options or [])
    if "/" not in missing or not options:
        return (
            f"{first_line(str(error))}: the config file is not on the search path; check --config-name and "
            f"--config-path, or run python {script} from the repository root."
        )
    group, _, option = missing.rpartition("/")
    found = NOT_FOUND.search(str(error))
    asked_by = f" (asked for by {found.group(1)})" if found and found.group(1) not in PRIMARY_CONFIGS else ""
    close = difflib.get_close_matches(option, options, n=1)
    fix = f"Did you mean {group}={close[0]}?" if close else f"Pick one of them, or add conf/{group}/{option}.yaml."
    return f"{group}={option} is not an option of {group}{asked_by}; the options are: {', '.join(options)}. {fix}"


# --- overrides Hydra cannot parse --------------------------------------------------------------------


def unparsable_override(error: OverrideParseException, argv: list[str]) -> str:
    override = error.override
    detail = "; ".join(
        line
        for line in error.message.splitlines()
        if line.strip() and not line.startswith(("See https://", "Error parsing override"))
    )
    if "=" not in override:
        split = rejoin_split_value(override, argv)
        if split is not None:
            key, value = split
            return (
                f"{override!r} is not an override (key=value): it looks like the rest of {key}={value}, which "
                f"the shell split at its spaces. Quote the whole override, with the value in double quotes "
                f"inside: '{key}=\"{value}\"'."
            )
        return (
            f"{override!r} is not an override ({detail}): write key=value, and quote a value with spaces, "
            f"e.g. 'dataset.path=\"/data/my file.jsonl\"'."
        )
    key, _, value = override.partition("=")
    return (
        f"{override} cannot be parsed ({detail}): in an unquoted value Hydra reads spaces, parentheses, brackets, "
        f"commas and quotes as its own syntax. Put the value in double quotes inside single ones: "
        f"'{key}=\"{value}\"'."
    )


def rejoin_split_value(word: str, argv: list[str]) -> tuple[str, str] | None:
    """(key, whole value) when `word` is a piece of the value of the `key=...` argument before it."""
    if word not in argv:
        return None
    at = argv.index(word)
    start = at
    while start > 0 and "=" not in argv[start - 1] and not argv[start - 1].startswith("-"):
        start -= 1
    if start == 0 or "=" not in argv[start - 1] or argv[start - 1].startswith("-"):
        return None
    key, _, head = argv[start - 1].partition("=")
    end = at
    while end + 1 < len(argv) and "=" not in argv[end + 1] and not argv[end + 1].startswith("-"):
        end += 1
    return key.lstrip("+~"), " ".join([head, *argv[start : end + 1]])


# --- the rest ----------------------------------------------------------------------------------------


def omegaconf_failure(error: OmegaConfBaseException, script: str) -> str:
    key = getattr(error, "full_key", None) or "the config"
    return (
        f"{key}: {first_line(str(error))}; check its value on the command line or in its YAML file "
        f"(python {script} --cfg job --resolve shows every value as composed)."
    )


def run_dir_problem(error: OSError, argv: list[str], multirun: bool) -> str:
    """A run (or sweep) dir Hydra cannot create or write: which one, why, and where to point it instead."""
    setting = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = next((a.partition("=")[2] for a in argv if a.lstrip("+").startswith(setting + "=")), None)
    path = error.filename or given or "?"
    named = f"{setting}={given}" if given else f"{setting} (under paths.output_root)"
    return (
        f"{named}: cannot create or write {path} ({error.strerror or error}); point {setting} at a directory "
        f"you can write, e.g. {setting}=outputs/my_run, or set paths.output_root=<a writable folder>."
    )


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text).rstrip(".")
