#!/usr/bin/env bash
# medtune's training speed on one GPU, in one call of a lent machine: QLoRA / LoRA training of a Llama-3-8B-
# and a Llama-2-7B-shaped random-init model through train.py on SmolLM2-tokenized MedQA and 2,048-token
# blocks; medtune's default against its previous path, train.kernels=liger and plain transformers + PEFT;
# tokens/s, MFU against the measured bf16 matmul peak, peak memory, and train.micro_batch_size=auto's plan
# against the measured peak. See benchmarks/gpu_check/README.md.
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine (CPU dry run when no CUDA device is seen)
#   bash benchmarks/gpu_check.sh --cpu-dry    # every step on the CPU with tiny stand-ins (~4 min on 2 cores)
#   bash benchmarks/gpu_check.sh --help       # options (--budget, --steps, --only, --skip, ...)
#
# The GPU machine has no network: the packages it lacks travel as wheels in .gpu_wheels/ (made here by
# benchmarks/gpu_check/prepare_wheels.sh, carried with the call) and are installed into /tmp/gpu_check_site,
# only those whose module the machine's python3 cannot import; the token data travels in .gpu_wheels/data.
# medtune itself runs from src/ (PYTHONPATH).
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
SITE="${GPU_CHECK_SITE:-/tmp/gpu_check_site}"
WHEELS="${GPU_CHECK_WHEELS:-$REPO/.gpu_wheels}"

has_module() { "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }

if [[ -f "$WHEELS/MANIFEST.txt" ]]; then
  missing=()
  while read -r wheel module; do
    [[ -z "$wheel" || "$wheel" == \#* ]] && continue
    [[ "$wheel" == fallback/* ]] && continue
    has_module "$module" || missing+=("$WHEELS/$wheel")
  done < "$WHEELS/MANIFEST.txt"
  # peft: only if the image has none, or one older than medtune needs (>= 0.18)
  if ! "$PY" -c "import peft, sys; v = tuple(int(x) for x in peft.__version__.split('.')[:2]); sys.exit(v < (0, 18))" 2>/dev/null; then
    missing+=("$WHEELS"/fallback/peft-*.whl)
  fi
  if (( ${#missing[@]} )); then
    echo "installing ${#missing[@]} carried wheel(s) into $SITE: ${missing[*]##*/}"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "${missing[@]}" || echo "WARNING: installing the carried wheels failed; steps that need them will fail"
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
elif ! has_module hydra || ! has_module omegaconf; then
  echo "WARNING: hydra/omegaconf are missing and there is no .gpu_wheels/ (run benchmarks/gpu_check/prepare_wheels.sh" \
       "here and carry .gpu_wheels)" >&2
fi
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export GPU_CHECK_DATA="${GPU_CHECK_DATA:-$WHEELS/data}"
# The check starts ~17 Python processes. Where the image's torch / transformers have no byte-code and their
# folders are read-only, each would compile them again: one writable cache makes that happen once.
if [[ -z "${PYTHONPYCACHEPREFIX:-}" ]] && ! "$PY" - <<'EOF'
import importlib.util
import os
import sys

for name in ("torch", "transformers"):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        continue
    folder = os.path.dirname(spec.origin)
    compiled = os.path.join(folder, "__pycache__", f"__init__.{sys.implementation.cache_tag}.pyc")
    if not os.path.isfile(compiled) and not os.access(folder, os.W_OK):
        sys.exit(1)
EOF
then
  export PYTHONPYCACHEPREFIX=/tmp/gpu_check_pycache
  echo "the image's packages have no byte-code and are read-only: caching it in $PYTHONPYCACHEPREFIX"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false \
  PYTHONUNBUFFERED=1

exec "$PY" "$REPO/benchmarks/gpu_check/run_check.py" "$@"
