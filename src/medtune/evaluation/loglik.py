"""Log-likelihood scoring: the probability of each choice after the prompt, no generation.

For every question the prompt plus each choice's continuation (` c`, or `c. <text>` normalised by
its length) go through the model in one batch, i.e. one forward pass per question; the choices
with the highest log-probabilities are the answer (as many as the question asks for).
"""

from __future__ import annotations

from medtune.config.eval_schema import LoglikTarget
from medtune.data.templates import encode_prompt, has_special_prefix
from medtune.evaluation.types import LETTERS, ExamQuestion


def continuations(question: ExamQuestion, target: LoglikTarget) -> list[str]:
    if target == LoglikTarget.letter:
        return [f" {LETTERS[i]}" for i in range(len(question.choices))]
    return [f" {LETTERS[i]}. {choice}" for i, choice in enumerate(question.choices)]


def choice_logprobs(model, tokenizer, prompt: str, options: list[str], normalise: bool) -> list[float]:
    """Sum (or mean, when `normalise`) of the log-probabilities of each option's tokens after `prompt`."""
    import torch

    prompt_ids = encode_prompt(tokenizer, prompt)
    if has_special_prefix(tokenizer, prompt):  # a chat turn: the answer starts the assistant's line, no space
        options = [option.lstrip() for option in options]
    option_ids = [tokenizer(option, add_special_tokens=False)["input_ids"] for option in options]
    width = len(prompt_ids) + max(len(ids) for ids in option_ids)
    input_ids = torch.full((len(options), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, ids in enumerate(option_ids):
        full = prompt_ids + ids
        input_ids[row, : len(full)] = torch.tensor(full)
        attention[row, : len(full)] = 1
    # Only the last positions are needed: the logits that predict each option's tokens.
    keep = max(len(ids) for ids in option_ids) + 1
    with torch.no_grad():
        logits = model(
            input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device), logits_to_keep=keep
        ).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
    offset = width - keep  # position of logits[:, 0] in the full sequence
    scores = []
    for row, ids in enumerate(option_ids):
        positions = torch.arange(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(ids)) - offset
        total = float(logprobs[row, positions, torch.tensor(ids)].sum())
        scores.append(total / len(ids) if normalise else total)
    return scores


def pick_choices(question: ExamQuestion, scores: list[float]) -> tuple[str, ...]:
    """The `num_answers` likeliest letters, in letter order."""
    ranked = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    return tuple(sorted(LETTERS[i] for i in ranked[: max(1, question.num_answers)]))
