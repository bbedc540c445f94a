"""Using a trained model: `medtune export` merges a real tiny LoRA / QLoRA run into a standalone
checkpoint that plain transformers loads with the trained logits; `medtune chat` answers piped
messages in the run's own prompt template, from the run dir and from the export."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import CONF, REPO, tiny_defaults
from medtune.chat import decoding_from
from medtune.errors import ConfigError, ModelUnavailableError
from medtune.llm.streaming import make_streamer
from medtune.modeling.export import EXPORT_FILE, dequantize_bnb_layers, export_run, inference_hardware

PROBE = "以下は医学知識に関する問題です。 A 54-year-old man presents with chest pain. Thưa bác sĩ"
SHORT_RUN = ["train.max_steps=3", "train.eval_steps=0", "exam_eval.enabled=false", "logger=none"]


def train_tiny(root, cache, adapter: str):
    """A real 3-step training run of the tiny model, in-process, as train.py would run it."""
    from hydra import compose, initialize_config_dir

    from medtune.config.job import JobContext
    from medtune.config.schema import TrainRunConfig
    from medtune.config.store import register_configs
    from medtune.entry import execute
    from medtune.jobs import TRAIN, to_typed

    register_configs()
    overrides = [f"paths.output_root={root}", f"paths.cache_dir={cache}", f"adapter={adapter}", *SHORT_RUN]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = to_typed(compose(config_name="train", overrides=tiny_defaults(overrides)), TrainRunConfig)
    job = JobContext(
        run_dir=root / adapter, override_dirname=f"adapter={adapter}", choices={"model": "tiny", "adapter": adapter}
    )
    return execute(TRAIN, cfg, job)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_cache):
    return train_tiny(tmp_path_factory.mktemp("runs"), tiny_cache, "lora")


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory, tiny_cache):
    return train_tiny(tmp_path_factory.mktemp("runs"), tiny_cache, "qlora")


@pytest.fixture(scope="module")
def lora_export(lora_run):
    return export_run(lora_run.run_dir)  # the default out dir: RUN_DIR/export


def probe_logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(PROBE, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return model(**batch).logits.float()


def load_plain(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)


def test_lora_export_is_a_standalone_model_with_the_trained_logits(lora_run, lora_export):
    out = lora_export.out_dir
    assert out == lora_run.run_dir / "export"
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "adapter_config.json").exists()  # merged: nothing left for PEFT to load
    meta = json.loads((out / EXPORT_FILE).read_text())
    assert meta["source_run"] == str(lora_run.run_dir.resolve()) and meta["dequantized"] is None
    assert meta["prompt"]["name"] == "alpaca" and "### Instruction:" in meta["prompt"]["template_no_input"]
    assert meta["verification"]["max_abs_logit_diff"] < 1e-4

    exported = load_plain(out)
    assert not any("lora" in name for name, _ in exported.named_parameters())
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    trained = probe_logits(lora_run.model, lora_run.tokenizer)  # the PeftModel training left in memory
    torch.testing.assert_close(probe_logits(exported, lora_run.tokenizer), trained, rtol=0, atol=1e-4)


def lora_deltas(adapter_dir) -> dict[str, torch.Tensor]:
    """weight name in the base -> B @ A x alpha / r, straight from the saved adapter files."""
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    scaling = config["lora_alpha"] / config["r"]
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    deltas = {}
    for key, a in tensors.items():
        if ".lora_A." in key:
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            name = key.split(".lora_A.")[0].removeprefix("base_model.model.") + ".weight"
            deltas[name] = (b.float() @ a.float()) * scaling
    return deltas


def test_qlora_export_is_the_dequantized_nf4_base_plus_the_merged_lora(qlora_run, tmp_path):
    from safetensors.torch import load_file

    from medtune.config.schema import Quantization
    from medtune.modeling.load import load_base_model
    from medtune.modeling.trained import load_run_config

    result = export_run(qlora_run.run_dir, tmp_path / "qlora_export", dtype="float32")
    meta = result.metadata
    assert meta["dequantized"] == "nf4" and meta["dequantized_layers"] == 28  # 4 layers x 7 linear
    assert "not the original base" in meta["caveat"]

    # The float export reproduces the 4-bit base + LoRA that was trained, up to float rounding.
    trained = probe_logits(qlora_run.model, qlora_run.tokenizer)
    exported = probe_logits(load_plain(result.out_dir), qlora_run.tokenizer)
    diff, scale = float((exported - trained).abs().max()), float(trained.abs().max())
    assert diff < 1e-4 * scale, (diff, scale)  # measured: ~1e-5 on logits of magnitude ~5
    assert meta["verification"]["max_abs_logit_diff"] < 1e-4 * meta["verification"]["logit_scale"]

    # Weight by weight: export = dequantized nf4 base + B @ A x alpha / r, and the delta is not zero.
    cfg = load_run_config(qlora_run.run_dir)
    checkpoint = json.loads((qlora_run.run_dir / "run_info.json").read_text())["checkpoint"]
    base = load_base_model(checkpoint, cfg.model, cfg.adapter, inference_hardware(cfg.hardware))
    assert dequantize_bnb_layers(base, torch.float32) == 28
    dequantized = base.state_dict()
    cfg.adapter.quantization.method = Quantization.none
    original = load_base_model(checkpoint, cfg.model, cfg.adapter, inference_hardware(cfg.hardware)).state_dict()
    saved = load_file(str(result.out_dir / "model.safetensors"))
    deltas = lora_deltas(qlora_run.run_dir / "adapter")
    assert len(deltas) == 28
    for name, delta in deltas.items():
        assert delta.abs().max() > 1e-4, name  # three steps moved every LoRA B away from zero
        torch.testing.assert_close(saved[name], dequantized[name] + delta, rtol=0, atol=1e-6)
        # ... and it is not the original float base + LoRA: the 4-bit rounding stays in the export.
        assert (saved[name] - (original[name] + delta)).abs().max() > 1e-3, name


def test_export_refuses_what_it_cannot_or_should_not_do(lora_run, lora_export, tmp_path, capsys):
    from medtune.cli import main
    from medtune.config.schema import AdapterConfig, AdapterKind
    from medtune.modeling.trained import load_run_config, save_run_config

    # An existing export is kept unless --force; --force replaces only exports, never other folders.
    with pytest.raises(ConfigError, match="not empty; pass --force"):
        export_run(lora_run.run_dir)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["export", str(lora_run.run_dir), "--out", str(busy)]) == 2
    assert "--force" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not an earlier export"):
        export_run(lora_run.run_dir, busy, force=True)
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="contains the run dir"):
        export_run(lora_run.run_dir, lora_run.run_dir.parent, force=True)

    # Not a run dir, a missing dir, an export passed as a run.
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a train.py run dir" in err and "Traceback" not in err
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        export_run(tmp_path / "nowhere")
    with pytest.raises(ModelUnavailableError, match="already an export"):
        export_run(lora_export.out_dir)

    # A run whose adapter/ is gone.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.yaml", "run_info.json"):
        shutil.copy(lora_run.run_dir / name, broken / name)
    with pytest.raises(ModelUnavailableError, match=r"adapter has no adapter_config.json"):
        export_run(broken)

    # train.py refuses adapter=none, so no real run has one; a config.yaml that says so is refused too.
    untuned = tmp_path / "untuned"
    cfg = load_run_config(lora_run.run_dir)
    cfg.adapter = AdapterConfig(name="none", kind=AdapterKind.none)
    save_run_config(cfg, untuned)
    with pytest.raises(ConfigError, match="adapter=none: it trained nothing"):
        export_run(untuned)


def test_export_force_replaces_an_earlier_export(lora_run, tmp_path):
    out = tmp_path / "again"
    first = export_run(lora_run.run_dir, out, verify=False)
    assert first.max_abs_logit_diff is None
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    second = export_run(lora_run.run_dir, out, dtype="bfloat16", force=True, verify=True)
    assert (out / "model.safetensors").stat().st_mtime_ns != stamp
    assert second.metadata["dtype"] == json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    # bf16 weights and activations keep ~3 significant digits: measured ~4% of the largest logit here.
    assert second.max_abs_logit_diff < 0.1 * second.metadata["verification"]["logit_scale"]
    assert not list(tmp_path.glob(".again.partial*"))


def chat(path, *flags, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medtune", "chat", str(path), *flags],
        check=False,
        input=stdin,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def responses(stdout: str) -> list[str]:
    return [line.removeprefix("model> ") for line in stdout.splitlines() if line.startswith("model> ")]


@pytest.mark.slow
def test_chat_answers_piped_messages_in_the_runs_template_from_run_and_export(lora_run, lora_export):
    messages = "What is the first test for chest pain?\nThưa bác sĩ, tôi bị đau ngực.\n"
    from_run = chat(lora_run.run_dir, "--show-prompt", "--max-new-tokens", "8", stdin=messages)
    assert from_run.returncode == 0, from_run.stderr[-3000:]
    for message in messages.splitlines():
        assert f"### Instruction:\n{message}\n\n### Response:" in from_run.stdout  # alpaca, no input block
        assert f"you> {message}" in from_run.stdout
    assert len(responses(from_run.stdout)) == 2
    assert "single-turn" in from_run.stderr and "tiny + lora" in from_run.stderr

    from_export = chat(lora_export.out_dir, "--max-new-tokens", "8", stdin=messages + "/exit\nnever read\n")
    assert from_export.returncode == 0, from_export.stderr[-3000:]
    assert "### Instruction:" not in from_export.stdout  # no --show-prompt
    assert "never read" not in from_export.stdout
    # Greedy decoding on logits equal to 1e-5: the export says what the run says.
    assert responses(from_export.stdout) == responses(from_run.stdout)


def test_chat_refuses_a_folder_that_is_neither_a_run_nor_an_export(tmp_path, capsys):
    from medtune.cli import main

    assert main(["chat", str(tmp_path)]) == 2
    assert "is neither a train.py run dir" in capsys.readouterr().err
    assert main(["chat", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["chat", str(tmp_path), "--top-k", "5"]) == 2  # flags are checked before anything loads
    assert "--top-k only applies when sampling" in capsys.readouterr().err


def test_streamer_shows_the_response_and_hides_the_next_template_block():
    for chunks, shown in [
        (["\n", "Aspirin", " first", ".\n", "#", "#", "# Instruction:", " more"], "Aspirin first."),
        (["Take", " rest", "  "], "Take rest"),
        (["a #", " b"], "a # b"),  # a lone '#' is text, not a stop
    ]:
        written = []
        streamer = make_streamer(None, written.append)
        for i, chunk in enumerate(chunks):
            streamer.on_finalized_text(chunk, stream_end=i == len(chunks) - 1)
        assert "".join(written) == shown == streamer.shown


def test_decoding_presets_and_flags():
    assert decoding_from("greedy").temperature == 0
    vi = decoding_from("vi", max_new_tokens=32)
    assert (vi.temperature, vi.top_k, vi.repetition_penalty, vi.max_new_tokens) == (0.5, 20, 1.2, 32)
    assert decoding_from("vi", temperature=0.7).top_k == 20
    with pytest.raises(ConfigError, match="--top-k only applies when sampling"):
        decoding_from("greedy", top_k=5)


@pytest.mark.slow
def test_chat_streams_through_the_generator_access_with_its_stop_tokens(lora_run):
    """`medtune chat` reaches the model through medtune.llm's hf access, as a judge or a QA generator
    reaches a run: the streamed text is the access's own answer to the same request."""
    from medtune.chat import chat_request, load_chat_model, open_access
    from medtune.llm.hf import generator_stop_ids

    chat_model = load_chat_model(lora_run.run_dir)
    access = open_access(chat_model, decoding_from("greedy", max_new_tokens=8))
    request = chat_request("What is the first test for chest pain?", "  ")  # a blank system text is none
    assert request.system is None
    written: list[str] = []
    streamed = access.stream(request, written.append)
    assert streamed == "".join(written)
    assert access.stop_token_ids == generator_stop_ids(chat_model.tokenizer, chat_model.prompt)
    assert access.generate([request], progress=False) == [streamed]
    assert "### Instruction:\nWhat is the first test for chest pain?" in access.render(request)
