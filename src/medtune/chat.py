"""Chat with a trained run or an export: each message is rendered with the run's own prompt template.

The templates are single-turn (one instruction, one response), the format the model was trained
on, so every message is answered on its own: no history is carried, and there is none to reset.
The model is reached through the `hf` access of `medtune.llm` (`LocalGenerator`), as a judge or a
QA generator reaches a trained run: the same rendering, the same stop tokens (EOS, and a chat
template's end of turn), streamed as it is generated and ended at the template's next `###` block.
Decoding is greedy unless a temperature is given (`--preset vi`: the Vietnamese paper's sampling).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from medtune.config.generator_schema import GeneratorConfig, GeneratorKind
from medtune.config.schema import PromptConfig
from medtune.errors import ConfigError, ModelUnavailableError
from medtune.llm.hf import LocalGenerator
from medtune.llm.protocol import ChatRequest

HELP = (
    "Each message is answered on its own: the prompt template is single-turn, so there is no history "
    "(and /reset has nothing to clear). /exit or Ctrl-D quits."
)


@dataclass
class Decoding:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_k: int | None = None
    repetition_penalty: float = 1.0

    def check(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"--max-new-tokens {self.max_new_tokens} must be at least 1.")
        if self.temperature < 0:
            problems.append(f"--temperature {self.temperature} must be 0 (greedy) or positive (sampling).")
        if self.top_k is not None and self.top_k < 1:
            problems.append(f"--top-k {self.top_k} must be at least 1.")
        if self.top_k is not None and self.temperature == 0:
            problems.append("--top-k only applies when sampling: also set --temperature > 0, or use --preset vi.")
        if self.repetition_penalty <= 0:
            problems.append(f"--repetition-penalty {self.repetition_penalty} must be positive (1.0 = off).")
        if problems:
            raise ConfigError(problems)

    def generator(self) -> GeneratorConfig:
        """These settings as a local generator's (one message at a time)."""
        return GeneratorConfig(
            kind=GeneratorKind.local,
            batch_size=1,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
        )


PRESETS = {
    "greedy": Decoding(),
    "vi": Decoding(temperature=0.5, top_k=20, repetition_penalty=1.2),  # as conf/eval/vi_sampling.yaml
}


def decoding_from(preset: str, **flags) -> Decoding:
    """A preset with the flags that were given (not None) on top."""
    decoding = replace(PRESETS[preset], **{k: v for k, v in flags.items() if v is not None})
    decoding.check()
    return decoding


@dataclass
class ChatModel:
    model: Any
    tokenizer: Any
    prompt: PromptConfig
    description: str


def load_chat_model(path: Path) -> ChatModel:
    """A train.py run dir (base as trained + adapter) or a `medtune export` dir, ready to generate."""
    from medtune.modeling.export import inference_hardware, read_export, read_run
    from medtune.run_dir import CONFIG_FILE, EXPORT_FILE, TrainRunDir

    path = Path(path)
    run = TrainRunDir(path)
    if run.is_export:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        meta, prompt = read_export(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            placement = {"device_map": "auto"} if torch.cuda.is_available() else {}  # GPUs first, then CPU
            model = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=getattr(torch, meta["dtype"]), local_files_only=True, **placement
            )
        except (OSError, ValueError) as error:
            raise ModelUnavailableError(
                f"{path} has {EXPORT_FILE} but its weights or tokenizer do not load ({error.__class__.__name__}: "
                f"{str(error).splitlines()[0]}); export the run again with medtune export {meta['source_run']} --force."
            ) from error
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return ChatModel(model, tokenizer, prompt, f"export of {meta['model']} + {meta['adapter']} ({path})")
    from medtune.modeling.trained import load_trained

    if path.is_dir() and not run.has_config:
        raise ModelUnavailableError(
            f"{path} is neither a train.py run dir (it has no {CONFIG_FILE}) nor a medtune export (no {EXPORT_FILE}); "
            "pass outputs/train/runs/<time>/ of a finished run, or the folder medtune export wrote."
        )
    cfg, _ = read_run(path)  # names what is missing before anything loads
    model, tokenizer, cfg = load_trained(path, inference_hardware(cfg.hardware))
    return ChatModel(model, tokenizer, cfg.prompt, f"{cfg.model.name} + {cfg.adapter.name} ({path})")


def open_access(chat: ChatModel, decoding: Decoding) -> LocalGenerator:
    """The loaded model as the `hf` access a local generator uses, with these decoding settings."""
    return LocalGenerator(chat.model, chat.tokenizer, decoding.generator(), chat.prompt, name="chat")


def chat_request(message: str, system: str | None) -> ChatRequest:
    """A message, after `system` if one is given (it then replaces a chat prompt's own system text)."""
    return ChatRequest(message, system.strip() if system and system.strip() else None)


def chat_loop(
    chat: ChatModel,
    decoding: Decoding,
    show_prompt: bool = False,
    system: str | None = None,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    """Answer messages until EOF or /exit; returns how many were answered.

    On a terminal messages are typed after `you> `; from a pipe each line is one message and is
    echoed, so stdout reads as a transcript."""
    interactive = stdin.isatty()

    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    print(
        f"medtune chat: {chat.description}; prompt template {chat.prompt.name}; "
        f"{'greedy' if decoding.temperature == 0 else f'sampling at temperature {decoding.temperature}'}, "
        f"up to {decoding.max_new_tokens} new tokens.\n{HELP}",
        file=stderr,
        flush=True,
    )
    access = open_access(chat, decoding)
    answered = 0
    while True:
        if interactive:
            try:
                line = input("you> ")
            except EOFError:
                write("\n")
                break
        else:
            line = stdin.readline()
            if not line:
                break
        message = line.strip()
        if not message:
            continue
        if message in ("/exit", "/quit"):
            break
        if message in ("/reset", "/help"):
            print(HELP, file=stderr, flush=True)
            continue
        if not interactive:
            write(f"you> {message}\n")
        request = chat_request(message, system)
        prompt_text = access.render(request)
        if show_prompt:
            shown = prompt_text.rstrip("\n")
            write(f"----- prompt ({chat.prompt.name}) -----\n{shown}\n----- end of prompt -----\n")
        write("model> ")
        access.stream(request, write)
        write("\n")
        answered += 1
    return answered
