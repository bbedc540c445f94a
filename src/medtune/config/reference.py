"""The key reference, from the help each schema field carries (`medtune.config.field_help`).

`key_docs` walks a schema into one `KeyDoc` per key (dotted, `sweep.cells.<name>.label` inside a
mapping); a section described once already with the same defaults (`judge.b` after `judge.a`) becomes
one row that says so. `help_lines` lays a script's keys out for its `--help` (`medtune.hydra_help`),
with the values the script composed; `readme_blocks` / `update_readme` write the README's key tables
between `<!-- keys:<id> -->` and `<!-- /keys -->`:

    python -m medtune.config.reference --write README.md    # regenerate them (make docs)
    python -m medtune.config.reference --check README.md    # exit 1 when they are out of date
"""

from __future__ import annotations

import dataclasses
import re
import sys
import textwrap
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterator

import yaml

from medtune.config.field_help import help_of

ENTRY = "<name>"  # stands for a user-named entry of a mapping (sweep.cells.<name>.label)
REGENERATE = "python -m medtune.config.reference --write README.md"
BLOCK = re.compile(r"(<!-- keys:(?P<id>[\w.]+) -->\n)(?P<body>.*?)(<!-- /keys -->)", re.DOTALL)


@dataclass(frozen=True)
class KeyDoc:
    key: str  # dotted: train.learning_rate, sweep.cells.<name>.label
    kind: str  # the type in words: int, str or null, train | pretrain, list of str, section
    default: Any  # the schema's default (omegaconf's "???": every option sets it)
    help: str
    choices: tuple[str, ...] = ()  # an enum's values
    same_as: str | None = None  # a section already described under this key, with the same defaults


def key_docs(schema: type, prefix: str = "", default: Any = None, seen: dict | None = None) -> Iterator[KeyDoc]:
    """Every key of `schema` under `prefix`; a nested section's own row comes before its keys."""
    seen = {} if seen is None else seen
    instance = default if default is not None else schema()
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        key, declared = f"{prefix}{field.name}", hints[field.name]
        value = getattr(instance, field.name)
        inner = plain_type(declared)
        nested = mapping_value(inner)
        section = inner if dataclasses.is_dataclass(inner) else nested
        earlier = seen.get((section, repr(value))) if dataclasses.is_dataclass(inner) else None
        yield KeyDoc(key, kind_of(declared), value, help_of(field), choices_of(inner), earlier)
        if dataclasses.is_dataclass(inner) and earlier is None:
            seen[(inner, repr(value))] = key
            yield from key_docs(inner, f"{key}.", value, seen)
        elif dataclasses.is_dataclass(nested):
            entry, fresh = f"{key}.{ENTRY}", nested()
            earlier = seen.get((nested, repr(fresh)))
            if earlier:
                yield KeyDoc(entry, "section", fresh, "Each entry.", (), earlier)
            else:
                seen[(nested, repr(fresh))] = entry
                yield from key_docs(nested, f"{entry}.", fresh, seen)


def plain_type(declared: Any) -> Any:
    args = [a for a in typing.get_args(declared) if a is not type(None)]
    return args[0] if typing.get_origin(declared) is typing.Union and len(args) == 1 else declared


def mapping_value(declared: Any) -> Any:
    return typing.get_args(declared)[1] if typing.get_origin(declared) is dict else None


def choices_of(declared: Any) -> tuple[str, ...]:
    return tuple(m.value for m in declared) if isinstance(declared, type) and issubclass(declared, Enum) else ()


def kind_of(declared: Any) -> str:
    """A type in words: `int or null`, `train | pretrain`, `list of str`, `map of name to section`."""
    inner = plain_type(declared)
    text = kind_of(inner) + " or null" if inner is not declared else ""
    if text:
        return text
    origin, args = typing.get_origin(declared), typing.get_args(declared)
    if origin is list:
        return f"list of {kind_of(args[0])}"
    if origin is dict:
        return f"map of name to {kind_of(args[1])}"
    if dataclasses.is_dataclass(declared):
        return "section"
    if choices_of(declared):
        return " | ".join(choices_of(declared))
    return "any" if declared is Any else getattr(declared, "__name__", str(declared))


def shown(value: Any, limit: int | None = None) -> str:
    """A value as a YAML flow scalar or list; cut to `limit` characters."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    value = plain(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True).strip()
    text = text.removesuffix("...").strip()
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def full_help(doc: KeyDoc) -> str:
    """The help, with the allowed values where the text does not name each of them."""
    missing = [c for c in doc.choices if not re.search(rf"\b{re.escape(c)}\b", doc.help)]
    return f"{doc.help} One of: {', '.join(doc.choices)}." if missing else doc.help


# --- a script's keys, for its --help -------------------------------------------------------------


def help_lines(schema: type, composed: dict[str, Any], width: int = 100) -> list[str]:
    """The keys of `schema` by section, each `key=value` (the composed value) and its help, in `width` columns."""
    docs = list(key_docs(schema))
    top = [d for d in docs if "." not in d.key and d.kind != "section"]
    lines = ["Run-level keys:"]
    for doc in top + [d for d in docs if d not in top]:
        if "." not in doc.key and doc.kind == "section":
            lines += ["", f"{doc.key}.*: {doc.help}"]
        elif doc.same_as:
            lines += entry(f"{doc.key}.*", f"{doc.help} The same keys as {doc.same_as}.*.", width)
        elif doc.kind == "section":
            lines += entry(f"{doc.key}.*", doc.help, width)
        elif ENTRY in doc.key:  # its value differs from entry to entry
            lines += entry(doc.key, full_help(doc), width)
        else:
            lines += entry(f"{doc.key}={value_at(composed, doc)}", full_help(doc), width)
    return lines


def value_at(composed: dict[str, Any], doc: KeyDoc) -> str:
    """The composed value of `doc.key`; the schema's default where the composed config has no such key."""
    node: Any = composed
    for part in doc.key.split("."):
        if not isinstance(node, dict) or part not in node:
            return shown(doc.default, 40)
        node = node[part]
    if isinstance(node, dict) and doc.kind.startswith("map of name to section"):
        return "{" + ", ".join(node) + "}" if len(", ".join(node)) <= 38 else f"{{{len(node)} entries}}"
    return shown(node, 40)


