"""A plain transformers + PEFT LoRA run, written as a user would without medtune: the baseline of
`throughput_vs_plain.py`.

Same tiny checkpoint directory, tokenizer, data and loss mask as `python train.py` (model=tiny,
dataset=sample, prompt=alpaca): the examples are built with medtune's own `read_records(None)` and
`encode_records` (Alpaca template, loss on the response tokens only, 384 / 256 token limits), so both
sides train on identical token ids. Everything else is stock: `AutoModelForCausalLM.from_pretrained`,
`peft.LoraConfig` defaults (r 8, alpha 8, dropout 0, q_proj / v_proj), `DataCollatorForSeq2Seq`
padding and `transformers.Trainer` on the CPU (adamw_torch, constant lr, as medtune's tiny schedule).

    .venv/bin/python benchmarks/plain_peft_baseline.py --json /tmp/plain.json   # about 25 s on 2 idle cores

Tokens/s is counted like medtune's: non-padding input tokens seen (`include_num_input_tokens_seen=
"non_padding"`) over the wall time of `trainer.train()`; the per-step log times are saved as well.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="model directory (default: medtune's cached tiny model)")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "outputs" / "cache")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    parser.add_argument("--output-dir", type=Path, default=Path("/tmp/plain_peft_baseline"))
    parser.add_argument("--json", type=Path, default=None, help="write the measurements here")
    args = parser.parse_args()

    import torch
    from omegaconf import OmegaConf
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

    from medtune.config.schema import ModelConfig, PromptConfig
    from medtune.data.readers import read_records
    from medtune.data.tokenize import encode_records

    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from medtune.modeling.description import resolve_checkpoint

        model_cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(REPO / "conf/model/tiny.yaml"))
        checkpoint = resolve_checkpoint(OmegaConf.to_object(model_cfg), args.cache_dir)
    prompt = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(PromptConfig), OmegaConf.load(REPO / "conf/prompt/alpaca.yaml"))
    )

    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    tokenizer.padding_side = "right"
    examples, _ = encode_records(read_records(None), tokenizer, prompt, 384, 256)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    set_seed(args.seed)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, task_type="CAUSAL_LM"))

    seq2seq = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    computed = {"tokens": 0, "real": 0}

    def collate(batch):
        out = seq2seq(batch)
        computed["tokens"] += out["input_ids"].numel()
        computed["real"] += int(out["attention_mask"].sum())
        return out

    class StepTimes(TrainerCallback):
        """(step, tokens seen, perf_counter) at train begin and at every logged training loss."""

        def __init__(self):
            self.rows: list[tuple[int, int, float]] = []
            self.losses: list[float] = []

        def on_train_begin(self, a, state, control, **kw):
            self.rows.append((0, state.num_input_tokens_seen, time.perf_counter()))

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.rows.append((state.global_step, state.num_input_tokens_seen, time.perf_counter()))
                self.losses.append(logs["loss"])

    times = StepTimes()
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
        use_cpu=True,
        seed=args.seed,
        data_seed=args.seed,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=examples, data_collator=collate, callbacks=[times])
    tick = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - tick

    tokens = int(trainer.state.num_input_tokens_seen)
    result = {
        "checkpoint": str(checkpoint),
        "examples": len(examples),
        "steps": trainer.state.global_step,
        "threads": torch.get_num_threads(),
        "tokens_seen": tokens,
        "train_seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "computed_tokens": computed["tokens"],
        "collated_real_tokens": computed["real"],
        "step_log": times.rows,
        "losses": times.losses,
        "loss_first": times.losses[0],
        "loss_last": times.losses[-1],
    }
    print(
        f"plain transformers + peft: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} tokens/s; "
        f"padding {1 - computed['real'] / computed['tokens']:.1%}; loss {result['loss_first']:.3f} -> "
        f"{result['loss_last']:.3f}",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
