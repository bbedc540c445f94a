"""Prompt templates: fill `{instruction}` and `{input}` in one pass (record text is never re-parsed).

A multiple-choice template may say how many choices the question has: `{choice_count}` (digits, as
"{choice_count}つの選択肢") or `{choice_count_word}` (English, as "the {choice_count_word} options").
The number is counted from the record's lettered choice lines (`a. ...`, `b. ...`), so a 4-choice
MedQA question is told "four" and a 5-choice IgakuQA one "five"; a record with no lettered choices
under such a template is refused, naming the record.

With `prompt.chat=true` the filled template becomes the user turn of the tokenizer's own chat
template (after `prompt.system`), so an instruct model is prompted the way it was trained. The
rendered text then already holds the model's special tokens, so it is tokenized without adding
more, and a response ends with the template's own end of turn instead of a bare EOS.
"""

from __future__ import annotations

import re
from typing import Any

from medtune.config.schema import PromptConfig
from medtune.data.readers import InstructionRecord
from medtune.errors import ConfigError, DataError
from medtune.vocabulary import choice_labels

PLACEHOLDER = re.compile(r"\{(instruction|input|choice_count|choice_count_word)\}")
COUNT_PLACEHOLDERS = ("{choice_count}", "{choice_count_word}")
NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
).split()
PROBE = "\u2063medtune-response\u2063"  # an answer no template rewrites, to find where a response sits


def fill_template(prompt: PromptConfig, record: InstructionRecord) -> str:
    """The template with the record's instruction and input in place."""
    instruction, extra = record.instruction, record.input
    template = prompt.template
    if not extra.strip() and prompt.template_no_input:
        template = prompt.template_no_input
    elif extra.strip() and "{input}" not in template:
        instruction, extra = f"{instruction}\n{extra}", ""  # templates without an input block carry it inline
    values = {"instruction": instruction, "input": extra}
    if any(placeholder in template for placeholder in COUNT_PLACEHOLDERS):
        count = choice_count(record)
        if count == 0:
            raise DataError(
                f"{record.source}: prompt={prompt.name} states how many choices a question has "
                f"({' or '.join(COUNT_PLACEHOLDERS)}), but this record has no lettered choices (lines 'a. ...', "
                "'b. ...') in its input. Use a prompt without a choice count for free-form records (e.g. "
                "prompt=alpaca), or give the record its choices."
            )
        values["choice_count"] = str(count)
        values["choice_count_word"] = NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else str(count)
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def choice_count(record: InstructionRecord) -> int:
    """How many lettered choices the record's input lists: the longest run a, b, c, ... from its first line
    (or 1, 2, 3, ... past 26 choices, as `format_choices` writes them)."""
    lines = [line.strip() for line in record.input.splitlines() if line.strip()]
    for count in range(len(lines), 0, -1):
        labels = choice_labels(count)
        if all(line.startswith(f"{label}. ") or line == f"{label}." for label, line in zip(labels, lines)):
            return count
    return 0


def render_prompt(
    prompt: PromptConfig, record: InstructionRecord, tokenizer: Any = None, history: list[tuple[str, str]] = ()
) -> str:
    """The text the model reads before its response (earlier user/assistant turns first, chat only)."""
    filled = fill_template(prompt, record)
    if not prompt.chat:
        return filled
    return render_chat(prompt, tokenizer, [*history, (filled, None)])


def require_chat_template(prompt: PromptConfig, tokenizer: Any, model_name: str = "this model") -> None:
    if prompt.chat and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            [
                f"prompt={prompt.name} renders through the tokenizer's chat template, but the tokenizer of "
                f"{model_name} has none (a base model); pick an instruction prompt instead, e.g. prompt=alpaca "
                "(or prompt=medpalm2_cot_en for exams)."
            ]
        )


def chat_messages(prompt: PromptConfig, turns: list[tuple[str, str | None]]) -> list[dict[str, str]]:
    """Turns of (user, assistant or None) as chat messages, after the prompt's system text."""
    messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
    for user, assistant in turns:
        messages.append({"role": "user", "content": user})
        if assistant is not None:
            messages.append({"role": "assistant", "content": assistant})
    return messages


def apply_chat_template(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """`messages` through the tokenizer's chat template; a system turn the template rejects is folded
    into the first user turn."""
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as error:  # jinja's TemplateError: e.g. a template that rejects a system turn
        if not messages or messages[0]["role"] != "system" or "system" not in str(error).lower():
            raise
        system, first, *rest = messages
        folded = [{"role": "user", "content": f"{system['content']}\n\n{first['content']}"}, *rest]
        return tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=add_generation_prompt)


def render_chat(
    prompt: PromptConfig, tokenizer: Any, turns: list[tuple[str, str | None]], add_generation_prompt: bool = True
) -> str:
    """Turns of (user, assistant or None) through the tokenizer's chat template, after the system text."""
    require_chat_template(prompt, tokenizer)
    return apply_chat_template(tokenizer, chat_messages(prompt, turns), add_generation_prompt)


def response_end(prompt: PromptConfig, tokenizer: Any) -> str | None:
    """What the chat template writes after an assistant answer (e.g. `<|im_end|>\\n`); None = plain EOS."""
    if not prompt.chat:
        return None
    turn = [("question", None)]
    asked = render_chat(prompt, tokenizer, turn)
    answered = render_chat(prompt, tokenizer, [("question", PROBE)], add_generation_prompt=False)
    if not answered.startswith(asked) or PROBE not in answered:
        return None
    end = answered[answered.index(PROBE) + len(PROBE) :]
    return end.rstrip("\n") or None


def has_special_prefix(tokenizer: Any, text: str) -> bool:
    """Chat-templated text starts with the tokenizer's BOS (or its turn opener): add no second one."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and text.startswith(bos)


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt, with the tokenizer's special tokens unless the text already carries them."""
    return tokenizer(text, add_special_tokens=not has_special_prefix(tokenizer, text))["input_ids"]


def stop_token_ids(tokenizer: Any, prompt: PromptConfig | None) -> list[int]:
    """EOS, plus the chat template's end-of-turn token when it is another one (Gemma's <end_of_turn>)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    end = response_end(prompt, tokenizer) if prompt is not None else None
    if end:
        first = tokenizer(end, add_special_tokens=False)["input_ids"][:1]
        ids += [i for i in first if i not in ids]
    return ids
