"""CPU training-speed contender: plain transformers + PEFT LoRA, as a user would write it.

    .venv/bin/python benchmarks/train_speed/plain_contender.py --settings settings.json --out result.json

Runs in medtune's own .venv but does not import medtune: `AutoModelForCausalLM.from_pretrained`
(float32), `peft.LoraConfig` + `get_peft_model`, `DataCollatorForSeq2Seq(padding=True,
label_pad_token_id=-100)` and `transformers.Trainer` on the CPU.

settings.json: "checkpoint" (local HF model folder), "examples" (JSONL of {"input_ids", "labels"},
labels -100 on prompt tokens), "steps", "micro_batch", "lr", "seed", "threads", "lora" {"r", "alpha",
"dropout", "targets"}, "bf16" (CPU bf16 autocast), "padding_free" (ignored here: plain transformers
pads). Optional: "gradient_checkpointing" (default False, transformers' default).

Step k trains on examples (k-1)*micro_batch .. k*micro_batch-1 of the file, in file order; the file is
cycled when it holds fewer than steps*micro_batch examples (the training set is built as exactly
those steps*micro_batch examples, sampled sequentially, one epoch). Constant lr, no warmup, adamw_torch,
weight decay 0, max_grad_norm 1.0, no evaluation, no checkpoints.

result.json: "contender", "versions", "steps" [{"step", "real_tokens", "seconds", "loss"}],
"peak_rss_mib", "load_seconds" (tokenizer + model load + LoRA wrap + Trainer construction),
"computed_tokens" (input_ids elements of every collated batch, padding included), and "config"
(what was run). "seconds" is the wall time from the Trainer's on_step_begin to on_step_end callback
(forward, backward, clipping, optimizer step); "loss" is the Trainer's logged loss of that step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time


def read_examples(path: str) -> list[dict]:
    examples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            ids, labels = list(row["input_ids"]), list(row["labels"])
            if not ids or len(ids) != len(labels):
                raise SystemExit(f"{path}:{number}: input_ids and labels must be non-empty and of equal length")
            examples.append({"input_ids": ids, "labels": labels})
    if not examples:
        raise SystemExit(f"{path}: no examples")
    return examples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, help="settings JSON file")
    parser.add_argument("--out", required=True, help="result JSON file to write")
    args = parser.parse_args()
    with open(args.settings, encoding="utf-8") as handle:
        settings = json.load(handle)

    threads = int(settings["threads"])
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before torch is imported

    import peft
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    torch.set_num_threads(threads)
    steps, micro_batch, seed = int(settings["steps"]), int(settings["micro_batch"]), int(settings["seed"])
    lora = settings["lora"]
    bf16 = bool(settings.get("bf16", False))
    gradient_checkpointing = bool(settings.get("gradient_checkpointing", False))

    # The training set: exactly steps * micro_batch examples in file order, cycling through the file.
    examples = read_examples(settings["examples"])
    train = [examples[i % len(examples)] for i in range(steps * micro_batch)]
    batches = [train[i * micro_batch : (i + 1) * micro_batch] for i in range(steps)]
    real_tokens = [sum(len(ex["input_ids"]) for ex in batch) for batch in batches]

    class CountingCollator:
        """DataCollatorForSeq2Seq, plus a record of what each batch held (to check order and count tokens)."""

        def __init__(self, inner):
            self.inner = inner
            self.batches: list[dict] = []

        def __call__(self, features):
            k = len(self.batches)
            expected = batches[k] if k < len(batches) else None
            in_order = expected is not None and [list(f["input_ids"]) for f in features] == [
                ex["input_ids"] for ex in expected
            ]
            out = self.inner(features)
            self.batches.append(
                {
                    "computed": int(out["input_ids"].numel()),
                    "real": int(out["attention_mask"].sum()),
                    "in_order": in_order,
                }
            )
            return out

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.started = None
            self.seconds: list[float] = []
            self.losses: dict[int, float] = {}

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.started)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses[state.global_step] = float(logs["loss"])

    load_started = time.perf_counter()
    set_seed(seed)  # before the LoRA weights are initialised
    tokenizer = AutoTokenizer.from_pretrained(settings["checkpoint"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(settings["checkpoint"], dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=int(lora["r"]),
            lora_alpha=lora["alpha"],
            lora_dropout=float(lora["dropout"]),
            target_modules=list(lora["targets"]),
            task_type="CAUSAL_LM",
        ),
    )
    collator = CountingCollator(DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="plain_contender_") as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir,
            max_steps=steps,
            per_device_train_batch_size=micro_batch,
            gradient_accumulation_steps=1,
            learning_rate=float(settings["lr"]),
            lr_scheduler_type="constant",
            warmup_steps=0,
            optim="adamw_torch",
            weight_decay=0.0,
            max_grad_norm=1.0,
            train_sampling_strategy="sequential",
            eval_strategy="no",
            save_strategy="no",
            logging_steps=1,
            report_to="none",
            dataloader_num_workers=0,
            use_cpu=True,
            bf16=bf16,
            seed=seed,
            data_seed=seed,
            disable_tqdm=True,
            # transformers 5.24 deprecates the name (for activation_checkpointing): pass it only when asked to
            **({"gradient_checkpointing": True} if gradient_checkpointing else {}),
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=train,
            data_collator=collator,
            callbacks=[timer],
        )
        load_seconds = time.perf_counter() - load_started
        trainer.train()

    problems = []
    if len(timer.seconds) != steps or sorted(timer.losses) != list(range(1, steps + 1)):
        problems.append(f"recorded {len(timer.seconds)} step times and losses for steps {sorted(timer.losses)}")
    used = collator.batches[:steps]
    if len(used) != steps or not all(b["in_order"] for b in used):
        problems.append("the batches were not the consecutive groups of micro_batch examples in file order")
    if [b["real"] for b in used] != real_tokens[: len(used)]:
        problems.append(f"collated real tokens {[b['real'] for b in used]} != expected {real_tokens}")
    if problems:
        raise SystemExit("plain_contender: " + "; ".join(problems))

    result = {
        "contender": "plain transformers+peft" + (" bf16" if bf16 else ""),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "steps": [
            {"step": k + 1, "real_tokens": real_tokens[k], "seconds": timer.seconds[k], "loss": timer.losses[k + 1]}
            for k in range(steps)
        ],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_seconds": load_seconds,
        "computed_tokens": sum(b["computed"] for b in used),
        "config": {
            "threads": threads,
            "bf16": bf16,
            "padding_free": False,
            "gradient_checkpointing": gradient_checkpointing,
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
        },
    }
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
