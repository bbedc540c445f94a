"""Merge a finished run's adapter into its base and save one standalone transformers checkpoint.

`medtune export RUN_DIR` writes a directory that `AutoModelForCausalLM.from_pretrained` loads
with no PEFT and no bitsandbytes: the base with the LoRA weights merged in, the run's tokenizer,
and `medtune_export.json` (where it came from, the prompt template `medtune chat` needs, and how
closely the export reproduces the trained model's logits).

Caveat for runs on a quantized base (`adapter=qlora`, `adapter=lora_int8`): the adapter was
trained against the *dequantized* 4-bit (or int8) weights, not against the original bf16
checkpoint. The export therefore merges the LoRA delta into those dequantized weights, so its
outputs equal the trained model's up to float rounding. It is NOT "original base + LoRA": merging
into the original checkpoint would apply the adapter to weights it never saw. Re-quantizing the
export to 4-bit (or int8) rounds the merged weights again and gives a slightly different model;
to serve it quantized, quantize the export and re-check it, or keep base + adapter as trained.
PEFT's own `merge_and_unload` on a 4-bit model re-quantizes the merged weights in place, which is
exactly that second rounding, so the bitsandbytes layers are replaced by float `nn.Linear` first.
An int8 base differs once more: LLM.int8 also rounds the activations of every matmul, which no
float model reproduces, so an int8 export matches its trained model less closely (the export
records the measured difference).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.config.schema import (
    Accelerator,
    AdapterKind,
    DeepSpeedConfig,
    DType,
    HardwareConfig,
    PromptConfig,
    Quantization,
    TrainRunConfig,
)
from medtune.errors import ConfigError, ModelUnavailableError
from medtune.run_dir import EXPORT_FILE, TrainRunDir

QUANTIZED_CAVEAT = (
    "The weights are the dequantized {method} base plus the merged LoRA delta: they reproduce the "
    "trained model up to float rounding, but they are not the original base checkpoint plus LoRA. "
    "Re-quantizing them rounds the merged weights again and gives a slightly different model."
)
# A fixed verification batch: a rendered prompt in the run's own template, and mixed-language text.
PROBE_QUESTION = "A 54-year-old man presents with crushing chest pain. What is the most likely diagnosis?"
PROBE_TEXT = "以下は医学知識に関する問題です。 Thưa bác sĩ, tôi bị đau ngực và khó thở."


@dataclass
class ExportResult:
    out_dir: Path
    metadata: dict[str, Any]

    @property
    def max_abs_logit_diff(self) -> float | None:
        return (self.metadata.get("verification") or {}).get("max_abs_logit_diff")


def read_run(run_dir: Path) -> tuple[TrainRunConfig, dict[str, Any]]:
    """The typed config and run_info.json of a finished train.py run, or an error that says what is missing
    (`TrainRunDir.require`)."""
    from medtune.modeling.readable import load_run_config

    run = TrainRunDir(run_dir)
    run.require()
    return load_run_config(run.path), run.read_run_info()


def recorded_base(info: dict[str, Any], run_dir: Path) -> str:
    """The base run_info.json records: a hub id, or a folder that must still hold config.json."""
    recorded = info["checkpoint"]
    if not Path(recorded).is_absolute() or Path(recorded, "config.json").is_file():
        return recorded
    raise ModelUnavailableError(
        f"the base run={run_dir} was trained on is no longer at {recorded} (run_info.json): put it back, or export "
        "with `python -m medtune export`, which rebuilds a converted or tiny base from the run's model settings."
    )


def inference_hardware(hardware: HardwareConfig) -> HardwareConfig:
    """The run's hardware for one inference process: no DeepSpeed, and the CPU if its GPU is not here."""
    import torch

    hardware = dataclasses.replace(hardware, deepspeed=DeepSpeedConfig(), gradient_checkpointing=False)
    if hardware.accelerator == Accelerator.cuda and not torch.cuda.is_available():
        hardware = dataclasses.replace(hardware, accelerator=Accelerator.cpu, device_name="cpu")
    return hardware


def check_out_dir(out: Path, run_dir: Path, force: bool) -> None:
    """Refuse to write over anything but an empty dir or, with --force, an earlier export."""
    out, run = out.resolve(), run_dir.resolve()
    if out == run or run.is_relative_to(out):
        raise ConfigError([f"--out {out} contains the run dir {run}; choose a new directory, e.g. {run / 'export'}."])
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError([f"--out {out} is a file; choose a directory."])
    if not any(out.iterdir()):
        return
    if not force:
        raise ConfigError([f"--out {out} is not empty; pass --force to replace it, or choose another --out."])
    if not (out / EXPORT_FILE).is_file():
        raise ConfigError(
            [
                (
                    f"--out {out} is not empty and holds no {EXPORT_FILE}, so it is not an earlier export; "
                    "--force only replaces exports. Remove it yourself or choose another --out."
                )
            ]
        )


