"""Hydra's composition errors, said as medtune says its own: the override, the problem and the fix.

Hydra composes the config before an entry script's task runs, so an unknown key, a group option
that does not exist, an override it cannot parse or a run dir it cannot create never reach
`run_task`. `entry.run_cli` catches them and asks `composition_problem` for the message. The fixes
name the schema's own keys and the config folders' options; they never suggest `+key=value` for a
key of a typed group, since medtune refuses keys its schema does not have. An override of another
script's group or key says whose it is (`medtune.hydra_help.other_script_problem`); a key unknown
under a user-named entry (`sweep.cells.<name>.evalute`) lists that entry's schema keys, and a list
value is shown quoted as a shell needs it (`medtune.override_shape`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from medtune.hydra_help import other_script_problem, script_config
from medtune.override_shape import (
    LIST_ADVICE,
    is_list,
    is_mapping,
    keys_at,
    override_for,
    quoted_list,
    schema_node,
    schema_type,
    shell_quoted,
)


def composition_problem(
    error: BaseException, argv: list[str], schema: type, script: str, move_to: dict[str, str] | None = None
) -> str | None:
    """The medtune message for a Hydra / OmegaConf error raised while composing, or None for any other error.

    `move_to` says where an override of another script belongs when the command is not typed by hand
    (a sweep cell's lists: {"train.py": "the cell's train overrides"}); by default the fix is that
    script's command.
    """
    overrides = [a for a in argv if not a.startswith("-")]
    if isinstance(error, OverrideParseException):
        return unparsable_override(error, argv, schema, script)
    if isinstance(error, MissingConfigException):
        return missing_option(error, script)
    if isinstance(error, ConfigCompositionException):
        return composition_failure(error, overrides, schema, script, move_to or {})
    if isinstance(error, OmegaConfBaseException):
        return omegaconf_failure(error, script)
    return None


# --- unknown keys ------------------------------------------------------------------------------------


def unknown_key(
    full_key: str, overrides: list[str], schema: type, script: str, ref_type: Any = None, in_file: str = ""
) -> str:
    """`full_key` is not in the schema: the keys at its level (a cell's, a section's), the close match with
    its value quoted as the shell needs it, or how to add an entry to a mapping. `in_file`: the config
    file (`sweep/table2`) that sets it, when no override does."""
    parent, _, leaf = full_key.rpartition(".")
    node = schema_node(schema, parent) if schema_type(schema, parent) is not None else None
    typed = None if in_file else override_for(full_key, overrides)
    where = parent or f"the {script} config"
    declared = schema_type(schema, parent)
    if is_mapping(node, ref_type) and not dataclasses.is_dataclass(declared):
        example = f"+{typed[1]}={typed[2]}" if typed else f"+{full_key}.<key>=<value>"
        return (
            f"{full_key} is not an entry of {where}, a mapping whose entries you name yourself: add a new entry "
            f"with a leading +, e.g. {shell_quoted(example)}."
        )
    keys = keys_at(schema, parent)
    named_entry = parent and schema_node(schema, parent) is None and dataclasses.is_dataclass(declared)
    what = f" (a {declared.__name__})" if named_entry else ""
    close = difflib.get_close_matches(leaf, keys, n=1)
    fixed_key = f"{parent}.{close[0]}" if parent and close else close[0] if close else ""
    if close and typed:
        fixed = fixed_key + typed[1][len(full_key) :]
        if typed[0] == "~":
            fix = f"Did you mean ~{fixed}?"
        elif is_list(schema_type(schema, fixed)):
            fix = f"Did you mean {quoted_list(fixed, typed[2])}? ({LIST_ADVICE}.)"
        else:
            fix = f"Did you mean {shell_quoted(f'{fixed}={typed[2]}')}?"
    elif close:
        fix = f"Did you mean {fixed_key}?" + (f" Fix it in conf/{in_file}.yaml." if in_file else "")
    else:
        fix = f"Use one of them (python {script} --cfg job shows every key with its value)."
    source = f"conf/{in_file}.yaml sets {full_key}, which" if in_file else full_key
    return f"{source} is not a key of {where}{what}; its keys are: {', '.join(keys)}. {fix}"


# --- composition errors ------------------------------------------------------------------------------

DELETE_MISSING = re.compile(r"Could not delete from config\. '([^']+)' does not exist")
APPEND_EXISTING = re.compile(r"Could not append to config\. An item is already at '([^']+)'")
MERGING = re.compile(r"Error merging override (\S+)")
NO_MATCH = re.compile(r"Could not override '([^']+)'\. No match in the defaults list")
IN_CONFIG_FILE = re.compile(r"In '([^']+)': \w*Key\w*Error raised while composing config")
FULL_KEY = re.compile(r"full_key: (\S+)")


def composition_failure(
    error: ConfigCompositionException, overrides: list[str], schema: type, script: str, move_to: dict[str, str]
) -> str:
    cause = error.__cause__
    text = str(error)
    key = getattr(cause, "full_key", None)
    if isinstance(cause, (KeyError, AttributeError)) and key:  # ConfigKeyError / ConfigAttributeError
        return other_script_problem(key.split(".")[0], overrides, schema, script, move_to, False) or unknown_key(
            key, overrides, schema, script, getattr(cause, "ref_type", None)
        )
    if match := NO_MATCH.search(text):
        group = match.group(1)
        return other_script_problem(group, overrides, schema, script, move_to, True) or no_such_group(
            group, overrides, script
        )
    if (match := IN_CONFIG_FILE.search(text)) and (found := FULL_KEY.search(text)):
        config_file, full_key = match.group(1), found.group(1)
        group = config_file.rpartition("/")[0]
        if group and full_key.split(".")[0] == group.split("/")[0]:  # +group=option: the group is not a key here
            problem = other_script_problem(group, overrides, schema, script, move_to, True)
            if problem:
                return problem
        return unknown_key(full_key, overrides, schema, script, in_file=config_file)
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


def no_such_group(group: str, overrides: list[str], script: str) -> str:
    """`group=option` for a group no script composes (a folder of conf/ that only options use)."""
    own = script_config(script)
    groups = f"; its groups are: {', '.join(own.groups)}" if own else ""
    return (
        f"{group}: {script} has no config group {group!r}{groups}. Use one of them (python {script} --help lists "
        "them with their options)."
    )


def wrong_value(key: str, text: str, cause: str, overrides: list[str], schema: type) -> str:
    typed = override_for(key, overrides)
    given = f"{typed[1]}={typed[2]}" if typed else (MERGING.search(text).group(1) if MERGING.search(text) else key)
    problem = first_line(cause)
    options = re.search(r"expected one of \[([^\]]*)\]", problem)
    if options:
        first = options.group(1).split(",")[0].strip()
        return f"{given}: {problem}; pick one of them, e.g. {key}={first}."
    if is_list(schema_type(schema, key)) and typed:
        return f"{given}: {problem}; {key} is a list: {quoted_list(key, typed[2])} ({LIST_ADVICE})."
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


def unparsable_override(
    error: OverrideParseException, argv: list[str], schema: type | None = None, script: str = ""
) -> str:
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
            f"{override!r} is not an override (key=value; {detail}): write key=value, and quote a value with spaces, "
            f"e.g. 'dataset.path=\"/data/my file.jsonl\"'."
        )
    typed, _, value = override.partition("=")
    key = typed.lstrip("+~")
    declared = schema_type(schema, key) if schema is not None else None
    if is_list(declared) or (declared is None and value.lstrip().startswith("[")):
        also = unknown_key_note(key, schema, script) if schema is not None and declared is None else ""
        return (
            f"{shell_quoted(override)} cannot be parsed ({detail}): {LIST_ADVICE}, e.g. "
            f"{quoted_list(typed, value)}.{also}"
        )
    return (
        f"{override} cannot be parsed ({detail}): in an unquoted value Hydra reads spaces, parentheses, brackets, "
        f"commas and quotes as its own syntax. Put the value in double quotes inside single ones: "
        f"'{typed}=\"{value}\"'."
    )


def unknown_key_note(key: str, schema: type, script: str) -> str:
    """ " Also, <key> is not a key of ...", for a list value whose key the schema does not have either."""
    parent = key
    while parent and schema_type(schema, parent) is None:
        parent = parent.rpartition(".")[0]
    bad = key[: len(parent) + 1 + len(key[len(parent) + 1 :].split(".")[0])] if parent else key.split(".")[0]
    if is_mapping(schema_node(schema, parent)) and not dataclasses.is_dataclass(schema_type(schema, parent)):
        return ""  # a new entry of a mapping: the + it needs is said once the value parses
    return " Also, " + unknown_key(bad, [], schema, script)


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
