"""Planner accuracy: `medtune.modeling.planner.estimate_memory` against the measured peak of real training steps.

The tiny model (conf/model/tiny.yaml, built on first use under --cache-dir) is loaded and wrapped by the
project's own code path (`resolve_checkpoint`, `load_base_model`, `apply_adapter`) with adapters lora,
qlora (NF4 + double quantization, float32 compute on CPU) and full, and trained for a few AdamW steps on
random token batches at two batch shapes, with and without gradient checkpointing. Each setting runs in
its own child process (so that the peak RSS of one setting does not leak into the next); inside it,
training is an ordinary in-process loop (forward with labels, backward, optimizer step, zero_grad). The
widest shape also runs as train.py's default does: one padding-free row with medtune's per-example
attention and target-only loss (the rows marked "target-only padding-free"), planned with its defaults.

    .venv/bin/python benchmarks/planner_accuracy.py   # about 3.5 minutes on 2 CPU cores; --help for options

What is measured, for the last step (the earlier ones allocate the optimizer states):

* allocator peak (the number compared with the plan): bytes of the tensors alive when the step starts
  (parameters, buffers, bitsandbytes quantization states, optimizer states; unique storages) plus the
  highest running sum of every allocation minus every free that torch's CPU allocator reports to the
  profiler during the step (`torch.profiler` with `profile_memory=True`). This is exact tensor
  memory; it leaves out what is not a tensor.
* peak RSS increase: the process's peak resident set (ru_maxrss) after the unprofiled steps minus its
  RSS before the model was built (loading included). This adds everything the allocator count leaves out (glibc arenas and caching,
  oneDNN / OpenMP scratch, bitsandbytes and profiler bookkeeping) and is shown for honesty, not as
  the planner's target: the planner adds no fixed overhead on CPU.

Writes benchmarks/results/planner_accuracy.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ADAPTERS = ("lora", "qlora", "full")
SHAPES = ((1, 128), (4, 512))  # (micro batch, tokens per example)
# The tiny model's 4096-token vocabulary is 32x its width, so its peak is the loss's logits; a 4x wider
# variant (same vocabulary, built the same way) makes the decoder layers dominate instead.
MODELS = {
    "tiny": {},
    "tiny-wide": {"hidden_size": 512, "intermediate_size": 1536, "num_heads": 8, "num_kv_heads": 4},
}


def typed(cls, yaml: Path, **overrides):
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(yaml), overrides))


def configs(adapter_name: str, checkpointing: bool, model_name: str = "tiny"):
    from medtune.config.schema import AdapterConfig, HardwareConfig, ModelConfig

    model = typed(ModelConfig, REPO / "conf/model/tiny.yaml", architecture=MODELS[model_name])
    model.name = model_name
    quant = {"quantization": {"compute_dtype": "float32"}} if adapter_name == "qlora" else {}  # cpu.yaml's dtype
    adapter = typed(AdapterConfig, REPO / f"conf/adapter/{adapter_name}.yaml", **quant)
    hardware = typed(HardwareConfig, REPO / "conf/hardware/cpu.yaml", gradient_checkpointing=checkpointing)
    return model, adapter, hardware


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_tensor_bytes(model, optimizer) -> int:
    """Bytes of the distinct storages behind parameters, buffers, quantization states and optimizer states."""
    import torch

    storages: dict[int, int] = {}

    def add(t):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()

    for p in model.parameters():
        add(p)
        if p.grad is not None:
            add(p.grad)
        state = getattr(p, "quant_state", None)
        while state is not None:
            for name in ("absmax", "code", "offset"):
                add(getattr(state, name, None))
            state = getattr(state, "state2", None)
        add(getattr(p, "SCB", None))
    for b in model.buffers():
        add(b)
    for state in optimizer.state.values():
        for value in state.values():
            add(value)
    return sum(storages.values())


def measure(
    model_name: str,
    adapter_name: str,
    batch: int,
    seq: int,
    checkpointing: bool,
    steps: int,
    cache_dir: Path,
    loss_path: str = "full",
) -> dict:
    """One setting, in this process: train `steps` steps, profile the last one. `loss_path` "full": a padded
    batch and transformers' loss over full logits; "target": the same examples as one padding-free row
    (medtune_varlen attention) and medtune's target-only loss (`TargetOnlyHead`), as train.py's default."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from medtune.modeling.adapters import apply_adapter
    from medtune.modeling.description import resolve_checkpoint
    from medtune.modeling.load import load_base_model

    torch.manual_seed(0)
    model_cfg, adapter, hardware = configs(adapter_name, checkpointing, model_name)
    checkpoint = resolve_checkpoint(model_cfg, cache_dir)
    rss_before = rss_bytes()
    model = load_base_model(checkpoint, model_cfg, adapter, hardware)
    model = apply_adapter(model, adapter, hardware.gradient_checkpointing)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.0)

    vocab = model_cfg.architecture.vocab_size
    ids = torch.randint(4, vocab, (batch, seq))
    mask = torch.ones_like(ids)
    if batch > 1:
        mask[-1, -seq // 8 :] = 0  # the last example is shorter: a right-padded batch, as PadCollator makes
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, : seq // 2] = -100  # the prompt half carries no loss, as in encode_records

    if loss_path == "target":
        from medtune.modeling.attention import VARLEN, set_attention
        from medtune.training.target_loss import TargetOnlyHead

        set_attention(model, VARLEN)
        head = TargetOnlyHead(model)
        keep = mask.bool()
        row_labels = labels.clone()
        row_labels[:, 0] = -100  # no position predicts across an example boundary
        positions = torch.arange(seq).expand(batch, seq)
        flat = {"input_ids": ids[keep][None], "position_ids": positions[keep][None], "use_cache": False}
        flat_labels = row_labels[keep][None]

        def forward():
            with head.armed(flat_labels) as result:
                model(**flat)
            return result.total / result.count
    else:

        def forward():
            return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    def step():
        loss = forward()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    for _ in range(steps - 1):
        step()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the profiler adds its own
    baseline = live_tensor_bytes(model, optimizer)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss = step()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    running = peak = 0
    for event in events:
        running += event.nbytes()
        peak = max(peak, running)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "baseline": baseline,
        "step_peak": peak,
        "allocator_peak": baseline + peak,
        "rss_increase": rss_peak - rss_before,
        "loss": loss,
        "trainable": trainable,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="training steps per setting; the last is measured")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "outputs" / "cache")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "planner_accuracy.md")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: model,adapter,batch,seq,checkpointing
    args = parser.parse_args()

    if args.one:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        model_name, name, batch, seq, ckpt, loss_path = args.one.split(",")
        result = measure(model_name, name, int(batch), int(seq), ckpt == "1", args.steps, args.cache_dir, loss_path)
        print("RESULT " + json.dumps(result))
        return 0

    import torch
    from rich.console import Console
    from rich.table import Table

    from medtune.config.schema import LossKind, TrainingConfig
    from medtune.modeling.planner import MIB, count_parameters, estimate_memory
    from medtune.modeling.tiny import tiny_checkpoint

    started = time.perf_counter()
    models = args.models.split(",")
    for model_name in models:  # build once, before the children race for it
        tiny_checkpoint(configs("lora", False, model_name)[0].architecture, args.cache_dir)
    rows = []
    settings = [(m, a, shape, c, "full") for m in models for a in ADAPTERS for shape in SHAPES for c in (False, True)]
    # train.py's default path where the head matters: the widest batch, every adapter
    settings += [(m, a, SHAPES[-1], c, "target") for m in models for a in ADAPTERS for c in (False, True)]
    for model_name, name, (batch, seq), ckpt, loss_path in settings:
        model_cfg, adapter, hardware = configs(name, ckpt, model_name)
        train = TrainingConfig(micro_batch_size=batch, max_input_tokens=seq // 2, max_target_tokens=seq - seq // 2)
        if loss_path == "full":  # what the child measures: a padded batch, transformers' own loss
            train = dataclasses.replace(train, loss=LossKind.full_logits, padding_free=False)
        counts = count_parameters(model_cfg.architecture, adapter)
        plan = estimate_memory(model_cfg.architecture, adapter, hardware, train, model_cfg.dtype, counts)
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--one",
            f"{model_name},{name},{batch},{seq},{int(ckpt)},{loss_path}",
            "--steps",
            str(args.steps),
            "--cache-dir",
            str(args.cache_dir),
        ]
        if args.threads:
            command += ["--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"setting {name} b={batch} s={seq} failed:\n{done.stderr[-3000:]}")
        m = json.loads(line[len("RESULT ") :])
        static = plan.base_weights + plan.trainable_weights + plan.optimizer_states
        rows.append(
            {
                "setting": f"{model_name}, {name}, b={batch}, s={seq}, ckpt={'on' if ckpt else 'off'}"
                + (", target-only padding-free" if loss_path == "target" else ""),
                "estimate": plan.total,
                "measured": m["allocator_peak"],
                "rss": m["rss_increase"],
                "static_est": static,
                "static_meas": m["baseline"],
                "dynamic_est": plan.step_peak,
                "dynamic_meas": m["step_peak"],
                "moment": plan.peak_moment,
                "trainable_ok": m["trainable"] == counts.trainable,
            }
        )
        print(
            f"{rows[-1]['setting']}: estimate {plan.total / MIB:.2f} MiB, measured {m['allocator_peak'] / MIB:.2f} MiB",
            file=sys.stderr,
        )

    def err(est: int, meas: int) -> float:
        return 100.0 * (est - meas) / meas

    table = Table(title="planner vs measured peak, CPU float32")
    for column in ("setting", "estimated MiB", "measured MiB", "error %", "peak RSS increase MiB", "error vs RSS %"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["setting"],
            f"{r['estimate'] / MIB:.2f}",
            f"{r['measured'] / MIB:.2f}",
            f"{err(r['estimate'], r['measured']):+.1f}",
            f"{r['rss'] / MIB:.1f}",
            f"{err(r['estimate'], r['rss']):+.1f}",
        )
    (console := Console()).print(table)

    errors = [abs(err(r["estimate"], r["measured"])) for r in rows]
    rss_errors = [err(r["estimate"], r["rss"]) for r in rows]
    small = [r for r in rows if r["setting"].startswith("tiny,") and ", b=1," in r["setting"]] or rows

    def describe(model_name: str) -> str:
        a = configs("full", False, model_name)[0].architecture
        n = count_parameters(a, configs("full", False, model_name)[1]).total
        return (
            f"{model_name} (Llama, hidden {a.hidden_size}, MLP {a.intermediate_size}, {a.num_layers} layers, "
            f"{a.num_heads}/{a.num_kv_heads} heads, vocabulary {a.vocab_size}: {n:,} parameters)"
        )

    command = shlex.join(["python", "benchmarks/planner_accuracy.py", *sys.argv[1:]])
    lines = [
        "# Planner accuracy: estimated vs measured training-step memory",
        "",
        f"Command: `{command}`",
        "",
        (
            f"Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, CPU float32, no ZeRO, AdamW; "
            f"{args.steps} steps per setting, the last one measured, each setting in a fresh child process."
        ),
        "",
        "Models: " + "; ".join(describe(name) for name in models) + ". tiny is conf/model/tiny.yaml; tiny-wide the "
        "same with 4x the width, so that decoder layers rather than the 4096-token vocabulary dominate. Both are "
        "built by `resolve_checkpoint`, loaded by `load_base_model` and wrapped by `apply_adapter`; adapters from conf/adapter "
        "(qlora with float32 compute, as hardware=cpu sets it). Batches are random tokens; with b > 1 the last "
        "example is right-padded by 1/8 of its length; s = tokens per example (input + target). Rows marked "
        "target-only padding-free join the same examples into one row (positions restarting, no padding), attend "
        "with medtune_varlen and train with medtune's target-only loss, as train.py does by default; they are "
        "planned with its defaults (train.loss=auto, train.padding_free=true), the others with "
        "train.loss=full_logits train.padding_free=false.",
        "",
        (
            "Estimated: `estimate_memory(...).total` (weights + optimizer states + the step peak of gradients and "
            "activations; no fixed overhead on CPU). Measured: tensors alive at the start of the step plus the peak of "
            "torch's CPU allocator during the step (profiler memory events). Peak RSS increase: ru_maxrss after the "
            "unprofiled steps minus RSS before the model was built."
        ),
        "",
        "| setting | estimated MiB | measured MiB | error % | peak RSS increase MiB | error vs RSS % |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r['setting']} | {r['estimate'] / MIB:.2f} | {r['measured'] / MIB:.2f} | "
            f"{err(r['estimate'], r['measured']):+.1f} | {r['rss'] / MIB:.1f} | {err(r['estimate'], r['rss']):+.1f} |"
            for r in rows
        ),
        "",
        (
            "Split of the same numbers (MiB): static = weights + optimizer states, alive before the step; "
            "dynamic = what the step adds at its peak (gradients, activations, temporaries)."
        ),
        "",
        "| setting | static est | static measured | dynamic est | dynamic measured | dynamic error % | planner's peak moment |",
        "|---|---:|---:|---:|---:|---:|---|",
        *(
            f"| {r['setting']} | {r['static_est'] / MIB:.2f} | {r['static_meas'] / MIB:.2f} | {r['dynamic_est'] / MIB:.2f} | "
            f"{r['dynamic_meas'] / MIB:.2f} | {err(r['dynamic_est'], r['dynamic_meas']):+.1f} | {r['moment']} |"
            for r in rows
        ),
        "",
        (
            f"Against the allocator: mean absolute error **{sum(errors) / len(errors):.1f}%**, worst "
            f"**{max(errors):.1f}%**. Against the peak RSS increase the estimate is off by {min(rss_errors):+.0f}% to "
            f"{max(rss_errors):+.0f}%."
        ),
        "",
        (
            f"Trainable parameter counts of the planner equal the trained models' in "
            f"{sum(r['trainable_ok'] for r in rows)} of {len(rows)} settings."
        ),
        "",
        "What the numbers say:",
        "",
        (
            f"- Tensor memory: static parts (weights, 4-bit constants, Adam states) match to the byte; the step's "
            f"dynamic part is within {max(abs(err(r['dynamic_est'], r['dynamic_meas'])) for r in rows):.1f}%. The "
            "largest errors are with gradient checkpointing, where the peak falls inside a recomputed layer's "
            "backward and the planner's allowance for gradients in flight (3 I e per token for the gated MLP) is an "
            "approximation of which tensors are already freed."
        ),
        (
            f"- Fixed overheads dominate the process: the peak RSS increase exceeds the tensors by "
            f"{min(r['rss'] - r['measured'] for r in rows) / MIB:.0f} to {max(r['rss'] - r['measured'] for r in rows) / MIB:.0f} "
            "MiB (glibc arenas and freed-but-kept pages, libraries and kernels loaded when the model is built, "
            "oneDNN / OpenMP scratch, bitsandbytes' CPU fallbacks). For the 2M-parameter tiny model at batch 1 that "
            f"is {min(r['rss'] / r['measured'] for r in small):.0f}-{max(r['rss'] / r['measured'] for r in small):.0f}x "
            "the tensors the planner counts, so against RSS its estimate is off by "
            f"{min(err(r['estimate'], r['rss']) for r in small):+.0f}% to {max(err(r['estimate'], r['rss']) for r in small):+.0f}%; "
            "the planner adds no such overhead on CPU and is not meant to predict RSS."
        ),
        (
            "- Not covered by this CPU check (no GPU here): the CUDA context and caching-allocator fragmentation "
            "(a fixed 1 GiB + 5% in the planner), flash / memory-efficient SDPA (the CPU flash kernel saves the "
            "same q, k, v, output and log-sum-exp), CUDA's bool dropout masks (the CPU's are float), DeepSpeed's "
            "partitioning and buckets, and bitsandbytes' CUDA kernels. Those terms follow the libraries' source, "
            "not a measurement."
        ),
        "",
        f"Total run time: {time.perf_counter() - started:.0f} s.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
