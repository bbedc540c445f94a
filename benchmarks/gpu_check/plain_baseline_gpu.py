"""A plain transformers + PEFT LoRA / QLoRA run on one GPU (or the CPU), written as a user would without
medtune: the baseline the GPU check compares `train.py` with. `benchmarks/plain_peft_baseline.py` is the
same idea for the CPU only (float32, `use_cpu=True`); this one takes the device, dtype and adapter.

Same checkpoint, data and loss mask as the medtune run it is compared with: with `--examples FILE` the
token ids of a `dataset.format=tokens` file (`{"input_ids": [...], "labels": [...]}` per line, what train.py
reads with dataset.format=tokens), else the bundled sample set built with medtune's own `read_records(None)`
and `encode_records` (Alpaca template, loss on the response tokens only). `--sequential` takes the batches
in file order, as train.py's `train.sampling=sequential` does, so both train on the same batches.
Everything else is the stock recipe:

- lora:  `from_pretrained(dtype=bf16)`, gradient checkpointing (reentrant) + `enable_input_require_grads`,
         `LoraConfig(r=8, lora_alpha=8)` (PEFT's default targets: q_proj, v_proj), Trainer with `bf16=True`.
- qlora: `BitsAndBytesConfig(nf4, double quantization, bf16 compute)`, `prepare_model_for_kbit_training`
         (reentrant checkpointing), `LoraConfig(r=64, lora_alpha=16, lora_dropout=0.1, "all-linear")`,
         Trainer without autocast (as medtune sets it for a quantized base).

These are the settings of medtune's adapter=lora / adapter=qlora with hardware=a100x1 (checkpointing on).
adamw_torch, constant learning rate, max_grad_norm 1.0, random sampling with the seed (file order with
`--sequential`), no eval.

    python benchmarks/gpu_check/plain_baseline_gpu.py --checkpoint DIR --adapter qlora --device cuda --json out.json
    python benchmarks/gpu_check/plain_baseline_gpu.py --checkpoint DIR --examples medqa.jsonl --sequential ...

tokens/s is counted like medtune's (non-padding input tokens, `include_num_input_tokens_seen="non_padding"`);
the step log (step, tokens seen, perf_counter) lets the caller drop warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="model directory (the tiny cache dir train.py used)")
    parser.add_argument("--adapter", choices=["lora", "qlora"], default="lora")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument(
        "--dtype",
        choices=["bfloat16", "float32", "float16"],
        default="bfloat16",
        help="model dtype for lora; compute dtype for qlora",
    )
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-input-tokens", type=int, default=384)
    parser.add_argument("--max-target-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--examples", type=Path, help="token-id JSONL (dataset.format=tokens) instead of the sample set"
    )
    parser.add_argument("--sequential", action="store_true", help="batches in file order (train.sampling=sequential)")
    parser.add_argument("--output-dir", type=Path, default=Path("/tmp/plain_baseline_gpu"))
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()

    import torch
    from omegaconf import OmegaConf
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from torch.utils.data import SequentialSampler
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from medtune.config.schema import PromptConfig
    from medtune.data.readers import read_records
    from medtune.data.tokenize import encode_records

    cuda = args.device == "cuda"
    dtype = getattr(torch, args.dtype)
    qlora = args.adapter == "qlora"
    prompt = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(PromptConfig), OmegaConf.load(REPO / "conf/prompt/alpaca.yaml"))
    )
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if args.examples:
        examples = [json.loads(line) for line in args.examples.read_text().splitlines() if line.strip()]
        examples = [{"input_ids": e["input_ids"], "labels": e.get("labels", e["input_ids"])} for e in examples]
    else:
        examples, _ = encode_records(
            read_records(None), tokenizer, prompt, args.max_input_tokens, args.max_target_tokens
        )

    tick = time.perf_counter()
    quant = (
        BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
        if qlora
        else None
    )
    placement = {"": 0} if cuda else ({"": "cpu"} if qlora else None)
    model = AutoModelForCausalLM.from_pretrained(
        args.checkpoint, dtype=dtype, quantization_config=quant, device_map=placement
    )
    if qlora and not cuda:  # as medtune does on the CPU: keep the 4-bit layout autograd can go through
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
    ckpt_kwargs = {"use_reentrant": True}
    if qlora:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=args.gradient_checkpointing, gradient_checkpointing_kwargs=ckpt_kwargs
        )
        lora = LoraConfig(r=64, lora_alpha=16, lora_dropout=0.1, target_modules="all-linear", task_type="CAUSAL_LM")
    else:
        if args.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)
            model.enable_input_require_grads()
        lora = LoraConfig(r=8, lora_alpha=8, task_type="CAUSAL_LM")
    set_seed(args.seed)
    model = get_peft_model(model, lora)
    load_seconds = time.perf_counter() - tick
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    seq2seq = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    computed = {"tokens": 0, "real": 0, "widest": 0}

    def collate(batch):
        out = seq2seq(batch)
        computed["tokens"] += out["input_ids"].numel()
        computed["real"] += int(out["attention_mask"].sum())
        computed["widest"] = max(computed["widest"], out["input_ids"].shape[1])
        return out

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.rows: list[tuple[int, int, float]] = []
            self.losses: list[float] = []

        def _sync(self):
            if cuda:
                torch.cuda.synchronize()

        def on_train_begin(self, a, state, control, **kw):
            self._sync()
            self.rows.append((0, state.num_input_tokens_seen, time.perf_counter()))

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self._sync()
                self.rows.append((state.global_step, state.num_input_tokens_seen, time.perf_counter()))
                self.losses.append(logs["loss"])

    times = StepTimes()
    mixed = cuda and not qlora and dtype != torch.float32
    training_args = TrainingArguments(
        output_dir=str(args.output_dir),
        max_steps=args.steps,
        per_device_train_batch_size=args.micro_batch,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        optim="adamw_torch",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not cuda,
        seed=args.seed,
        data_seed=args.seed,
        bf16=mixed and dtype == torch.bfloat16,
        fp16=mixed and dtype == torch.float16,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        max_grad_norm=1.0,
        disable_tqdm=True,
    )

    class InOrder(Trainer):  # what transformers' train_sampling_strategy="sequential" does, on any 5.x
        def _get_train_sampler(self, *a, **kw):
            return SequentialSampler(self.train_dataset)

    trainer_class = InOrder if args.sequential else Trainer
    trainer = trainer_class(
        model=model, args=training_args, train_dataset=examples, data_collator=collate, callbacks=[times]
    )
    tick = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - tick

    tokens = int(trainer.state.num_input_tokens_seen)
    result = {
        "checkpoint": args.checkpoint,
        "adapter": args.adapter,
        "device": args.device,
        "dtype": args.dtype,
        "gradient_checkpointing": args.gradient_checkpointing,
        "examples": len(examples),
        "data": str(args.examples) if args.examples else "bundled sample set",
        "sequential": args.sequential,
        "steps": trainer.state.global_step,
        "micro_batch": args.micro_batch,
        "trainable": trainable,
        "tokens_seen": tokens,
        "train_seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "load_seconds": load_seconds,
        "computed_tokens": computed["tokens"],
        "collated_real_tokens": computed["real"],
        "widest_batch": computed["widest"],
        "step_log": times.rows,
        "losses": times.losses,
        "loss_first": times.losses[0] if times.losses else None,
        "loss_last": times.losses[-1] if times.losses else None,
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "wall_seconds": time.perf_counter() - started,
        "started_perf": started,
        "threads": torch.get_num_threads(),
    }
    if cuda:
        result.update(
            max_allocated=torch.cuda.max_memory_allocated(),
            max_reserved=torch.cuda.max_memory_reserved(),
            device_name=torch.cuda.get_device_name(0),
        )
    print(
        f"plain {args.adapter} on {args.device}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} tokens/s; "
        f"loss {result['loss_first']} -> {result['loss_last']}",
        file=sys.stderr,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
