"""In-process pieces of the GPU check (`benchmarks/gpu_check.sh`), one sub-command per step, each run as its
own process by `run_check.py` (so that each has its own time limit) and each writing one JSON file.

    python benchmarks/gpu_check/helpers.py env --json env.json
    python benchmarks/gpu_check/helpers.py data --spec spec.json --json out.json
    python benchmarks/gpu_check/helpers.py prebuild --spec spec.json --json out.json
    python benchmarks/gpu_check/helpers.py plan --spec spec.json --json out.json
    python benchmarks/gpu_check/helpers.py generate --spec spec.json --json out.json
    python benchmarks/gpu_check/helpers.py reload --export DIR --json out.json

A spec file holds {"device": "cuda"|"cpu", "runs": [{"name": ..., "overrides": [...train.py overrides]}], ...}.
Configs are composed with Hydra's compose API from the repo's conf/, exactly as train.py composes them, so
the tiny checkpoint paths (keyed on model.architecture) and the planner inputs are the ones train.py uses.
medtune's internal API is moving; every import here has a fallback or fails only its own step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GIB = 2**30


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def compose_train(overrides: list[str]):
    """train.py's config for these overrides (hydra.* ones left out), as a DictConfig."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from medtune.config.store import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=[o for o in overrides if not o.startswith("hydra.")])


def typed_model(overrides: list[str]):
    from omegaconf import OmegaConf

    cfg = compose_train(overrides)
    return OmegaConf.to_object(cfg.model), cfg


def resolve_checkpoint(model_cfg, cache_dir) -> str:
    from medtune.modeling.description import resolve_checkpoint as resolve

    return str(resolve(model_cfg, Path(cache_dir)))


# ------------------------------------------------------------------------------------------------ env


