"""The token sequences medtune scores for each question of the harness JSONL (run with medtune's .venv).

    .venv/bin/python benchmarks/lm_eval_compare/medtune_tokens.py CHECKPOINT DOCS.jsonl OUT.json

Runs medtune's own `choice_logprobs` (src/medtune/llm/loglik.py) with a stand-in model that
records the rows it is given instead of computing them, so what is recorded is exactly the code
path of `evaluate.py eval=loglik`. For every choice: the full token sequence (prompt + option, no
padding) and how many of its last tokens are scored (the option's tokens).
Output: {"<id>": [[ids, n_scored], ...], ...}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace


class RecordingModel:
    """Takes the place of the causal LM in `choice_logprobs`: keeps the inputs, returns zero logits."""

    def __init__(self, vocab_size: int) -> None:
        import torch

        self.device = torch.device("cpu")
        self.vocab_size = vocab_size
        self.calls: list[tuple] = []

    def __call__(self, input_ids, attention_mask, logits_to_keep):
        import torch

        self.calls.append((input_ids.clone(), attention_mask.clone()))
        rows = input_ids.shape[0]
        return SimpleNamespace(logits=torch.zeros(rows, logits_to_keep, self.vocab_size))


def main() -> None:
    from transformers import AutoTokenizer

    from medtune.config.eval_schema import LoglikTarget
    from medtune.data.templates import encode_prompt
    from medtune.llm.loglik import choice_logprobs_unshared, continuations
    from medtune.vocabulary import ExamQuestion

    checkpoint, docs_path, out_path = sys.argv[1:4]
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)  # what medtune's load_tokenizer loads
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = RecordingModel(len(tokenizer))
    result = {}
    for line in Path(docs_path).read_text().splitlines():
        doc = json.loads(line)
        question = ExamQuestion(qid=str(doc["id"]), question="", choices=tuple(doc["choices"]), answers=())
        options = continuations(question, LoglikTarget.letter)
        model.calls.clear()
        choice_logprobs_unshared(model, tokenizer, doc["prompt"], options, normalise=False)
        ((input_ids, attention),) = model.calls
        n_prompt = len(encode_prompt(tokenizer, doc["prompt"]))
        rows = []
        for row in range(input_ids.shape[0]):
            ids = input_ids[row, : int(attention[row].sum())].tolist()
            rows.append([ids, len(ids) - n_prompt])
        result[str(doc["id"])] = rows
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