def dequantize_bnb_layers(model, dtype, device=None) -> int:
    """Replace every bitsandbytes Linear4bit / Linear8bitLt by an nn.Linear holding its dequantized weight.

    With `device`, each dequantized weight moves there at once (a 70B base fits a GPU in 4-bit, not in bf16)."""
    import bitsandbytes as bnb
    import torch

    replaced = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, bnb.nn.Linear4bit):
            weight = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
        elif isinstance(module, bnb.nn.Linear8bitLt):
            scale = module.weight.SCB if getattr(module.weight, "SCB", None) is not None else module.state.SCB
            weight = bnb.functional.int8_vectorwise_dequant(module.weight.data, scale)
        else:
            continue
        linear = torch.nn.Linear(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
        linear.weight = torch.nn.Parameter(weight.to(device=device, dtype=dtype), requires_grad=False)
        if module.bias is not None:
            linear.bias = torch.nn.Parameter(module.bias.data.to(device=device, dtype=dtype), requires_grad=False)
        model.set_submodule(name, linear)
        replaced += 1
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # drops quantization_config, so save_pretrained writes a plain float config
        quantizer.remove_quantization_config(model)
    return replaced


def probe_batch(tokenizer, prompt: PromptConfig) -> dict:
    from medtune.data.readers import InstructionRecord
    from medtune.data.templates import has_special_prefix, render_prompt

    record = InstructionRecord(instruction=PROBE_QUESTION, input="", output="", source="export")
    rendered = render_prompt(prompt, record, tokenizer)
    special = not has_special_prefix(tokenizer, rendered)  # a chat template writes its own BOS
    return tokenizer(
        [rendered + " Acute myocardial infarction.", PROBE_TEXT],
        return_tensors="pt",
        padding=True,
        add_special_tokens=special,
    )


def probe_logits(model, batch):
    """Float32 logits on the CPU for the unpadded positions of `batch`."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
    return logits.float().cpu()[batch["attention_mask"].bool()]


def export_run(
    run_dir: Path,
    out_dir: Path | None = None,
    dtype: str | None = None,
    force: bool = False,
    verify: bool = True,
    base: str | None = None,
) -> ExportResult:
    """Merge the run's adapter into its (dequantized) base, save it to `out_dir`, and check its logits.

    `base`: the checkpoint the adapter was trained on (`description.run_base_checkpoint`, which rebuilds a
    cache entry that is gone); default: the one run_info.json records, which must still be there."""
    from peft import PeftModel

    from medtune.modeling.load import load_base_model, load_tokenizer, torch_dtype
    from medtune.reporting.console import console

    run_dir = Path(run_dir)
    cfg, info = read_run(run_dir)
    out = Path(out_dir) if out_dir else TrainRunDir(run_dir).export_dir
    check_out_dir(out, run_dir, force)
    target = DType(dtype) if dtype else cfg.model.dtype
    hardware = inference_hardware(cfg.hardware)
    method = cfg.adapter.quantization.method
    full = cfg.adapter.kind == AdapterKind.full
    source = TrainRunDir(run_dir).saved_dir(full)
    started = time.perf_counter()

    weights = str(source) if full else (base or recorded_base(info, run_dir))
    with console.status(f"Loading {'the fine-tuned model' if full else 'the base as trained'} from {weights}"):
        tokenizer = load_tokenizer(str(source), cfg.model)
        model = load_base_model(weights, cfg.model, cfg.adapter, hardware)
        batch = probe_batch(tokenizer, cfg.prompt)
        if not full:
            model = PeftModel.from_pretrained(model, str(source))
        reference = probe_logits(model, batch) if verify else None
    console.print(
        f"loaded {cfg.model.name} + {cfg.adapter.name} ({'full fine-tune' if full else f'base in {method.value}'})"
    )

    dequantized = 0
    # The merge happens in CPU memory (what save_pretrained writes from anyway): a base that fits
    # a GPU in 4-bit need not fit it in float.
    with console.status("Merging the adapter into the base (in CPU memory)"):
        if not full:
            model = model.unload()  # back to the bare base, bitsandbytes layers and all
            if method != Quantization.none:
                dequantized = dequantize_bnb_layers(model, torch_dtype(target), device="cpu")
            model = model.to(device="cpu", dtype=torch_dtype(target))
            model = PeftModel.from_pretrained(model, str(source)).merge_and_unload()
        model = model.to(device="cpu", dtype=torch_dtype(target))
    if dequantized:
        console.print(
            f"dequantized {dequantized} bitsandbytes {method.value} layers to {target.value}, "
            "then merged the LoRA weights"
        )
    elif not full:
        console.print(f"merged the LoRA weights into the {target.value} base")

    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    metadata = export_metadata(run_dir, cfg, info, target, dequantized)
    try:  # written beside `out` first: a failed export leaves an earlier one as it was
        with console.status(f"Saving to {out}"):
            model.save_pretrained(str(staging), safe_serialization=True)
            tokenizer.save_pretrained(str(staging))
            del model
        if verify:
            with console.status("Reloading the export with plain transformers to compare logits"):
                metadata["verification"] = verify_export(staging, target, batch, reference)
        metadata["seconds"] = round(time.perf_counter() - started, 2)
        (staging / EXPORT_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
        if out.exists():
            shutil.rmtree(out)  # check_out_dir allowed it: empty, or an earlier export under --force
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print_export(out, metadata)
    return ExportResult(out_dir=out, metadata=metadata)


def verify_export(saved: Path, dtype: DType, batch, reference) -> dict[str, Any]:
    """Reload the saved dir with plain transformers and compare its logits with the trained model's."""
    import torch
    from transformers import AutoModelForCausalLM

    from medtune.modeling.load import torch_dtype

    placement = {"device_map": "auto"} if torch.cuda.is_available() else {}
    reloaded = AutoModelForCausalLM.from_pretrained(
        str(saved), dtype=torch_dtype(dtype), local_files_only=True, **placement
    )
    logits = probe_logits(reloaded, batch)
    diff = float((logits - reference).abs().max())
    scale = float(reference.abs().max())
    return {
        "max_abs_logit_diff": diff,
        "logit_scale": scale,  # the largest |logit| of the trained model on the probe
        "relative_diff": diff / scale if scale else None,
        "positions": int(reference.shape[0]),
        "reference": "the trained model as evaluate.py loads it (base as trained + adapter)",
    }


def export_metadata(run_dir: Path, cfg: TrainRunConfig, info: dict, dtype: DType, dequantized: int) -> dict[str, Any]:
    method = cfg.adapter.quantization.method
    return {
        "format": 1,
        "source_run": str(run_dir.resolve()),
        "base_checkpoint": info.get("checkpoint"),
        "model": cfg.model.name,
        "adapter": cfg.adapter.name,
        "adapter_kind": cfg.adapter.kind.value,
        "lora": None
        if cfg.adapter.kind == AdapterKind.full
        else {"r": cfg.adapter.r, "alpha": cfg.adapter.alpha, "target_modules": list(cfg.adapter.target_modules)},
        "dequantized": method.value if method != Quantization.none else None,
        "dequantized_layers": dequantized,
        "dtype": dtype.value,
        "caveat": QUANTIZED_CAVEAT.format(method=method.value) if method != Quantization.none else None,
        "prompt": {
            "name": cfg.prompt.name,
            "language": cfg.prompt.language,
            "template": cfg.prompt.template,
            "template_no_input": cfg.prompt.template_no_input,
            "answer_marker": cfg.prompt.answer_marker,
            "chat": cfg.prompt.chat,
            "system": cfg.prompt.system,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "verification": None,  # filled in after the saved dir is reloaded and compared
    }


def read_export(export_dir: Path) -> tuple[dict[str, Any], PromptConfig]:
    """The metadata of an export and the prompt template it was trained with."""
    meta = json.loads((Path(export_dir) / EXPORT_FILE).read_text())
    p = meta["prompt"]
    prompt = PromptConfig(
        name=p["name"],
        language=p.get("language", "en"),
        template=p["template"],
        template_no_input=p.get("template_no_input"),
        answer_marker=p.get("answer_marker", "Answer:"),
        chat=bool(p.get("chat", False)),
        system=p.get("system", ""),
    )
    return meta, prompt


def print_export(out: Path, metadata: dict[str, Any]) -> None:
    from rich.table import Table

    from medtune.reporting.console import console

    table = Table(title=f"medtune export: {metadata['model']} + {metadata['adapter']}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("out dir", str(out))
    table.add_row("source run", metadata["source_run"])
    table.add_row("dtype", metadata["dtype"])
    if metadata["dequantized"]:
        table.add_row("dequantized", f"{metadata['dequantized']} ({metadata['dequantized_layers']} layers)")
    check = metadata.get("verification")
    if check:
        table.add_row(
            "max |logit diff|",
            f"{check['max_abs_logit_diff']:.3g} vs the trained model (largest |logit| "
            f"{check['logit_scale']:.3g}, {check['positions']} positions)",
        )
    table.add_row("prompt template", metadata["prompt"]["name"])
    console.print(table)
    if metadata["caveat"]:
        console.print(f"[yellow]Note: {metadata['caveat']}[/yellow]")
    console.print(f"load it with AutoModelForCausalLM.from_pretrained({str(out)!r}), or chat: medtune chat {out}")