def env(args) -> dict:
    """Versions, the GPU, bf16, SDPA backends, flash-attn, a bitsandbytes 4-bit check and a matmul rate."""
    out: dict = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    imports = {}
    for module in ("torch", "transformers", "peft", "bitsandbytes"):
        tick = time.perf_counter()
        try:
            __import__(module)
            imports[module] = round(time.perf_counter() - tick, 2)
        except Exception as error:  # noqa: BLE001 - recorded below with the versions
            imports[module] = f"failed: {type(error).__name__}"
    out["import_seconds"] = imports  # each on top of the ones before (what every step's process pays)
    out["pycache_prefix"] = sys.pycache_prefix
    from importlib import metadata

    versions = {}
    for dist in (
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "bitsandbytes",
        "tokenizers",
        "safetensors",
        "huggingface-hub",
        "hydra-core",
        "omegaconf",
        "antlr4-python3-runtime",
        "rapidfuzz",
        "numpy",
        "deepspeed",
        "wandb",
        "gguf",
        "flash-attn",
        "triton",
        "liger-kernel",
        "rich",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    out["versions"] = versions
    out["module_files"] = {}
    for mod in ("medtune", "bitsandbytes", "hydra", "peft", "transformers"):
        try:
            out["module_files"][mod] = __import__(mod).__file__
        except Exception as error:  # noqa: BLE001 - recorded, not fatal
            out["module_files"][mod] = f"import failed: {type(error).__name__}: {error}"
    try:
        out["nvidia_smi"] = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
        out["nvidia_smi_query"] = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit,pstate",
                "--format=csv",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        out["nvidia_smi"] = f"not available: {error}"
    import torch

    out["torch_cuda"] = torch.version.cuda
    out["cuda_available"] = torch.cuda.is_available()
    checks: dict = {}
    out["checks"] = checks
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out["gpu"] = {
            "name": props.name,
            "total_memory_gib": props.total_memory / GIB,
            "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "count": torch.cuda.device_count(),
        }
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
        out["cudnn"] = torch.backends.cudnn.version()
        out["sdpa_flags"] = {
            "flash_sdp_enabled": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient_sdp_enabled": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cudnn_sdp_enabled": getattr(torch.backends.cuda, "cudnn_sdp_enabled", lambda: None)(),
            "math_sdp_enabled": torch.backends.cuda.math_sdp_enabled(),
            "is_flash_attention_available": getattr(
                torch.backends.cuda, "is_flash_attention_available", lambda: None
            )(),
        }
        device, dtype = "cuda", torch.bfloat16
    else:
        out["bf16_supported"] = None
        device, dtype = "cpu", torch.float32

    def check(name, fn):
        tick = time.perf_counter()
        try:
            checks[name] = {"ok": True, "result": fn()}
        except Exception as error:  # noqa: BLE001 - recorded
            checks[name] = {"ok": False, "error": f"{type(error).__name__}: {str(error)[:400]}"}
        checks[name]["seconds"] = round(time.perf_counter() - tick, 3)

    # SDPA: run each backend alone on a Llama-sized head (bf16 on the GPU)
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    q = torch.randn(4, 32, 512, 128, device=device, dtype=dtype)
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        for backend in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
            if not hasattr(SDPBackend, backend):
                continue

            def run_backend(b=getattr(SDPBackend, backend)):
                with sdpa_kernel([b]):
                    y = sdpa(q, q, q, is_causal=True)
                if device == "cuda":
                    torch.cuda.synchronize()
                return f"ok, finite={bool(torch.isfinite(y).all())}"

            check(f"sdpa_{backend.lower()}", run_backend)
    except ImportError as error:
        checks["sdpa_backends"] = {"ok": False, "error": str(error)}

    def flash_attn_package():
        from transformers.utils import is_flash_attn_2_available

        return {
            "flash_attn_spec": __import__("importlib.util").util.find_spec("flash_attn") is not None,
            "transformers_is_flash_attn_2_available": is_flash_attn_2_available(),
        }

    check("flash_attn_package", flash_attn_package)

    def attn_impl():
        from transformers import AutoModelForCausalLM, LlamaConfig

        config = LlamaConfig(
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=4,
            vocab_size=512,
        )
        model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device)
        return {"llama_attn_implementation": getattr(model.config, "_attn_implementation", None)}

    check("transformers_default_attention", attn_impl)

    def bnb_4bit():
        import bitsandbytes as bnb
        import bitsandbytes.functional as F

        w = torch.randn(4096, 4096, device=device, dtype=dtype)
        packed, state = F.quantize_4bit(w, quant_type="nf4", compress_statistics=True)
        back = F.dequantize_4bit(packed, state)
        rel = float((back.float() - w.float()).norm() / w.float().norm())
        layer = bnb.nn.Linear4bit(4096, 4096, bias=False, compute_dtype=dtype, quant_type="nf4")
        layer.weight = bnb.nn.Params4bit(w.cpu(), requires_grad=False, quant_type="nf4")
        layer = layer.to(device)
        x = torch.randn(8, 4096, device=device, dtype=dtype)
        y = layer(x)
        if device == "cuda":
            torch.cuda.synchronize()
        lib = getattr(getattr(bnb, "cextension", None), "lib", None)
        return {
            "version": bnb.__version__,
            "nf4_relative_error": rel,
            "linear4bit_out_finite": bool(torch.isfinite(y).all()),
            "native_library": str(getattr(getattr(lib, "_lib", None), "_name", None) or lib),
        }

    check("bitsandbytes_nf4", bnb_4bit)

    def triton_import():
        import triton

        return {"version": triton.__version__, "file": triton.__file__}

    check("triton", triton_import)

    def liger():
        """liger-kernel imports, and (on a GPU) its fused RMSNorm matches torch's: train.kernels=liger can run."""
        import liger_kernel.transformers as lk

        result = {"file": lk.__file__, "apply_liger_kernel_to_llama": hasattr(lk, "apply_liger_kernel_to_llama")}
        if device == "cuda":
            from liger_kernel.transformers.rms_norm import LigerRMSNorm

            x = torch.randn(64, 4096, device="cuda", dtype=torch.bfloat16)
            norm = LigerRMSNorm(4096, eps=1e-5).to("cuda")
            y = norm(x).float()
            ref = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5)
            result["rms_norm_max_abs_diff"] = float((y - ref).abs().max())
        return result

    check("liger_kernel", liger)

    def matmul_rate():
        """The dense matmul rate: bf16 on the GPU (the MFU denominator), float32 on the CPU (plumbing only)."""
        sizes, reps = ((4096, 8192, 16384), 10) if device == "cuda" else ((1024, 2048), 3)
        mm_dtype = torch.bfloat16 if device == "cuda" else torch.float32
        rates = {}
        for n in sizes:
            a = torch.randn(n, n, device=device, dtype=mm_dtype)
            b = torch.randn(n, n, device=device, dtype=mm_dtype)
            for _ in range(3):
                a @ b
            if device == "cuda":
                torch.cuda.synchronize()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(reps):
                    a @ b
                end.record()
                torch.cuda.synchronize()
                seconds = start.elapsed_time(end) / 1000 / reps
            else:
                tick = time.perf_counter()
                for _ in range(reps):
                    a @ b
                seconds = (time.perf_counter() - tick) / reps
            rates[str(n)] = 2 * n**3 / seconds / 1e12
            del a, b
        best = max(rates, key=rates.get)
        return {
            "dtype": str(mm_dtype).replace("torch.", ""),
            "tflops_by_size": rates,
            "peak_tflops": rates[best],
            "peak_size": int(best),
            "bf16_8192_cubed_tflops": rates.get("8192"),
        }

    check("matmul_bf16" if device == "cuda" else "matmul_cpu", matmul_rate)
    return out


