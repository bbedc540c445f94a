"""The `medtune` command: use a trained run. `export` merges it into a standalone model, `chat` talks to it.

Training, evaluation and sweeps stay Hydra entry points (train.py, evaluate.py, sweep.py); these
two commands only read what a run saved, so they take plain arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medtune.errors import MedtuneError

EXPORT_HELP = """Merge a run's adapter into its base and save a standalone transformers checkpoint
(safetensors + tokenizer + medtune_export.json) that loads with AutoModelForCausalLM alone.
A 4-bit or int8 base is dequantized first, so the export equals the trained model up to float
rounding; it is not the original bf16 base + LoRA, and re-quantizing it rounds again."""

CHAT_HELP = """Chat with a train.py run dir or a `medtune export` dir. Each message is put in the run's
own prompt template; templates are single-turn, so every message is answered on its own (there is
no history, and /reset has nothing to clear). Type /exit or press Ctrl-D to quit. From a pipe,
each line of stdin is one message."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medtune", description="Use a model trained by train.py.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{export,chat}")

    export = commands.add_parser(
        "export", help="merge the adapter and save a standalone model", description=EXPORT_HELP
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run: outputs/train/runs/<time>/")
    export.add_argument("--out", type=Path, metavar="DIR", help="where to write the model (default: RUN_DIR/export)")
    export.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="dtype of the saved weights (default: the run's model.dtype)",
    )
    export.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    export.add_argument(
        "--no-verify",
        action="store_true",
        help="skip reloading the export to compare its logits with the trained model",
    )
    export.set_defaults(handler=run_export)

    chat = commands.add_parser("chat", help="talk to a run or an export in its prompt template", description=CHAT_HELP)
    chat.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a train.py run dir or a medtune export dir")
    chat.add_argument(
        "--preset",
        choices=["greedy", "vi"],
        default="greedy",
        help="greedy (default), or vi: the Vietnamese paper's sampling "
        "(temperature 0.5, top-k 20, repetition penalty 1.2); the flags below override it",
    )
    chat.add_argument("--max-new-tokens", type=int, metavar="N", help="longest response in tokens (default 256)")
    chat.add_argument("--temperature", type=float, metavar="T", help="0 = greedy; above 0 samples")
    chat.add_argument(
        "--top-k", type=int, metavar="K", help="sample from the k likeliest tokens (needs --temperature > 0)"
    )
    chat.add_argument("--repetition-penalty", type=float, metavar="P", help="1.0 = off")
    chat.add_argument("--show-prompt", action="store_true", help="print the full prompt the model reads")
    chat.add_argument(
        "--system", metavar="TEXT", help="text put before every prompt (the templates have no system slot)"
    )
    chat.set_defaults(handler=run_chat)
    return parser


def quiet() -> None:
    import torch
    from transformers.utils import logging as hf_logging

    from medtune.quiet import quiet_third_party

    quiet_third_party(cpu_only=not torch.cuda.is_available())
    hf_logging.disable_progress_bar()  # rich shows what is loading; per-shard bars add nothing


def run_export(args: argparse.Namespace) -> int:
    quiet()
    from medtune.modeling.export import export_run

    export_run(
        args.run_dir,
        out_dir=args.out,
        dtype=args.dtype,
        force=args.force,
        verify=not args.no_verify,
        base=base_of(args.run_dir),
    )
    return 0


def base_of(run_dir: Path) -> str | None:
    """The base a LoRA run was trained on, rebuilt if it was a cache entry that is gone; None when the run
    is a full fine-tune or cannot tell (export_run then says what is missing)."""
    from medtune.modeling.description import run_base_checkpoint
    from medtune.run_dir import TrainRunDir

    run = TrainRunDir(run_dir)
    if run.problem() is not None or run.adapter_kind() != "lora":
        return None
    return run_base_checkpoint(run.read_config(), run.read_run_info())


def run_chat(args: argparse.Namespace) -> int:
    from medtune.chat import chat_loop, decoding_from, load_chat_model

    decoding = decoding_from(
        args.preset,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
    )
    quiet()
    from rich.console import Console

    with Console(stderr=True).status(f"Loading {args.run_dir}"):
        chat = load_chat_model(args.run_dir)
    chat_loop(chat, decoding, show_prompt=args.show_prompt, system=args.system)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except MedtuneError as error:
        print(f"\nmedtune {args.command}: {error}\n", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