def entry(left: str, text: str, width: int, column: int = 30) -> list[str]:
    """argparse's layout: `  left` then the help from `column`, on the same line when `left` fits."""
    body = textwrap.wrap(text, width - column, break_on_hyphens=False) or [""]
    pad = " " * column
    head = f"  {left}"
    if len(head) <= column - 2:
        return [head.ljust(column) + body[0], *(pad + line for line in body[1:])]
    return [head, *(pad + line for line in body)]


# --- the README's key tables ---------------------------------------------------------------------


def jobs() -> list[tuple[str, type]]:
    """Each entry script and its schema, in the order the README lists them."""
    from medtune.config.audit_schema import ContaminationRunConfig
    from medtune.config.eval_schema import EvalRunConfig
    from medtune.config.judge_schema import JudgeRunConfig
    from medtune.config.qa_schema import GenerateQARunConfig
    from medtune.config.schema import TrainRunConfig
    from medtune.config.sweep_schema import SweepRunConfig

    return [
        ("train.py", TrainRunConfig),
        ("evaluate.py", EvalRunConfig),
        ("judge.py", JudgeRunConfig),
        ("generate_qa.py", GenerateQARunConfig),
        ("sweep.py", SweepRunConfig),
        ("contamination.py", ContaminationRunConfig),
    ]


def readme_blocks() -> dict[str, str]:
    """Block id -> markdown: each script's run-level keys (`train.py`), then each section once (`model`)."""
    blocks: dict[str, str] = {}
    sections: dict[str, tuple[type, str, list[str]]] = {}
    for script, schema in jobs():
        hints = typing.get_type_hints(schema)
        run_level = []
        for field in dataclasses.fields(schema):
            inner = plain_type(hints[field.name])
            if not dataclasses.is_dataclass(inner):
                run_level.append(field.name)
                continue
            known = sections.setdefault(field.name, (inner, help_of(field), []))
            if known[0] is not inner:
                raise TypeError(f"section {field.name} is a {known[0].__name__} in one script, {inner.__name__} here")
            known[2].append(script)
        docs = [d for d in key_docs(schema) if d.key in run_level]
        blocks[script] = details(f"{script}: run-level keys", docs)
    for name, (section, text, scripts) in sections.items():
        docs = list(key_docs(section, f"{name}."))
        blocks[name] = details(f"{name}.* ({', '.join(scripts)}): {text}", docs)
    return blocks


def details(summary: str, docs: list[KeyDoc]) -> str:
    rows = ["| key | type | default | what it does |", "| --- | --- | --- | --- |"]
    for doc in docs:
        if doc.same_as:
            rows.append(f"| `{code(doc.key)}.*` | section | | {cell(doc.help)} The same keys as `{doc.same_as}.*`. |")
        elif doc.kind == "section":
            rows.append(f"| `{code(doc.key)}.*` | section | | {cell(doc.help)} |")
        else:
            rows.append(f"| `{code(doc.key)}` | {cell(doc.kind)} | `{code(shown(doc.default))}` | {cell(doc.help)} |")
    summary = summary.replace("<", "&lt;").replace(">", "&gt;")
    return f"<details><summary>{summary}</summary>\n\n" + "\n".join(rows) + "\n\n</details>\n"


def cell(text: str) -> str:
    """`text` as one markdown table cell: pipes, stars and angle brackets shown as written."""
    for raw, escaped in (("|", "\\|"), ("*", "\\*"), ("<", "&lt;"), (">", "&gt;"), ("\n", " ")):
        text = text.replace(raw, escaped)
    return text


def code(text: str) -> str:
    """`text` inside a code span of a table cell: only pipes need escaping there."""
    return text.replace("|", "\\|")


def update_readme(text: str) -> str:
    """`text` with every key block rewritten; raises when a block id is unknown or one is missing."""
    blocks = readme_blocks()
    found = [m.group("id") for m in BLOCK.finditer(text)]
    unknown = [b for b in found if b not in blocks]
    missing = [b for b in blocks if b not in found]
    if unknown or missing:
        raise ValueError(
            f"README key blocks: unknown {unknown or 'none'}, missing {missing or 'none'}; add "
            f"'<!-- keys:<id> -->' and '<!-- /keys -->' lines for each missing id, then run {REGENERATE}"
        )
    return BLOCK.sub(lambda m: m.group(1) + blocks[m.group("id")] + m.group(4), text)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("--write", "--check"):
        print("usage: python -m medtune.config.reference --write|--check README.md", file=sys.stderr)
        return 2
    mode, path = argv
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    updated = update_readme(text)
    if mode == "--check":
        if updated != text:
            print(f"{path}: the key tables are out of date with the schemas; run {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
