"""CPU training-speed contender: Hugging Face TRL's SFTTrainer with a LoRA adapter.

    bash benchmarks/train_speed/setup_trl.sh      # once: benchmarks/train_speed/.venv-trl
    benchmarks/train_speed/.venv-trl/bin/python benchmarks/train_speed/trl_contender.py \
        --settings settings.json --out result.json

Runs in the TRL venv and does not import medtune. The model is given to `SFTTrainer` as its folder
path (TRL loads it in float32 unless told otherwise) with `peft_config=LoraConfig(...)`, TRL's own way
of training an adapter. The examples are handed over already tokenized, as a `datasets.Dataset` with
"input_ids" and "completion_mask" (1 where labels != -100): TRL sees the "input_ids" column and skips
tokenization, and with `completion_only_loss=True` (it must be set: TRL's default only turns it on for
prompt/completion text datasets) builds "labels" = input_ids with -100 where completion_mask is 0.
The loss is TRL's fused LM head: the sum of -log p over the completion tokens divided by their count
(the Trainer's num_items_in_batch), i.e. the mean cross-entropy of labels=-100 masking.

settings.json: "checkpoint" (local HF model folder), "examples" (JSONL of {"input_ids", "labels"},
labels -100 on prompt tokens), "steps", "micro_batch", "lr", "seed", "threads", "lora" {"r", "alpha",
"dropout", "targets"}, "bf16" (CPU bf16 autocast), "padding_free" (SFTConfig.padding_free: the batch
is one row of concatenated examples with position_ids, no padding). Optional:
"gradient_checkpointing" (default: TRL's default, which is True).

Everything else is TRL's default as a user would leave it (entropy and token-accuracy metrics on,
gradient checkpointing on), except what the benchmark fixes for every contender: step k trains on
examples (k-1)*micro_batch .. k*micro_batch-1 of the file, in file order (cycled when the file holds
fewer than steps*micro_batch; the training set is exactly those examples, sampled sequentially, one
epoch), constant lr, no warmup, adamw_torch, weight decay 0, max_grad_norm 1.0, packing off, no
truncation, no evaluation, no checkpoints.

result.json: "contender", "versions", "steps" [{"step", "real_tokens", "seconds", "loss"}],
"peak_rss_mib", "load_seconds" (tokenizer load + SFTTrainer construction, which loads the model,
wraps it with LoRA and prepares the dataset), "computed_tokens" (input_ids elements of every collated
batch, padding included), and "config" (what was run). "seconds" is the wall time from the Trainer's
on_step_begin to on_step_end callback; "loss" is the Trainer's logged loss of that step.
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

    import datasets
    import peft
    import torch
    import transformers
    import trl
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(threads)
    steps, micro_batch, seed = int(settings["steps"]), int(settings["micro_batch"]), int(settings["seed"])
    lora = settings["lora"]
    bf16 = bool(settings.get("bf16", False))
    padding_free = bool(settings.get("padding_free", False))

    # The training set: exactly steps * micro_batch examples in file order, cycling through the file.
    examples = read_examples(settings["examples"])
    train = [examples[i % len(examples)] for i in range(steps * micro_batch)]
    batches = [train[i * micro_batch : (i + 1) * micro_batch] for i in range(steps)]
    real_tokens = [sum(len(ex["input_ids"]) for ex in batch) for batch in batches]
    for ex in train:
        # TRL drops examples whose labels are all -100 while it prepares the dataset: the batches would shift.
        if all(label == -100 for label in ex["labels"]):
            raise SystemExit("trl_contender: an example has no completion token (its labels are all -100)")
    longest = max(len(ex["input_ids"]) for ex in examples)
    dataset = datasets.Dataset.from_dict(
        {
            "input_ids": [ex["input_ids"] for ex in train],
            "completion_mask": [[int(label != -100) for label in ex["labels"]] for ex in train],
        }
    )

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

    class CountingCollator:
        """Wraps TRL's own collator to record what each batch held (to check order and labels, count tokens)."""

        def __init__(self, inner):
            self.inner = inner
            self.batches: list[dict] = []

        def __call__(self, features):
            k = len(self.batches)
            expected = batches[k] if k < len(batches) else None
            as_expected = expected is not None and [(list(f["input_ids"]), list(f["labels"])) for f in features] == [
                (ex["input_ids"], ex["labels"]) for ex in expected
            ]
            out = self.inner(features)
            if "attention_mask" in out:
                real = int(out["attention_mask"].sum())
            else:  # padding-free: one row, right-padded only with pad_to_multiple_of (unset here)
                real = sum(len(f["input_ids"]) for f in features)
            self.batches.append({"computed": int(out["input_ids"].numel()), "real": real, "as_expected": as_expected})
            return out

    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="trl_contender_") as output_dir:
        config_kwargs = dict(
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
            bf16=bf16,  # SFTConfig would default to True
            seed=seed,
            data_seed=seed,
            disable_tqdm=True,
            packing=False,
            padding_free=padding_free,
            completion_only_loss=True,
            # padding_free without packing refuses a max_length (it could not enforce it); None never truncates.
            max_length=None if padding_free else max(4096, longest),
        )
        if "gradient_checkpointing" in settings:
            config_kwargs["gradient_checkpointing"] = bool(settings["gradient_checkpointing"])
        training_args = SFTConfig(**config_kwargs)

        load_started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(settings["checkpoint"])
        trainer = SFTTrainer(
            model=settings["checkpoint"],
            args=training_args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=LoraConfig(
                r=int(lora["r"]),
                lora_alpha=lora["alpha"],
                lora_dropout=float(lora["dropout"]),
                target_modules=list(lora["targets"]),
                task_type="CAUSAL_LM",
            ),
            callbacks=[timer],
        )
        load_seconds = time.perf_counter() - load_started
        # SFTTrainer builds its own collator (and refuses a custom one with padding_free); wrap it after the fact.
        collator = CountingCollator(trainer.data_collator)
        trainer.data_collator = collator
        trainer.train()

    problems = []
    if len(timer.seconds) != steps or sorted(timer.losses) != list(range(1, steps + 1)):
        problems.append(f"recorded {len(timer.seconds)} step times and losses for steps {sorted(timer.losses)}")
    used = collator.batches[:steps]
    if len(used) != steps or not all(b["as_expected"] for b in used):
        problems.append(
            "the batches were not the consecutive groups of micro_batch examples in file order with the file's labels"
        )
    if [b["real"] for b in used] != real_tokens[: len(used)]:
        problems.append(f"collated real tokens {[b['real'] for b in used]} != expected {real_tokens}")
    if problems:
        raise SystemExit("trl_contender: " + "; ".join(problems))

    model = trainer.model
    result = {
        "contender": "TRL SFTTrainer" + (" padding_free" if padding_free else "") + (" bf16" if bf16 else ""),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "trl": trl.__version__,
            "datasets": datasets.__version__,
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
            "bf16": bool(training_args.bf16),
            "padding_free": padding_free,
            "gradient_checkpointing": bool(training_args.gradient_checkpointing),
            "max_length": training_args.max_length,
            "model_dtype": str(next(model.parameters()).dtype),
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
        },
    }
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
