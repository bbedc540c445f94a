#!/usr/bin/env bash
# A separate virtual environment with EleutherAI's lm-evaluation-harness, for
# benchmarks/lm_eval_compare/run.sh. medtune's own .venv is never touched.
#
#   bash benchmarks/lm_eval_compare/setup.sh            # creates benchmarks/lm_eval_compare/.venv-lmeval
#
# Order matters: the CPU build of torch first (an unpinned torch pulls GB of CUDA packages), then
# the transformers version that medtune's requirements-lock.txt names, then lm-eval. torch,
# transformers, tokenizers, safetensors, huggingface_hub and accelerate are held at the versions
# just installed / locked (a pip constraints file), so installing lm-eval cannot replace them;
# the script checks that afterwards too. accelerate and peft (the harness's [hf] extra) are held
# at the lock's versions as well.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${LMEVAL_VENV:-$HERE/.venv-lmeval}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"       # the same as the Makefile's default
LM_EVAL_VERSION="${LM_EVAL_VERSION:-0.4.13}"
LOCK="$ROOT/requirements-lock.txt"

locked() {  # the version of a package pinned in requirements-lock.txt
    local v
    v="$(grep -i -E "^$1==" "$LOCK" | head -1 | cut -d= -f3)"
    [ -n "$v" ] || { echo "setup.sh: $1 is not pinned in $LOCK" >&2; exit 1; }
    echo "$v"
}

TRANSFORMERS_VERSION="$(locked transformers)"

if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$TORCH_SPEC transformers==$TRANSFORMERS_VERSION lm-eval[hf]==$LM_EVAL_VERSION" ]; then
    echo "setup.sh: $VENV is ready"
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
    echo "setup.sh: warning: torch $TORCH_INSTALLED is a CUDA build" >&2
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

# 3. lm-eval with its Hugging Face backend (the [hf] extra: accelerate, peft), not allowed to move
#    anything pinned above.
"${PIP[@]}" -c "$CONSTRAINTS" "lm-eval[hf]==$LM_EVAL_VERSION"

# Check: torch and transformers are still the ones installed in steps 1 and 2.
"$VENV/bin/python" - "$TORCH_INSTALLED" "$TRANSFORMERS_VERSION" "$LM_EVAL_VERSION" <<'EOF'
import sys
from importlib.metadata import version
import torch, transformers
want_torch, want_tf, want_lm = sys.argv[1:]
got = (torch.__version__, transformers.__version__, version("lm-eval"))
assert got == (want_torch, want_tf, want_lm), f"pip replaced a pinned package: {got} != {(want_torch, want_tf, want_lm)}"
print(f"setup.sh: torch {got[0]}, transformers {got[1]}, lm-eval {got[2]}")
EOF
echo "$TORCH_SPEC transformers==$TRANSFORMERS_VERSION lm-eval[hf]==$LM_EVAL_VERSION" > "$VENV/.installed"