# ------------------------------------------------------------------------------------------------ prebuild


def prebuild(spec: dict, out: Path | None = None) -> dict:
    """Build each run's tiny checkpoint through medtune's own builder (tokenizer, config, cache path, atomic
    write), with the random init done in `dtype` on `device` instead of float32 on the CPU: a 7B model then
    takes seconds to initialise and 13 GB instead of 27 GB of disk. train.py finds the checkpoint in its cache.
    `out` is rewritten after each model, so a step killed on the second still hands over the first."""
    import torch
    from transformers import AutoModelForCausalLM

    import medtune.modeling.tiny as tiny

    device = spec.get("device", "cpu")
    dtype = getattr(torch, spec.get("dtype", "float32"))
    results = {}
    original = AutoModelForCausalLM.__dict__.get("from_config")
    bound = AutoModelForCausalLM.from_config

    def fast_from_config(config, **kwargs):
        kwargs["dtype"] = dtype
        with torch.device(device):
            return bound(config, **kwargs)

    for run in spec["runs"]:
        tick = time.perf_counter()
        entry: dict = {}
        results[run["name"]] = entry
        try:
            model_cfg, cfg = typed_model(run["overrides"])
            cache_dir = Path(cfg.paths.cache_dir)
            # medtune decides the path (cache key), trains the tokenizer, writes the config and saves atomically
            AutoModelForCausalLM.from_config = fast_from_config
            try:
                path = tiny.tiny_checkpoint(model_cfg.architecture, cache_dir)
                entry["init"] = f"{dtype} on {device}"
            except Exception as error:  # noqa: BLE001 - medtune's own float32 CPU build is slower but safe
                entry["fast_init_error"] = f"{type(error).__name__}: {str(error)[:500]}"
                print(f"prebuild {run['name']}: fast init failed ({error}); medtune's own build", flush=True)
                path = None
            finally:
                if original is None:
                    del AutoModelForCausalLM.from_config
                else:
                    AutoModelForCausalLM.from_config = original
            if path is None:
                if device == "cuda":
                    torch.cuda.empty_cache()
                path = tiny.tiny_checkpoint(model_cfg.architecture, cache_dir)
                entry["init"] = "float32 on cpu (medtune's builder)"
            updates = run.get("config_updates") or {}
            if updates:  # numbers model.architecture has no key for (rope_theta): same shapes, same cost
                config_file = Path(path) / "config.json"
                config = json.loads(config_file.read_text())
                for key, value in updates.items():
                    if key == "rope_theta" and isinstance(config.get("rope_parameters"), dict):
                        config["rope_parameters"]["rope_theta"] = value  # transformers 5's layout
                    else:
                        config[key] = value
                partial = config_file.with_suffix(".json.partial")
                partial.write_text(json.dumps(config, indent=2) + "\n")
                partial.replace(config_file)
                entry["config_updates"] = updates
            resolved = resolve_checkpoint(model_cfg, cache_dir)  # what train.py will load
            if Path(resolved).resolve() != Path(path).resolve():
                raise RuntimeError(f"train.py would load {resolved}, not the prebuilt {path}")
            config = json.loads((Path(path) / "config.json").read_text())
            size = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
            entry.update(
                ok=True,
                checkpoint=str(path),
                bytes=size,
                config_dtype=config.get("dtype") or config.get("torch_dtype"),
                architecture={
                    k: config.get(k)
                    for k in (
                        "hidden_size",
                        "num_hidden_layers",
                        "num_attention_heads",
                        "num_key_value_heads",
                        "intermediate_size",
                        "vocab_size",
                        "tie_word_embeddings",
                        "max_position_embeddings",
                    )
                },
                rope=config.get("rope_parameters") or config.get("rope_theta"),
            )
            try:
                from transformers import AutoTokenizer

                entry["tokenizer_size"] = len(AutoTokenizer.from_pretrained(path))
            except Exception as error:  # noqa: BLE001
                entry["tokenizer_size"] = f"? ({error})"
        except Exception as error:  # noqa: BLE001 - the next run may still build
            entry.update(ok=False, error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc()[-3000:])
        entry["seconds"] = round(time.perf_counter() - tick, 2)
        if device == "cuda":
            torch.cuda.empty_cache()
        print(f"prebuild {run['name']}: {entry}", flush=True)
        if out is not None:
            write(out, results)
    return results


