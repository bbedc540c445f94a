"""Batched decoding for exams: left padding, KV cache, greedy by default, stop at the end of the answer.

Prompts are sorted by length so that a batch carries little padding; results come back in the
caller's order through `on_batch`, so an interrupted evaluation keeps every finished batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from medtune.config.eval_schema import EvalConfig
from medtune.data.templates import encode_prompt

STOP_STRINGS = ["###"]  # a new "### ..." block means the answer is over


class AnswerLineDone:
    """Stops a sequence once the line after its answer marker is complete (`答え: c. ...\n`)."""

    def __init__(self, tokenizer, marker: str, prompt_width: int):
        self.tokenizer, self.marker, self.prompt_width = tokenizer, marker, prompt_width

    def done(self, text: str) -> bool:
        position = text.rfind(self.marker)
        if position < 0:
            return False
        rest = text[position + len(self.marker) :]
        line, newline, _ = rest.partition("\n")
        return bool(newline) and bool(line.strip())

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :], skip_special_tokens=True)
        return torch.tensor([self.done(t) for t in texts], dtype=torch.bool, device=input_ids.device)


def cut_after_answer_line(text: str, marker: str | None) -> str:
    if not marker:
        return text
    position = text.rfind(marker)
    if position < 0:
        return text
    end = text.find("\n", position + len(marker))
    return text if end < 0 else text[:end].rstrip()


@dataclass
class GenerationStats:
    prompts: int = 0
    truncated_prompts: int = 0  # prompts cut from the left to leave room for max_new_tokens
    new_tokens: int = 0


def generation_kwargs(settings: EvalConfig, tokenizer, stop_ids: list[int] | None = None) -> dict:
    kwargs = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": settings.do_sample,
        "use_cache": True,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": stop_ids or tokenizer.eos_token_id,
        "stop_strings": STOP_STRINGS,
        "tokenizer": tokenizer,
    }
    if settings.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = settings.repetition_penalty
    if settings.do_sample:
        kwargs["temperature"] = settings.temperature
        if settings.top_k is not None:
            kwargs["top_k"] = settings.top_k
        if settings.top_p is not None:
            kwargs["top_p"] = settings.top_p
    return kwargs


def through_first_answer_line(text: str, marker: str | None) -> str:
    """`text` where in-process generation stops (`AnswerLineDone`): at the first line break after which
    the latest answer marker has a complete, non-empty line. A server knows no such rule and writes
    on to max_tokens, maybe a second answer line that the last-marker cut would otherwise take.

    Each marker is looked at once, with the line that follows it (asking `AnswerLineDone` at every
    line break would read the text again for each line: quadratic in a long, many-line answer)."""
    if not marker:
        return text
    position, line_end = text.find(marker), -1
    while position >= 0:
        line_start = position + len(marker)
        if line_end < line_start:  # else the line break found for an earlier marker ends this line too
            line_end = text.find("\n", line_start)
        if line_end < 0:
            return text  # the marker's line is not finished
        later = text.find(marker, position + 1)
        # A later marker that ends before this line break is the latest one there: it decides instead.
        if (later < 0 or later + len(marker) > line_end + 1) and text[line_start:line_end].strip():
            return text[: line_end + 1]
        position = later
    return text


def finish_response(text: str, answer_marker: str | None) -> str:
    """A raw continuation cut the way every backend cuts it: where generation stops after the first
    answer line, at a stop string, after the answer line."""
    return cut_after_answer_line(cut_at_stop(through_first_answer_line(text, answer_marker)), answer_marker)


def cut_at_stop(text: str) -> str:
    for stop in STOP_STRINGS:
        position = text.find(stop)
        if position >= 0:
            text = text[:position]
    return text.strip()


def encode_left_padded(tokenizer, prompts: Sequence[str], max_prompt_tokens: int, stats: GenerationStats):
    """Token ids left-padded to the longest prompt; prompts over the limit keep their end."""
    import torch

    rows = []
    for prompt in prompts:
        ids = encode_prompt(tokenizer, prompt)
        if len(ids) > max_prompt_tokens:
            head = ids[:1] if ids[0] == tokenizer.bos_token_id else []
            ids = head + ids[len(ids) - (max_prompt_tokens - len(head)) :]
            stats.truncated_prompts += 1
        rows.append(ids)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, width - len(ids) :] = torch.tensor(ids)
        attention[i, width - len(ids) :] = 1
    return input_ids, attention


def generate_responses(
    model,
    tokenizer,
    prompts: Sequence[str],
    settings: EvalConfig,
    max_positions: int,
    on_batch: Callable[[list[int], list[str]], None],
    progress: bool = True,
    answer_marker: str | None = None,
    stop_ids: list[int] | None = None,
    streamer=None,
) -> GenerationStats:
    """Generate a response for every prompt; `on_batch(indices, texts)` receives each finished batch.

    With `answer_marker`, a sequence stops as soon as its answer line is written; `stop_ids` (default:
    the tokenizer's EOS) end a sequence, e.g. a chat template's end-of-turn token. A `streamer`
    (transformers' streamer interface; one prompt at a time) sees the tokens as they come."""
    import torch
    from transformers import StoppingCriteriaList

    from medtune.reporting.progress_bar import progress_bar

    stats = GenerationStats(prompts=len(prompts))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    kwargs = generation_kwargs(settings, tokenizer, stop_ids)
    max_prompt_tokens = max(8, max_positions - settings.max_new_tokens)
    model.eval()
    with progress_bar(total=len(prompts), desc="generating", unit="q", disable=not progress) as bar:
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            input_ids, attention = encode_left_padded(tokenizer, [prompts[i] for i in batch], max_prompt_tokens, stats)
            input_ids, attention = input_ids.to(model.device), attention.to(model.device)
            criteria = StoppingCriteriaList(
                [AnswerLineDone(tokenizer, answer_marker, input_ids.shape[1])] if answer_marker else []
            )
            with torch.no_grad():
                output = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention,
                    stopping_criteria=criteria,
                    **({"streamer": streamer} if streamer is not None else {}),
                    **kwargs,
                )
            new = output[:, input_ids.shape[1] :]
            stats.new_tokens += int((new != tokenizer.pad_token_id).sum())
            decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
            texts = [finish_response(t, answer_marker) for t in decoded]
            on_batch(batch, texts)
            bar.update(len(batch))
    return stats
