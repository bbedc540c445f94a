#!/usr/bin/env bash
# A separate virtual environment with Hugging Face TRL, for the TRL contender of the CPU
# training-speed benchmark (benchmarks/train_speed/trl_contender.py). medtune's own .venv is
# never touched.
#
#   bash benchmarks/train_speed/setup_trl.sh            # creates benchmarks/train_speed/.venv-trl
#   TRL_VENV=/some/where bash benchmarks/train_speed/setup_trl.sh
#
# Order matters: the CPU build of torch first (an unpinned torch pulls GB of CUDA packages), then
# the transformers version that medtune's requirements-lock.txt names, then TRL and datasets.
# torch, transformers, tokenizers, safetensors, huggingface_hub, accelerate and peft are held at
# the versions just installed / locked (a pip constraints file), so installing TRL cannot replace
# them; the script checks that afterwards too. peft is installed at the lock's version, because
# the TRL contender trains a LoRA adapter through SFTTrainer(peft_config=...).
#
# TRL 1.16.0 needs transformers>=4.56.2, accelerate>=1.10.1, datasets>=4.7.0 and (its [peft]
# extra) peft>=0.13.0, all met by the lock; datasets 5.2.0 needs huggingface-hub>=1.31,<3.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${TRL_VENV:-$HERE/.venv-trl}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"       # the same as the Makefile's default
TRL_VERSION="${TRL_VERSION:-1.16.0}"
DATASETS_VERSION="${DATASETS_VERSION:-5.2.0}"
LOCK="$ROOT/requirements-lock.txt"

locked() {  # the version of a package pinned in requirements-lock.txt
    local v
    v="$(grep -i -E "^$1==" "$LOCK" | head -1 | cut -d= -f3)"
    [ -n "$v" ] || { echo "setup_trl.sh: $1 is not pinned in $LOCK" >&2; exit 1; }
    echo "$v"
}

TRANSFORMERS_VERSION="$(locked transformers)"
PEFT_VERSION="$(locked peft)"
STAMP="$TORCH_SPEC transformers==$TRANSFORMERS_VERSION peft==$PEFT_VERSION trl==$TRL_VERSION datasets==$DATASETS_VERSION"

if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$STAMP" ]; then
    echo "setup_trl.sh: $VENV is ready"
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet)

# 1. torch, CPU build (a local wheel through pip's find-links where the machine has one).
"${PIP[@]}" "$TORCH_SPEC"
TORCH_INSTALLED="$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
if "$VENV/bin/python" -c 'import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)'; then
    :
else
    echo "setup_trl.sh: warning: torch $TORCH_INSTALLED is a CUDA build" >&2
fi

# 2. transformers as medtune's lock pins it (with its locked tokenizer / weight-loading stack).
CONSTRAINTS="$VENV/constraints.txt"
{
    echo "torch==$TORCH_INSTALLED"
    for p in transformers tokenizers safetensors huggingface_hub accelerate peft; do
        echo "$p==$(locked "$p")"
    done
} > "$CONSTRAINTS"
"${PIP[@]}" -c "$CONSTRAINTS" "transformers==$TRANSFORMERS_VERSION"

# 3. TRL, datasets and peft, not allowed to move anything pinned above.
"${PIP[@]}" -c "$CONSTRAINTS" "trl==$TRL_VERSION" "datasets==$DATASETS_VERSION" "peft==$PEFT_VERSION"

# Check: the pinned packages are still the ones installed / locked above.
"$VENV/bin/python" - "$CONSTRAINTS" "$TRL_VERSION" "$DATASETS_VERSION" <<'PYEOF'
import sys
from importlib.metadata import version
constraints, want_trl, want_ds = sys.argv[1:]
want = dict(line.strip().split("==", 1) for line in open(constraints) if "==" in line)
want["trl"] = want_trl
want["datasets"] = want_ds
import torch
got = {name: (torch.__version__ if name == "torch" else version(name)) for name in want}
bad = {name: (got[name], v) for name, v in want.items() if got[name] != v}
assert not bad, f"pip replaced a pinned package (got, wanted): {bad}"
print("setup_trl.sh: " + ", ".join(f"{n} {v}" for n, v in got.items()))
PYEOF
echo "$STAMP" > "$VENV/.installed"
