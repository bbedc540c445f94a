"""The token sequences lm-evaluation-harness scores for each logged request (run with .venv-lmeval).

    benchmarks/lm_eval_compare/.venv-lmeval/bin/python benchmarks/lm_eval_compare/harness_tokens.py \
        CHECKPOINT SAMPLES.jsonl OUT.json

For every request that `lm_eval --log_samples` recorded (context, continuation), the harness's own
`HFLM._encode_pair` gives the context and continuation tokens, as `HFLM.loglikelihood` computes
them. Output: {"<id>": [[context + continuation ids, len(continuation ids)], ...], ...}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def request_pairs(sample: dict) -> list[tuple[str, str]]:
    """(context, continuation) of each request of a logged sample, in request order.

    lm-eval 0.4.13 logs {"gen_args_0": {"arg_0": context, "arg_1": continuation}, ...}; older
    releases a list of [context, continuation].
    """
    arguments = sample["arguments"]
    if isinstance(arguments, dict):
        arguments = [arguments[k] for k in sorted(arguments, key=lambda k: int(k.rsplit("_", 1)[-1]))]
    return [(a["arg_0"], a["arg_1"]) if isinstance(a, dict) else (a[0], a[1]) for a in arguments]


def main() -> None:
    from lm_eval.models.huggingface import HFLM

    checkpoint, samples_path, out_path = sys.argv[1:4]
    lm = HFLM(pretrained=checkpoint, dtype="float32", device="cpu", batch_size=1)
    result = {}
    for line in Path(samples_path).read_text().splitlines():
        sample = json.loads(line)
        rows = []
        for context, continuation in request_pairs(sample):
            context_enc, continuation_enc = lm._encode_pair(context, continuation)
            rows.append([list(context_enc) + list(continuation_enc), len(continuation_enc)])
        result[str(sample["doc"]["id"])] = rows
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
