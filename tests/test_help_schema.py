"""Help from the schema: every config key carries its help in its field's metadata (`help_field`), each
script's `--help` shows its own keys with that help and the values the command composes, and the
README's key tables are generated from it (`medtune.config.reference`)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
import typing
from pathlib import Path

import pytest

import medtune.config
from conftest import REPO, cli
from medtune.config.field_help import help_field, help_of
from medtune.config.reference import REGENERATE, full_help, help_lines, key_docs, readme_blocks, update_readme
from medtune.config.store import SCHEMAS

HELP_HEADING = "== Keys and their help"


def schema_dataclasses() -> set[type]:
    """Every dataclass of the config schema: those reachable from the scripts' schemas, and every one
    defined in a medtune.config.*schema* module."""
    found: set[type] = set()

    def parts(declared) -> list:  # Optional[X], List[X], Dict[str, X]: X too
        return [declared, *(p for arg in typing.get_args(declared) for p in parts(arg))]

    def reach(cls: type) -> None:
        if cls in found:
            return
        found.add(cls)
        for declared in typing.get_type_hints(cls).values():
            for part in parts(declared):
                if dataclasses.is_dataclass(part):
                    reach(part)

    for schema in SCHEMAS.values():
        reach(schema)
    for module_info in pkgutil.iter_modules(medtune.config.__path__):
        if "schema" in module_info.name:
            module = importlib.import_module(f"medtune.config.{module_info.name}")
            for _, cls in inspect.getmembers(module, dataclasses.is_dataclass):
                if cls.__module__ == module.__name__:
                    reach(cls)
    return found


def test_every_field_of_every_schema_dataclass_has_help():
    classes = schema_dataclasses()
    names = {cls.__name__ for cls in classes}
    assert {"TrainRunConfig", "EvalRunConfig", "JudgeSystemConfig", "GeneratorConfig", "CellConfig"} <= names
    assert {"ArchitectureConfig", "EndpointConfig", "ExamFieldsConfig", "MixtureSourceConfig", "SearchConfig"} <= names
    missing = [f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c) if not help_of(f).strip()]
    assert not missing, f"config keys without help (give each a help_field(default, '...')): {missing}"


def test_help_field_refuses_a_key_without_help_and_keeps_the_default():
    with pytest.raises(ValueError, match="needs its help text"):
        help_field(3, "  ")
    plain = help_field(3, "three  things\n  at once")
    assert plain.default == 3 and plain.metadata["help"] == "three things at once"
    listed = help_field(help="a list", factory=list)
    assert listed.default_factory is list and listed.default is dataclasses.MISSING


def test_key_docs_describe_a_repeated_section_once_and_name_the_values_of_a_choice():
    judge = {d.key: d for d in key_docs(SCHEMAS["judge_schema"])}
    assert judge["judge.b"].same_as == "judge.a" and "judge.b.name" not in judge
    assert judge["judge.a.generator.temperature"].default == 0.5  # the paper's decoding, not GeneratorConfig's 0.0
    assert "judge.judge.temperature" in judge  # another default: described in full
    sweep = {d.key: d for d in key_docs(SCHEMAS["sweep_schema"])}
    assert "sweep.cells.<name>.label" in sweep
    assert sweep["sweep.systems.<name>"].same_as == "sweep.cells.<name>"
    assert sweep["sweep.search.template"].same_as == "sweep.cells.<name>"
    train = {d.key: d for d in key_docs(SCHEMAS["train_schema"])}
    scheduler = train["train.lr_scheduler"]
    assert scheduler.kind == "constant | constant_with_warmup | linear | cosine"
    assert full_help(scheduler).endswith("One of: constant, constant_with_warmup, linear, cosine.")
    assert full_help(train["task"]) == train["task"].help  # its help names both values already
    assert train["train.epochs"].kind == "float or null"


# Each script: a key of its own with the start of its help, a key composed from a group option with the
# value it composes, and keys of other scripts that its --help must not list.
SCRIPTS = {
    "train.py": ("train.learning_rate", "model.name=tiny", ["eval.num_shots", "judge.swap", "qa.chunk_tokens"]),
    "evaluate.py": ("eval.num_shots", "exam.name=sample", ["train.learning_rate", "exam_eval.enabled", "dataset.path"]),
    "judge.py": ("judge.swap", "prompt.name=vi_chat", ["train.learning_rate", "eval.num_shots", "exam.name"]),
    "generate_qa.py": ("qa.chunk_tokens", "model.name=smollm2_135m", ["judge.swap", "prompt.name", "train.max_steps"]),
    "sweep.py": ("sweep.launcher", "sweep.name=smoke", ["model.name", "train.learning_rate", "eval.num_shots"]),
    "contamination.py": (
        "contamination.ngram_words",
        "exam.name=sample",
        ["model.name", "eval.num_shots", "train.seed"],
    ),
}


def key_help(text: str, key: str) -> tuple[str, str]:
    """The value and the (unwrapped) help --help shows for `key`."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"  {key}="))
    left, _, first = lines[at][2:].partition("  ")
    words = [first.strip()]
    for line in lines[at + 1 :]:
        if not line.startswith(" " * 30) or not line.strip():
            break
        words.append(line.strip())
    return left.strip().split("=", 1)[1], " ".join(w for w in words if w)


