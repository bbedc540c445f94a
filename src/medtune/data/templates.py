"""Prompt templates: fill `{instruction}` and `{input}` in one pass (record text is never re-parsed)."""

from __future__ import annotations

import re

from medtune.config.schema import PromptConfig
from medtune.data.readers import InstructionRecord

PLACEHOLDER = re.compile(r"\{(instruction|input)\}")


def render_prompt(prompt: PromptConfig, record: InstructionRecord) -> str:
    """The text the model reads before its response."""
    instruction, extra = record.instruction, record.input
    template = prompt.template
    if not extra.strip() and prompt.template_no_input:
        template = prompt.template_no_input
    elif extra.strip() and "{input}" not in template:
        instruction, extra = f"{instruction}\n{extra}", ""  # templates without an input block carry it inline
    values = {"instruction": instruction, "input": extra}
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
