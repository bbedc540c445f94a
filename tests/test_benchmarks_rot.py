"""Benchmarks cannot rot unseen: every medtune name a benchmark script imports exists, and the token check of
`benchmarks/lm_eval_compare` runs on the tiny model (the training-speed benchmark's smoke run is in
test_benchmark_smoke.py).

The scripts import medtune inside their functions (they start fast and run in other venvs too), so
importing a script proves little: the imports are read from their syntax trees instead, wherever they are.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BENCHMARKS = REPO / "benchmarks"


def benchmark_scripts() -> list[Path]:
    return sorted(p for p in BENCHMARKS.rglob("*.py") if not any(part.startswith(".") for part in p.parts))


def medtune_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) of every `from medtune... import name` and `import medtune...` in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "medtune":
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "medtune"]
    return found


def test_the_benchmarks_import_medtune_names_that_exist():
    scripts = benchmark_scripts()
    assert len(scripts) >= 15
    missing, checked = [], 0
    for script in scripts:
        for line, module_name, name in medtune_imports(script):
            checked += 1
            where = f"{script.relative_to(REPO)}:{line}"
            try:
                module = importlib.import_module(module_name)
            except ImportError as error:
                missing.append(f"{where}: {module_name} ({error})")
                continue
            if name is not None and not hasattr(module, name):
                try:
                    importlib.import_module(f"{module_name}.{name}")
                except ImportError:
                    missing.append(f"{where}: {module_name}.{name}")
    assert checked >= 50  # the scripts use medtune's internals widely: a parse that finds few is broken
    assert not missing, "benchmark scripts import names medtune no longer has:\n" + "\n".join(missing)


@pytest.mark.slow
def test_lm_eval_compare_token_check_runs_on_the_tiny_model(typed, tiny_cache, tmp_path):
    from medtune.modeling.description import resolve_checkpoint

    checkpoint = resolve_checkpoint(typed(["model=tiny"]).model, tiny_cache)
    docs = tmp_path / "docs.jsonl"
    rows = [
        {"id": 7, "prompt": "Question: which sign?\nAnswer:", "choices": ["fever", "cough", "rash"]},
        {"id": 8, "prompt": "Question: which drug?\nAnswer:", "choices": ["a", "b", "c", "d", "e"]},
    ]
    docs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "tokens.json"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "lm_eval_compare" / "medtune_tokens.py"),
            str(checkpoint),
            str(docs),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tokens = json.loads(out.read_text())
    assert sorted(tokens) == ["7", "8"]
    assert [len(tokens[k]) for k in ("7", "8")] == [3, 5]  # one sequence per choice
    for sequences in tokens.values():
        prompts = {tuple(ids[: len(ids) - n_scored]) for ids, n_scored in sequences}
        assert len(prompts) == 1  # every choice continues the same prompt ids
        assert all(n_scored >= 1 for _, n_scored in sequences)


@pytest.mark.parametrize("script", benchmark_scripts(), ids=lambda p: str(p.relative_to(BENCHMARKS)))
def test_every_benchmark_script_parses(script):
    compile(script.read_text(), str(script), "exec")
