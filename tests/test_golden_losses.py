"""Golden losses: the tiny model's per-step training losses, pinned.

Every other training test compares two paths of today's code with each other; a change that moves
the numerics of both (label shifting, loss normalisation, the order of the examples, dropout, the
learning-rate schedule, LoRA initialisation) passes them all. These runs are deterministic on a CPU
(seeded, float32, dropout as configured), so their losses are pinned here, step by step.

A change that moves them on purpose updates GOLDEN: the failure message prints the new values.
Tolerance: relative 1e-4. Runs repeat to ~1e-7 on one machine; another CPU's kernels (AVX2 against
AVX-512 reductions) move them by ~1e-6. A real change of numerics moves them by 1e-3 or more.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # 5 short training runs; CI runs them with the rest of the suite

STEPS = 6
COMMON = [
    f"train.max_steps={STEPS}",
    "train.logging_steps=1",
    "train.eval_steps=0",
    "train.save_steps=0",
    "exam_eval.enabled=false",
    "logger=none",
]
RUNS = {
    "lora": ["adapter=lora"],
    "lora_previous_path": ["adapter=lora", "train.loss=full_logits", "train.padding_free=false"],
    "qlora": ["adapter=qlora"],
    "packing": ["adapter=lora", "train.packing=true"],
    "pretrain": ["adapter=full", "task=pretrain", "dataset=medical_text", "pretrain.block_tokens=128"],
}
GOLDEN = {  # measured on this project's CPU machine (torch 2.13.0+cpu), schedule=tiny (lr 1e-2)
    "lora": [
        8.809191703796387,
        8.870146751403809,
        8.775935173034668,
        8.852569580078125,
        8.8808012008667,
        8.823990821838379,
    ],
    "lora_previous_path": [
        8.809192657470703,
        8.870145797729492,
        8.775935173034668,
        8.852569580078125,
        8.880800247192383,
        8.823990821838379,
    ],
    "qlora": [
        8.869479179382324,
        8.881338119506836,
        8.542104721069336,
        8.535279273986816,
        8.555846214294434,
        8.396732330322266,
    ],
    "packing": [
        8.89708423614502,
        8.904637336730957,
        8.764260292053223,
        8.726750373840332,
        8.553919792175293,
        8.50489330291748,
    ],
    "pretrain": [
        8.970050811767578,
        8.539677619934082,
        6.808421611785889,
        6.640192985534668,
        4.843883037567139,
        4.511349201202393,
    ],
}


def step_losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["train/loss"] for row in rows if "train/loss" in row]


@pytest.mark.parametrize("name", list(RUNS))
def test_per_step_losses_are_the_pinned_ones(name, run_train):
    result = run_train([*RUNS[name], *COMMON], name=name)
    losses = step_losses(result.run_dir)
    assert len(losses) == STEPS
    assert losses == pytest.approx(GOLDEN[name], rel=1e-4), (
        f"the {name} run's losses moved: if on purpose, pin the new ones in GOLDEN[{name!r}] = {losses}"
    )
