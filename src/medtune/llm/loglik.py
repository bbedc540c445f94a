"""Log-likelihood scoring: the probability of each choice after the prompt, no generation.

Every choice is a continuation of the same prompt (` c`, or ` c. <text>` normalised by its
length). The prompt goes through the model once with `use_cache=True`; its last logits score every
choice's first token, and the choices' remaining tokens run as one right-padded batch on top of the
prompt's cache, expanded to one row per choice. Single-token continuations (the letters) therefore
cost nothing beyond the prompt pass.

Shared: models whose cache holds plain key/value layers, full or sliding-window (Llama, Mistral,
Qwen2, Gemma-2/3 with their `DynamicSlidingWindowLayer`s). Scored the old way, prompt + choice per
row (`choice_logprobs_unshared`, same tokens, same scores): bidirectional attention (Gemma-3's
`use_bidirectional_attention`), encoder-decoders, linear-attention or hybrid caches (Mamba-style),
quantized or offloaded caches, and any model that returns no cache.

The choices with the highest log-probabilities are the answer (as many as the question asks for).
`letter_distribution` summarises which letters a whole exam picked, against chance: position bias.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from medtune.config.eval_schema import LoglikTarget
from medtune.data.templates import encode_prompt, has_special_prefix
from medtune.vocabulary import ExamQuestion, choice_labels


@dataclass(frozen=True)
class ChoiceScores:
    """The log-probabilities of one question's choices, per continuation kind that was scored."""

    letter: list[float] | None  # sum over ` c` (None when not scored)
    text: list[float] | None  # mean over ` c. <choice text>` (None when not scored)
    decided_by: LoglikTarget  # letter for target=letter and both, text for target=text

    @property
    def deciding(self) -> list[float]:
        """The scores that pick the answer."""
        scores = self.letter if self.decided_by == LoglikTarget.letter else self.text
        assert scores is not None
        return scores


def continuations(question: ExamQuestion, target: LoglikTarget) -> list[str]:
    """The options scored for `target` (letter: ` c`; text: ` c. <choice>`; use score_choices for both)."""
    if target == LoglikTarget.letter:
        return [f" {question.label(i)}" for i in range(len(question.choices))]
    return [f" {question.label(i)}. {choice}" for i, choice in enumerate(question.choices)]


def option_token_ids(tokenizer, prompt: str, options: list[str]) -> tuple[list[int], list[list[int]]]:
    """The prompt's ids and each option's own ids (tokenized alone, to be appended to the prompt's)."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    if has_special_prefix(tokenizer, prompt):  # a chat turn: the answer starts the assistant's line, no space
        options = [option.lstrip() for option in options]
    option_ids = [tokenizer(option, add_special_tokens=False)["input_ids"] for option in options]
    if not prompt_ids or not all(option_ids):
        raise ValueError("log-likelihood scoring needs a non-empty prompt and options that tokenize to something")
    return prompt_ids, option_ids


def option_scores(per_token: list[list[float]], normalise: bool) -> list[float]:
    """Per option: the sum of its tokens' log-probabilities, or their mean when `normalise`."""
    return [sum(lps) / len(lps) if normalise else sum(lps) for lps in per_token]


def choice_logprobs(model, tokenizer, prompt: str, options: list[str], normalise: bool) -> list[float]:
    """Sum (or mean, when `normalise`) of the log-probabilities of each option's tokens after `prompt`.

    The prompt runs once and the options continue from its cache; a model that cannot share its
    cache (see `shared_token_logprobs`) falls back to `choice_logprobs_unshared`, same tokens."""
    prompt_ids, option_ids = option_token_ids(tokenizer, prompt, options)
    return option_scores(token_logprobs(model, tokenizer, prompt_ids, option_ids), normalise)


def choice_logprobs_unshared(model, tokenizer, prompt: str, options: list[str], normalise: bool) -> list[float]:
    """`choice_logprobs` the old way: prompt + option per row, the prompt recomputed for every option."""
    prompt_ids, option_ids = option_token_ids(tokenizer, prompt, options)
    return option_scores(unshared_token_logprobs(model, tokenizer, prompt_ids, option_ids), normalise)


def score_choices(model, tokenizer, prompt: str, question: ExamQuestion, target: LoglikTarget) -> ChoiceScores:
    """Letter scores (sums), text scores (length-normalised means), or both from one prompt pass."""
    target = LoglikTarget(target)
    kinds = [LoglikTarget.letter, LoglikTarget.text] if target == LoglikTarget.both else [target]
    options = [option for kind in kinds for option in continuations(question, kind)]
    prompt_ids, option_ids = option_token_ids(tokenizer, prompt, options)
    per_token = token_logprobs(model, tokenizer, prompt_ids, option_ids)
    n = len(question.choices)
    scored = {kind: per_token[i * n : (i + 1) * n] for i, kind in enumerate(kinds)}
    letter, text = scored.get(LoglikTarget.letter), scored.get(LoglikTarget.text)
    return ChoiceScores(
        letter=option_scores(letter, normalise=False) if letter is not None else None,
        text=option_scores(text, normalise=True) if text is not None else None,
        decided_by=LoglikTarget.text if target == LoglikTarget.text else LoglikTarget.letter,
    )