@pytest.mark.parametrize("script", [s if s == "train.py" else pytest.param(s, marks=pytest.mark.slow) for s in SCRIPTS])
def test_help_lists_the_scripts_own_keys_with_their_help_and_composed_values(script):
    own, composed, others = SCRIPTS[script]
    done = cli(script, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout[done.stdout.index(HELP_HEADING) :]
    schema = SCHEMAS[f"{script.removesuffix('.py')}_schema"]
    docs = {d.key: d for d in key_docs(schema)}
    _, shown_help = key_help(text, own)
    assert shown_help == full_help(docs[own])
    assert f"\n  {composed}" in text  # the option's value, not the schema's ???
    for key in others:
        assert not re.search(rf"^  {re.escape(key)}=", text, re.MULTILINE), key
    section_heads = re.findall(r"^(\w+)\.\*: ", text, re.MULTILINE)
    assert section_heads == [d.key for d in key_docs(schema) if "." not in d.key and d.kind == "section"]
    assert all(len(line) <= 100 for line in text.splitlines()), "the key help stays within 100 columns"


def test_hydra_help_still_fills_the_flags_and_hydras_groups_of_its_template():
    """medtune has Hydra fill a help template's placeholders when the template uses them (its `--help` uses
    none of Hydra's group lists): `--hydra-help`, whose template uses them, still shows them all."""
    done = cli("evaluate.py", "--hydra-help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "== Flags ==" in done.stdout and "--multirun,-m" in done.stdout
    assert re.search(r"^hydra/launcher: basic, joblib", done.stdout, re.MULTILINE), done.stdout[-2000:]


def test_help_lines_show_no_value_for_the_keys_of_a_user_named_entry():
    lines = help_lines(SCHEMAS["sweep_schema"], {"sweep": {"cells": {"a": {"label": "1-1"}, "b": {}}}}, width=100)
    assert any(line.startswith("  sweep.cells={a, b} ") for line in lines)
    label = next(line for line in lines if line.startswith("  sweep.cells.<name>.label"))
    assert label.split()[0] == "sweep.cells.<name>.label" and "Table 2" in label


def test_help_lines_wrap_to_the_terminal_width():
    lines = help_lines(SCHEMAS["evaluate_schema"], {"eval": {"num_shots": 3}}, width=80)
    assert all(len(line) <= 80 for line in lines)
    at = next(i for i, line in enumerate(lines) if line.startswith("  eval.num_shots=3 "))
    assert lines[at][30:].startswith("Worked chain-of-thought examples")
    long_key = next(line for line in lines if line.startswith("  exam.allow_prompt_language_mismatch=false"))
    assert long_key == "  exam.allow_prompt_language_mismatch=false"  # too wide: its help starts on the next line


def test_readme_key_tables_are_generated_from_the_schemas():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert update_readme(readme) == readme, f"README.md's key tables are out of date with the schemas: run {REGENERATE}"
    blocks = readme_blocks()
    assert list(blocks)[:5] == ["train.py", "evaluate.py", "judge.py", "generate_qa.py", "sweep.py"]
    assert "| `train.learning_rate` | float | `0.0002` | The peak learning rate (after warmup). |" in blocks["train"]
    assert "model.* (train.py, evaluate.py, judge.py, generate_qa.py): " in blocks["model"]  # a shared section, once
    assert "&lt;paths.output_root&gt;" in blocks["train.py"]  # angle brackets survive markdown


def test_a_stale_or_missing_key_table_is_refused_with_the_command_that_regenerates_it(tmp_path: Path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    stale = readme.replace("The peak learning rate (after warmup).", "An old text.")
    assert update_readme(stale) == readme
    without = re.sub(r"<!-- keys:judge -->\n.*?<!-- /keys -->\n", "", readme, flags=re.DOTALL)
    with pytest.raises(ValueError, match=r"missing \['judge'\].*python -m medtune.config.reference --write README.md"):
        update_readme(without)
    from medtune.config.reference import main

    (tmp_path / "README.md").write_text(stale, encoding="utf-8")
    assert main(["--check", str(tmp_path / "README.md")]) == 1
    assert main(["--write", str(tmp_path / "README.md")]) == 0
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == readme
    assert main(["--check", str(tmp_path / "README.md")]) == 0