# ------------------------------------------------------------------------------------------------ data


def token_data(spec: dict) -> dict:
    """The token files the training steps read, from the carried data (`prepare_data.py`): SmolLM2's MedQA
    examples for each model's vocabulary (ids above it mapped with `id % vocab`, labels alike) and
    pretraining blocks of `block_tokens` (the examples' ids joined in order and cut, every label a target).
    First the carried records are encoded again here with the carried tokenizer files and medtune's
    `encode_records`, and compared with the carried token ids."""
    source, out = Path(spec["source"]), Path(spec["out"])
    info = json.loads((source / "data_info.json").read_text())
    examples = [json.loads(line) for line in (source / "medqa_smollm2.jsonl").read_text().splitlines() if line]
    result: dict = {"info": info, "examples": len(examples)}
    try:  # the tokenizer files and the code on this machine give the same ids
        from omegaconf import OmegaConf
        from transformers import AutoTokenizer

        from medtune.config.schema import DatasetFormat, PromptConfig
        from medtune.data.readers import read_records
        from medtune.data.tokenize import encode_records

        tick = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(str(source / "smollm2_tokenizer"))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        prompt = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(PromptConfig), OmegaConf.load(REPO / "conf/prompt/chat.yaml"))
        )
        again, _ = encode_records(
            read_records(source / "medqa_records.jsonl", DatasetFormat.exam), tokenizer, prompt, *info["limits"]
        )
        same = sum(a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"] for a, b in zip(again, examples))
        result["reencoded"] = {
            "tokenizer_size": len(tokenizer),
            "identical": same,
            "compared": len(examples),
            "seconds": round(time.perf_counter() - tick, 2),
        }
    except Exception as error:  # noqa: BLE001 - the carried ids are still what the runs train on
        result["reencoded"] = {"error": f"{type(error).__name__}: {str(error)[:400]}"}
    out.mkdir(parents=True, exist_ok=True)
    lengths = [len(e["input_ids"]) for e in examples]
    targets = [sum(label != -100 for label in e["labels"]) for e in examples]
    result.update(
        lengths=lengths,
        targets=targets,
        max_prompt=max(n - t for n, t in zip(lengths, targets)),
        max_target=max(targets),
        files={},
    )

    def write(path: Path, rows) -> None:
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")

    block = int(spec["block_tokens"])
    stream = [i for e in examples for i in e["input_ids"]]
    for vocab in sorted({int(v) for v in spec["vocabs"]}):
        mapped = vocab <= info["max_id"]

        def fit(ids, vocab=vocab, mapped=mapped):
            return [i % vocab if mapped and i != -100 else i for i in ids]

        medqa = out / f"medqa_v{vocab}.jsonl"
        write(medqa, ({"input_ids": fit(e["input_ids"]), "labels": fit(e["labels"])} for e in examples))
        blocks = [fit(stream[i : i + block]) for i in range(0, len(stream) - block + 1, block)]
        blocks_file = out / f"blocks{block}_v{vocab}.jsonl"
        write(blocks_file, ({"input_ids": b, "labels": b} for b in blocks))
        result["files"][str(vocab)] = {
            "medqa": str(medqa),
            "blocks": str(blocks_file),
            "blocks_count": len(blocks),
            "mapped": f"id % {vocab}" if mapped else "as tokenized",
        }
    result["block_tokens"] = block
    return result


# ------------------------------------------------------------------------------------------------ plan


def data_lengths(checkpoint: str, cfg) -> list[int]:
    """Token counts of the training examples (bundled sample set, the run's prompt and limits)."""
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from medtune.data.readers import read_records
    from medtune.data.tokenize import encode_records

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    prompt = OmegaConf.to_object(cfg.prompt)
    examples, _ = encode_records(
        read_records(None), tokenizer, prompt, cfg.train.max_input_tokens, cfg.train.max_target_tokens
    )
    return [len(e["input_ids"]) for e in examples]


def plan_runs(spec: dict) -> dict:
    """The planner's estimate for each run: as train.py dry_run=true computes it (the configured length limits),
    and for the widest batch the run really trains (micro batch x the longest example)."""
    import dataclasses

    from medtune.config.schema import TrainRunConfig
    from medtune.jobs import to_typed
    from medtune.modeling.planner import estimate_memory, plan

    results = {}
    for run in spec["runs"]:
        entry: dict = {}
        results[run["name"]] = entry
        tick = time.perf_counter()
        try:
            cfg = compose_train([*run["overrides"], "dry_run=true"])
            typed = to_typed(cfg, TrainRunConfig)
            p = plan(typed)
            m = p.memory
            entry.update(
                ok=True,
                micro_batch=p.micro_batch_size,
                seq_len=p.seq_len,
                total=m.total,
                overhead=m.overhead,
                allocated=m.total - m.overhead,
                base_weights=m.base_weights,
                trainable_weights=m.trainable_weights,
                optimizer_states=m.optimizer_states,
                step_peak=m.step_peak,
                peak_moment=m.peak_moment,
                gradient_checkpointing=m.gradient_checkpointing,
                precision=m.precision,
                parameters=p.counts.total,
                trainable=p.counts.trainable,
                attention=getattr(p.counts, "attention", None),
            )
            checkpoint = run.get("checkpoint")
            if run.get("widest"):  # token data: the caller knows the widest micro-batch the run trained
                wide = run["widest"]
                train = dataclasses.replace(
                    typed.train, max_input_tokens=wide["max_input"], max_target_tokens=wide["max_target"]
                )
                w = estimate_memory(
                    typed.model.architecture, typed.adapter, typed.hardware, train, typed.model.dtype, p.counts
                )
                entry.update(
                    widest=wide,
                    widest_total=w.total,
                    widest_allocated=w.total - w.overhead,
                    widest_step_peak=w.step_peak,
                    widest_peak_moment=w.peak_moment,
                )
            elif checkpoint and Path(checkpoint, "config.json").is_file():
                lengths = data_lengths(checkpoint, cfg)
                widest = max(lengths)
                entry.update(examples=len(lengths), longest_example=widest, mean_example=sum(lengths) / len(lengths))
                train = dataclasses.replace(typed.train, max_input_tokens=widest, max_target_tokens=0)
                w = estimate_memory(
                    typed.model.architecture, typed.adapter, typed.hardware, train, typed.model.dtype, p.counts
                )
                entry.update(
                    widest_total=w.total,
                    widest_allocated=w.total - w.overhead,
                    widest_step_peak=w.step_peak,
                    widest_peak_moment=w.peak_moment,
                )
        except Exception as error:  # noqa: BLE001
            entry.update(ok=False, error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc()[-3000:])
        entry["seconds"] = round(time.perf_counter() - tick, 2)
        print(f"plan {run['name']}: {entry}", flush=True)
    return results


# ------------------------------------------------------------------------------------------------ generate


def generate(spec: dict) -> dict:
    """Greedy exam generation through medtune's generate_responses: one question at a time vs left-padded
    batches, on the bundled sample exam (prompt A, 1 worked example), like benchmarks/generation_batching.py
    (which needs IgakuQA, not on the GPU machine)."""
    import torch
    from omegaconf import OmegaConf

    from medtune.config.exam_schema import EvalConfig, ExamConfig
    from medtune.config.schema import Accelerator, AdapterConfig, HardwareConfig, PromptConfig
    from medtune.exam.loading import load_exam
    from medtune.exam.prompting import build_prompt, read_fewshot
    from medtune.llm.generation import generate_responses
    from medtune.modeling.load import load_base_model, load_tokenizer

    def typed(cls, yaml: Path):
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(yaml)))

    device = spec.get("device", "cpu")
    model_cfg, cfg = typed_model(spec["overrides"])
    tick = time.perf_counter()
    checkpoint = resolve_checkpoint(model_cfg, cfg.paths.cache_dir)
    exam = typed(ExamConfig, REPO / "conf/exam/sample.yaml")
    prompt = typed(PromptConfig, REPO / "conf/prompt/medpalm2_cot.yaml")
    questions = load_exam(exam)
    shots = read_fewshot(exam.fewshot_path, exam.language, exam.english)[:1]
    prompts = [build_prompt(prompt, q, shots) for q in questions][: spec.get("questions") or None]
    hardware = HardwareConfig(name=device, accelerator=Accelerator.cuda if device == "cuda" else Accelerator.cpu)
    tokenizer = load_tokenizer(checkpoint, model_cfg, padding_side="left")
    model = load_base_model(checkpoint, model_cfg, AdapterConfig(name="none"), hardware)
    load_seconds = time.perf_counter() - tick
    positions = model.config.max_position_embeddings
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows, texts = [], {}
    one_n = min(len(prompts), spec.get("one_at_a_time", 8))
    for mode, size, subset in (("one at a time", 1, prompts[:one_n]), ("batched", spec.get("batch_size", 16), prompts)):
        settings = EvalConfig(batch_size=size, max_new_tokens=spec.get("max_new_tokens", 64), do_sample=False)
        generate_responses(model, tokenizer, subset[:size], settings, positions, lambda *_: None, progress=False)
        sync()
        out: dict[int, str] = {}
        start = time.perf_counter()
        stats = generate_responses(
            model,
            tokenizer,
            subset,
            settings,
            positions,
            lambda idx, txt, out=out: out.update(zip(idx, txt)),
            progress=False,
        )
        sync()
        seconds = time.perf_counter() - start
        rows.append(
            {
                "mode": mode,
                "batch_size": size,
                "questions": len(subset),
                "seconds": seconds,
                "questions_per_s": len(subset) / seconds,
                "new_tokens": stats.new_tokens,
                "new_tokens_per_s": stats.new_tokens / seconds,
            }
        )
        texts[mode] = [out[i] for i in range(len(subset))]
        print(f"generate {mode}: {rows[-1]}", flush=True)
    same = sum(a == b for a, b in zip(texts["one at a time"], texts["batched"][:one_n]))
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
    return {
        "checkpoint": checkpoint,
        "dtype": model_cfg.dtype.value,
        "load_seconds": load_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "exam_questions": len(questions),
        "rows": rows,
        "identical": same,
        "compared": one_n,
        "max_new_tokens": spec.get("max_new_tokens", 64),
        "peak_allocated": peak,
        "example_output": texts["batched"][0][:200] if texts["batched"] else None,
    }