def token_logprobs(model, tokenizer, prompt_ids: list[int], option_ids: list[list[int]]) -> list[list[float]]:
    """Each option's token log-probabilities after the prompt: shared prefix, else one row per option."""
    shared = shared_token_logprobs(model, tokenizer, prompt_ids, option_ids)
    return shared if shared is not None else unshared_token_logprobs(model, tokenizer, prompt_ids, option_ids)


def can_share_prefix(config: Any) -> bool:
    """False for models whose prompt states depend on what follows (bidirectional attention)."""
    return not getattr(config, "use_bidirectional_attention", False) and not getattr(
        config, "is_encoder_decoder", False
    )


def continuable(cache: Any) -> bool:
    """A cache of plain key/value layers (full or sliding-window): it can be repeated per option and extended.

    Linear-attention, quantized or offloaded caches are not, and neither is the absence of one (e.g. a
    model that ignores `use_cache`)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

    return (
        isinstance(cache, DynamicCache)
        and not cache.offloading
        and bool(cache.layers)
        and all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers)
    )


def shared_token_logprobs(
    model, tokenizer, prompt_ids: list[int], option_ids: list[list[int]]
) -> list[list[float]] | None:
    """One pass over the prompt, then every option's remaining tokens in one batch on its cache.

    The prompt's last logits predict each option's first token. Option token `j >= 1` is predicted by
    the logits at option position `j - 1`, so an option's last token is never fed in; options of a
    single token (the letters) need no second pass at all. Rows are right-padded, positions continue
    from the prompt's length, and the attention mask covers prompt + option. None when the model
    cannot share its prompt (see `can_share_prefix`, `continuable`): score with one row per option."""
    import torch

    if not can_share_prefix(model.config):
        return None
    device = model.device
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None)
    if not continuable(cache):
        return None
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu()
    scores = [[float(first[ids[0]])] for ids in option_ids]
    longer = [row for row, ids in enumerate(option_ids) if len(ids) > 1]
    if not longer:
        return scores
    width = max(len(option_ids[row]) - 1 for row in longer)
    input_ids = torch.full((len(longer), width), pad_id(tokenizer), dtype=torch.long)
    attention = torch.zeros((len(longer), len(prompt_ids) + width), dtype=torch.long)
    attention[:, : len(prompt_ids)] = 1
    for i, row in enumerate(longer):
        fed = option_ids[row][:-1]
        input_ids[i, : len(fed)] = torch.tensor(fed)
        attention[i, len(prompt_ids) : len(prompt_ids) + len(fed)] = 1
    positions = torch.arange(len(prompt_ids), len(prompt_ids) + width).expand(len(longer), -1)
    cache.batch_repeat_interleave(len(longer))
    with torch.no_grad():
        logits = model(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            position_ids=positions.to(device),
            cache=cache,
            use_cache=True,
        ).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
    for i, row in enumerate(longer):
        rest = torch.tensor(option_ids[row][1:])
        scores[row] += logprobs[i, torch.arange(len(rest)), rest].tolist()
    return scores


def unshared_token_logprobs(model, tokenizer, prompt_ids: list[int], option_ids: list[list[int]]) -> list[list[float]]:
    """Prompt + option per row in one right-padded batch: the prompt runs once per option."""
    import torch

    width = len(prompt_ids) + max(len(ids) for ids in option_ids)
    input_ids = torch.full((len(option_ids), width), pad_id(tokenizer), dtype=torch.long)
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
        scores.append(logprobs[row, positions, torch.tensor(ids)].tolist())
    return scores


def pad_id(tokenizer) -> int:
    """What fills the padded positions (masked out, so any id does when the tokenizer has no pad)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def pick_choices(question: ExamQuestion, scores: list[float]) -> tuple[str, ...]:
    """The `num_answers` likeliest letters, in letter order."""
    ranked = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    picked = sorted(ranked[: max(1, question.num_answers)])
    return tuple(question.label(i) for i in picked)


def letter_distribution(picked: list[tuple[str, ...]], n_choices_per_question: list[int]) -> dict[str, Any]:
    """How often each letter was picked over an exam, against chance: position bias.

    `chance` is each letter's expected share if every question's picks were uniform over its own
    choices (a 4-choice question never expects `e`). `bias_ratio` is the largest share / chance (1.0
    = no bias, 5.0 = one letter of five always); `chi_square` is Pearson's statistic of the pick
    counts against those expected counts (questions without picks or choices are left out)."""
    counts: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    questions = 0
    for letters, n_choices in zip(picked, n_choices_per_question, strict=True):
        if not letters or n_choices <= 0:
            continue
        questions += 1
        counts.update(letters)
        for letter in choice_labels(n_choices):
            expected[letter] += len(letters) / n_choices
    total = sum(counts.values())
    letters = sorted(set(expected) | set(counts))
    share = {letter: round(counts[letter] / total, 4) if total else 0.0 for letter in letters}
    chance = {letter: round(expected[letter] / total, 4) if total else 0.0 for letter in letters}
    ratios = {letter: counts[letter] / expected[letter] for letter in letters if expected[letter] > 0}
    most = max(letters, key=lambda letter: counts[letter]) if total else None
    chi_square = sum((counts[letter] - expected[letter]) ** 2 / expected[letter] for letter in ratios)
    return {
        "questions": questions,
        "picks": total,
        "share": share,
        "chance": chance,
        "most_picked": most,
        "bias_ratio": round(max(ratios.values()), 4) if ratios else None,
        "chi_square": round(chi_square, 4),
    }
