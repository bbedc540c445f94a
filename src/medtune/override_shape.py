"""The shape of a typed schema at a dotted key, and overrides as a shell needs them typed.

For messages about overrides (`medtune.hydra_messages`, `medtune.hydra_help`): which keys a level
has, also under a user-named entry of a `Dict[str, X]` field (`sweep.cells.<name>` has a
`CellConfig`'s keys), whether a key holds a list, and an override quoted for a POSIX shell, a list
of overrides with each item in double quotes (`'sweep.extra_train=["dataset.path=/x"]'`).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

# --- the schema's shape ------------------------------------------------------------------------------


def schema_node(schema: type, path: str) -> Any:
    root = OmegaConf.structured(schema)
    return OmegaConf.select(root, path) if path else root


def schema_type(schema: type, path: str) -> Any:
    """The declared type at dotted `path` (through `Dict[str, X]` entries and Optional), or None when the
    schema has no such key. A user-named entry (sweep.cells.<name>) has the mapping's value type."""
    declared: Any = schema
    for part in path.split(".") if path else []:
        declared = without_optional(declared)
        if dataclasses.is_dataclass(declared):
            hints = typing.get_type_hints(declared)
            if part not in hints:
                return None
            declared = hints[part]
        elif typing.get_origin(declared) in (dict, typing.Dict):
            declared = typing.get_args(declared)[1] if typing.get_args(declared) else Any
        else:
            return None
    return without_optional(declared)


def without_optional(declared: Any) -> Any:
    args = [a for a in typing.get_args(declared) if a is not type(None)]
    return args[0] if typing.get_origin(declared) is typing.Union and len(args) == 1 else declared


def is_list(declared: Any) -> bool:
    return typing.get_origin(declared) in (list, typing.List, tuple)


def keys_at(schema: type, path: str) -> list[str]:
    """The keys the schema has under `path` (a dataclass's fields, also for a user-named mapping entry)."""
    declared = schema_type(schema, path)
    if dataclasses.is_dataclass(declared):
        return [f.name for f in dataclasses.fields(declared)]
    node = schema_node(schema, path)
    return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []


def is_mapping(node: Any, ref_type: Any = None) -> bool:
    """A `Dict[str, ...]` field (dataset.mixture): its entries are the user's to name."""
    if typing.get_origin(ref_type) in (dict, typing.Dict):
        return True
    return isinstance(node, DictConfig) and OmegaConf.get_type(node) is dict


# --- quoting -----------------------------------------------------------------------------------------

SHELL_SAFE = re.compile(r"^[\w./:=@+~,%-]*$")


def shell_quoted(word: str) -> str:
    """`word` as typed in a POSIX shell: as is when nothing in it is special, else in single quotes."""
    return word if SHELL_SAFE.match(word) else "'" + word.replace("'", "'\\''") + "'"


def list_items(value: str) -> list[str]:
    """The items of a list value as written (`[a=b, "c"]`, or one bare item), unquoted; commas inside
    quotes or brackets stay."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    items, depth, quote, current = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        current += ch
    items.append(current)
    unquoted = [i.strip() for i in items]
    return [i[1:-1] if len(i) > 1 and i[0] == i[-1] and i[0] in "\"'" else i for i in unquoted if i]


def quoted_list(key: str, value: str) -> str:
    """The override `key=[...]` with each item in double quotes and the whole in single quotes, as a list
    of overrides must be typed (Hydra reads `=` and spaces in an unquoted item as its own syntax)."""
    items = ",".join('"' + item.replace('"', '\\"') + '"' for item in list_items(value))
    return shell_quoted(f"{key}=[{items}]")


LIST_ADVICE = "a list of overrides is typed with each item in double quotes and the whole override in single quotes"


def override_for(key: str, overrides: list[str]) -> tuple[str, str, str] | None:
    """(prefix: "", "+", "++" or "~"; key; value) of the override that sets `key` or a key under it."""
    for override in overrides:
        typed, _, value = override.partition("=")
        bare = typed.lstrip("+~")
        if bare == key or bare.startswith(key + "."):
            return typed[: len(typed) - len(bare)], bare, value
    return None