# ------------------------------------------------------------------------------------------------ reload


def reload(export_dir: Path, device: str) -> dict:
    """Load a `medtune export` folder with plain transformers (no PEFT, no bitsandbytes) and run it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tick = time.perf_counter()
    config = json.loads((export_dir / "config.json").read_text())
    meta_file = export_dir / "medtune_export.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    dtype = getattr(torch, meta.get("dtype") or "float32")
    model = AutoModelForCausalLM.from_pretrained(
        str(export_dir), dtype=dtype, local_files_only=True, **({"device_map": {"": 0}} if device == "cuda" else {})
    )
    tokenizer = AutoTokenizer.from_pretrained(str(export_dir))
    modules = {type(m).__module__.split(".")[0] for m in model.modules()}
    batch = tokenizer(["A 54-year-old man presents with crushing chest pain."], return_tensors="pt").to(model.device)
    with torch.no_grad():
        logits = model(**batch).logits
        generated = model.generate(**batch, max_new_tokens=8, do_sample=False)
    return {
        "seconds": time.perf_counter() - tick,
        "has_quantization_config": "quantization_config" in config,
        "module_packages": sorted(modules),
        "bitsandbytes_layers": "bitsandbytes" in modules,
        "peft_layers": "peft" in modules,
        "logits_finite": bool(torch.isfinite(logits).all()),
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype),
        "device": str(model.device),
        "generated_tokens": int(generated.shape[1] - batch["input_ids"].shape[1]),
        "export_meta": {k: meta.get(k) for k in ("dequantized", "dequantized_layers", "dtype", "verification")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["env", "data", "prebuild", "plan", "generate", "reload"])
    parser.add_argument("--spec", type=Path)
    parser.add_argument("--export", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text()) if args.spec else {}
    if args.command == "env":
        result = env(args)
    elif args.command == "data":
        result = token_data(spec)
    elif args.command == "prebuild":
        result = prebuild(spec, args.json)
    elif args.command == "plan":
        result = plan_runs(spec)
    elif args.command == "generate":
        result = generate(spec)
    else:
        result = reload(args.export, args.device)
    write(args.json, result)
    failed = (
        [k for k, v in result.items() if isinstance(v, dict) and v.get("ok") is False]
        if args.command in ("prebuild", "plan")
        else []
    )
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
