"""The GPU check: medtune's training speed on one GPU, every step timed, in one call of a lent machine (README.md).

Run through `bash benchmarks/gpu_check.sh` (it installs the carried wheels first). Steps, in priority order,
each a separate process with its own time limit inside one overall budget (a step that fails or hangs is
recorded with the tail of its log, and the next one starts):

  env          versions, nvidia-smi, SDPA backends, flash-attn, triton, liger-kernel, bitsandbytes NF4, and the
               measured bf16 matmul peak (the MFU denominator)
  data         the carried SmolLM2-tokenized MedQA examples checked against the carried tokenizer, and the token
               files each model trains on (ids % 32000 for the 32k vocabulary; 2,048-token pretraining blocks)
  prebuild     random-init checkpoints in medtune's tiny cache: Llama-3-8B's shape (8b), then Llama-2-7B's (7b)
  <config>_*   one training run of a configuration (q8: 8B QLoRA on MedQA, q7: 7B QLoRA, l8 / l7: LoRA bf16,
               q8blk: 8B QLoRA on 2,048-token blocks) by one contender: medtune's default, its previous path
               (train.loss=full_logits train.padding_free=false), train.kernels=liger, or the plain
               transformers + PEFT script (plain_baseline_gpu.py) on the same token ids and batches
  q8_auto      train.micro_batch_size=auto on the 8B QLoRA configuration: the planned memory vs the measured peak
  plan_auto    the planner's estimate at the micro batch auto chose and at the widest micro-batch it trained

`--cpu-dry` (automatic when no CUDA device is visible) runs every step on the CPU with tiny stand-ins of both
shapes and a few steps, to prove the plumbing (liger steps are skipped there: no CUDA). The report goes to
$OUT/gpu_check.md when $OUT is set (also gpu_check.json and gpu_check_logs.tar.gz), else to
benchmarks/results/gpu_check.md (gpu_check_cpu_dry.md for the dry run). It is rewritten after every step, so a
killed run leaves one.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]


def repo_relative(text: str) -> str:
    """Paths inside the checkout as the repo names them (reports are committed; machines differ)."""
    return text.replace(f"{REPO}/", "")


HERE = REPO / "benchmarks" / "gpu_check"
GIB, MIB = 2**30, 2**20


def llama(**shape) -> dict:
    """model.architecture.* of an untied Llama decoder of this shape."""
    return dict(model_type="llama", **shape, tie_word_embeddings=False, initializer_range=0.02)


# key -> (label, model.architecture.* overrides of model=tiny, config.json numbers the architecture has no key for)
MODELS = {
    "gpu": {
        "8b": (
            "Llama-3-8B shape (random init)",
            llama(
                hidden_size=4096,
                num_layers=32,
                num_heads=32,
                num_kv_heads=8,
                intermediate_size=14336,
                vocab_size=128256,
                max_position_embeddings=8192,
            ),
            {"rope_theta": 500000.0},
        ),
        "7b": (
            "Llama-2-7B shape (random init)",
            llama(
                hidden_size=4096,
                num_layers=32,
                num_heads=32,
                num_kv_heads=32,
                intermediate_size=11008,
                vocab_size=32000,
                max_position_embeddings=4096,
            ),
            {},
        ),
    },
    "cpu": {
        "8b": (
            "tiny stand-in for the 8B (GQA 4 / 2 heads, untied, 8,192-token vocabulary)",
            llama(
                hidden_size=128,
                num_layers=2,
                num_heads=4,
                num_kv_heads=2,
                intermediate_size=448,
                vocab_size=8192,
                max_position_embeddings=2048,
            ),
            {"rope_theta": 500000.0},
        ),
        "7b": (
            "tiny stand-in for the 7B (MHA, untied, 4,096-token vocabulary)",
            llama(
                hidden_size=128,
                num_layers=2,
                num_heads=4,
                num_kv_heads=4,
                intermediate_size=384,
                vocab_size=4096,
                max_position_embeddings=2048,
            ),
            {},
        ),
    },
}
ADAPTER_TEXT = {
    "qlora": "QLoRA: NF4 + double quant, bf16 compute, r 64, alpha 16, dropout 0.1, all linear layers",
    "lora": "LoRA: bf16 weights (autocast), r 8, alpha 8, q_proj + v_proj",
}
# contender -> (label, what it is, train.py overrides; None: the plain script)
CONTENDERS = {
    "default": ("medtune default", "target-only loss, padding-free batches, train.attention=auto", []),
    "previous": (
        "medtune previous path",
        "train.loss=full_logits train.padding_free=false (what medtune did before)",
        ["train.loss=full_logits", "train.padding_free=false"],
    ),
    "liger": ("medtune + liger", "the default plus train.kernels=liger", ["train.kernels=liger"]),
    "plain": ("plain transformers+PEFT", "plain_baseline_gpu.py: Trainer + DataCollatorForSeq2Seq, full logits", None),
    "auto": ("medtune micro_batch_size=auto", "the default with train.micro_batch_size=auto", []),
}
CONFIGS = {  # name -> (model, adapter, data)
    "q8": ("8b", "qlora", "medqa"),
    "q7": ("7b", "qlora", "medqa"),
    "l8": ("8b", "lora", "medqa"),
    "l7": ("7b", "lora", "medqa"),
    "q8blk": ("8b", "qlora", "blocks"),
}
SPEED_PREFIXES = ("batches: ", "loss: ", "attention: ", "kernels: ", "precision: ", "train.micro_batch_size=auto: ")


class StepFailed(Exception):
    def __init__(self, message: str, log: Path | None = None):
        super().__init__(message)
        self.log = log


@dataclass
class Step:
    name: str
    title: str
    timeout: float  # seconds, this mode
    fn: Callable[[], dict]
    min_start: float = 15.0  # do not start with less budget left than this
    needs: tuple[str, ...] = ()  # steps that must have succeeded
    skip_if: Callable[[], str | None] | None = None  # a reason not to run it here
    status: str = "pending"  # ok | failed | timeout | skipped
    seconds: float = 0.0
    limit: float = 0.0
    result: dict = field(default_factory=dict)
    error: str = ""
    tail: str = ""
    gpu_peak_mib: float | None = None
    gpu_util: float | None = None


@dataclass(frozen=True)
class Run:
    name: str
    config: str  # a CONFIGS key
    contender: str  # a CONTENDERS key

    @property
    def model(self) -> str:
        return CONFIGS[self.config][0]

    @property
    def adapter(self) -> str:
        return CONFIGS[self.config][1]

    @property
    def data(self) -> str:
        return CONFIGS[self.config][2]


class GpuSampler(threading.Thread):
    """Device memory in use (MiB) and utilisation every 0.25 s, through NVML (nvidia-smi as a fallback)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float, float]] = []
        self.stop = threading.Event()
        self.how = None
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)

            def read():
                mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
                util = pynvml.nvmlDeviceGetUtilizationRates(handle)
                return mem.used / MIB, float(util.gpu)

            read()
            self.read, self.how = read, "NVML"
        except Exception:  # noqa: BLE001
            if shutil.which("nvidia-smi"):

                def read():
                    out = subprocess.run(
                        ["nvidia-smi", "--query-gpu=memory.used,utilization.gpu", "--format=csv,noheader,nounits"],
                        capture_output=True,
                        text=True,
                        timeout=5,
                    ).stdout.splitlines()[0]
                    used, util = (float(x) for x in out.split(","))
                    return used, util

                self.read, self.how = read, "nvidia-smi"

    def run(self):
        while self.how and not self.stop.is_set():
            try:
                used, util = self.read()
                self.samples.append((time.monotonic(), used, util))
            except Exception:  # noqa: BLE001
                pass
            self.stop.wait(0.25 if self.how == "NVML" else 0.5)

    def window(self, t0: float, t1: float) -> tuple[float | None, float | None]:
        inside = [(u, g) for t, u, g in self.samples if t0 <= t <= t1]
        if not inside:
            return None, None
        return max(u for u, _ in inside), sum(g for _, g in inside) / len(inside)


def steady_rate(points: list[tuple[int, float, float]], warm: int) -> tuple[float | None, int]:
    """tokens/s between the end of step `warm` and the last step, from (step, tokens seen, seconds) points."""
    if len(points) < 2:
        return None, 0
    start = max((p for p in points if p[0] <= warm), key=lambda p: p[0], default=points[0])
    if start == points[-1]:
        start = points[0]
    tokens, seconds = points[-1][1] - start[1], points[-1][2] - start[2]
    return (tokens / seconds if seconds > 0 else None), points[-1][0] - start[0]


def tail(path: Path | None, chars: int = 2500) -> str:
    if path is None or not path.is_file():
        return ""
    text = path.read_text(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # ANSI colours
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines())  # progress bars
    return text[-chars:]


def speed_lines(log: Path) -> list[str]:
    """The lines a train.py run printed about its loss path, attention, kernels, batches and auto micro batch
    (the console wraps at 140 columns: a continuation is joined back)."""
    lines = tail(log, 400_000).splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        if not line.startswith(SPEED_PREFIXES):
            continue
        text = line.rstrip()
        for nxt in lines[i + 1 : i + 4]:
            if not nxt.strip() or nxt.startswith(SPEED_PREFIXES) or "%|" in nxt or nxt.startswith(("{", " ")):
                break
            text += " " + nxt.strip()
        out.append(text)
    return out


def parse_auto(lines: list[str]) -> dict:
    """train.micro_batch_size=auto's printed choice: micro batch, accumulation, checkpointing, planned GiB."""
    line = next((x for x in lines if x.startswith("train.micro_batch_size=auto: ")), "")
    m = re.search(r"auto: (\d+) \(x (\d+) accumulation steps\), gradient checkpointing (on|off)", line)
    if not m:
        return {"line": line} if line else {}
    planned = re.search(r"planned ([\d,.]+) GiB", line)
    return {
        "line": line,
        "micro_batch_size": int(m.group(1)),
        "accumulation": int(m.group(2)),
        "gradient_checkpointing": m.group(3) == "on",
        "planned_gib": float(planned.group(1).replace(",", "")) if planned else None,
        "fits": "does NOT fit" not in line,
    }


def gib(n: float | None) -> str:
    return "–" if n is None else f"{n / GIB:.2f}"


def num(x: Any, fmt: str = "{:,.0f}") -> str:
    return "–" if x is None else fmt.format(x)


def parameters(arch: dict) -> int:
    """A Llama decoder's parameters from its shape (4-bit packing does not change the count)."""
    h, inter, vocab, layers = arch["hidden_size"], arch["intermediate_size"], arch["vocab_size"], arch["num_layers"]
    head_dim = h // arch["num_heads"]
    kv = arch["num_kv_heads"] * head_dim
    layer = 2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h
    return vocab * h + layers * layer + h + (0 if arch["tie_word_embeddings"] else vocab * h)


class Check:
    def __init__(self, args):
        self.args = args
        self.mode = args.mode
        self.gpu = self.mode == "gpu"
        self.started = time.monotonic()
        self.wall_start = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.deadline = self.started + args.budget
        self.work = args.work_dir
        self.cache = self.work / "cache"
        self.logs = self.work / "logs"
        self.py = sys.executable
        g = self.gpu
        warm = args.warmup if args.warmup is not None else (2 if g else 1)
        # data -> optimizer steps, micro batch, global batch, warm-up steps left out of tokens/s
        self.shape = {
            "medqa": dict(steps=args.steps or (8 if g else 3), micro=8, batch=8, warm=warm),
            "blocks": dict(steps=5 if g else 2, micro=4 if g else 2, batch=4 if g else 2, warm=warm if g else 1),
            "auto": dict(steps=3 if g else 2, micro="auto", batch=64 if g else 16, warm=1),
        }
        self.block_tokens = 2048
        self.lr = 1e-4
        self.data_dir = Path(os.environ.get("GPU_CHECK_DATA") or REPO / ".gpu_wheels" / "data")
        self.device_name, self.device_gib, self.peak_tflops = ("gpu" if g else "cpu"), None, None
        out_dir = os.environ.get("OUT")
        base = "gpu_check" if g else "gpu_check_cpu_dry"
        if args.out:
            self.report_path = args.out
        elif out_dir:
            self.report_path = Path(out_dir) / f"{base}.md"
        else:
            self.report_path = REPO / "benchmarks" / "results" / f"{base}.md"
        self.out_dir = Path(out_dir) if out_dir else None
        self.sampler = GpuSampler() if g else None
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "WANDB_MODE": "disabled",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
        }
        if not g:
            self.env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
        self.steps: list[Step] = []
        self.runs: dict[str, Run] = {}

    # -------------------------------------------------------------------------------------------- plumbing

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, step: Step, cmd: list[str], log_name: str | None = None, env: dict | None = None) -> Path:
        """Run `cmd` in its own process group with the step's limit; raise StepFailed on a non-zero exit."""
        log = self.logs / f"{log_name or step.name}.log"
        limit = max(1.0, min(step.limit - (time.monotonic() - step._t0), self.remaining()))  # type: ignore[attr-defined]
        cmd = [str(c) for c in cmd]
        with open(log, "a") as f:
            f.write(f"$ {shlex.join(cmd)}\n# limit {limit:.0f} s\n")
            f.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env={**self.env, **(env or {})},
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        proc.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
                step.status = "timeout"
                raise StepFailed(f"timed out after {limit:.0f} s", log) from None
        if rc != 0:
            raise StepFailed(f"exit code {rc}", log)
        return log

    def execute(self, step: Step) -> None:
        missing = [n for n in step.needs if self.step(n).status != "ok"]
        left = self.remaining()
        if self.args.only and step.name not in self.args.only:
            step.status, step.error = "skipped", "not in --only"
            return
        if step.name in self.args.skip:
            step.status, step.error = "skipped", "--skip"
            return
        if missing:
            step.status, step.error = "skipped", f"needs {', '.join(missing)}"
            return
        reason = step.skip_if() if step.skip_if else None
        if reason:
            step.status, step.error = "skipped", reason
            print(f"[{time.monotonic() - self.started:6.1f} s] {step.name}: skipped ({reason})", flush=True)
            return
        if left < step.min_start:
            step.status, step.error = "skipped", f"{left:.0f} s of the budget left, needs {step.min_start:.0f} s"
            return
        step.limit = min(step.timeout, left)
        step._t0 = time.monotonic()  # type: ignore[attr-defined]
        print(f"[{time.monotonic() - self.started:6.1f} s] {step.name}: start (limit {step.limit:.0f} s)", flush=True)
        try:
            step.result = step.fn() or {}
            step.status = "ok"
        except StepFailed as error:
            step.status = "timeout" if step.status == "timeout" else "failed"
            step.error, step.tail = str(error), tail(error.log)
        except Exception as error:  # noqa: BLE001 - a bug in a step must not stop the check
            step.status, step.error = "failed", f"{type(error).__name__}: {error}"
            step.tail = traceback.format_exc()[-2500:]
        t1 = time.monotonic()
        step.seconds = t1 - step._t0  # type: ignore[attr-defined]
        if self.sampler:
            step.gpu_peak_mib, step.gpu_util = self.sampler.window(step._t0, t1)  # type: ignore[attr-defined]
        print(
            f"[{t1 - self.started:6.1f} s] {step.name}: {step.status} in {step.seconds:.1f} s"
            + (f" ({step.error})" if step.error else ""),
            flush=True,
        )

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def ok(self, name: str) -> dict | None:
        s = next((s for s in self.steps if s.name == name), None)
        return s.result if s is not None and s.status == "ok" else None

    # -------------------------------------------------------------------------------------------- configs

    def model_overrides(self, key: str) -> list[str]:
        arch = MODELS[self.mode][key][1]
        return [
            "model=tiny",
            *(f"model.architecture.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in arch.items()),
        ]

    def hardware_overrides(self) -> list[str]:
        if not self.gpu:
            return ["hardware=cpu"]
        out = ["hardware=a100x1", "model.dtype=bfloat16", f"hardware.device_name={self.device_name}"]
        if self.device_gib:
            out.append(f"hardware.device_memory_gib={self.device_gib:.2f}")
        out.append(f"hardware.peak_tflops={self.peak_tflops:.0f}" if self.peak_tflops else "hardware.peak_tflops=null")
        return out

    def data_info(self) -> dict:
        data = self.ok("data")
        if not data:
            raise StepFailed("no token data: the data step failed")
        return data

    def token_file(self, run: Run) -> str:
        vocab = str(MODELS[self.mode][run.model][1]["vocab_size"])
        return self.data_info()["files"][vocab]["blocks" if run.data == "blocks" else "medqa"]

    def shape_of(self, run: Run) -> dict:
        return self.shape["auto" if run.contender == "auto" else run.data]

    def limits(self, run: Run) -> tuple[int, int]:
        """train.max_input_tokens / max_target_tokens: the data's longest prompt and response (MedQA), or a
        block split in two (blocks; pre-tokenized examples are checked against the sum, never cut)."""
        if run.data == "blocks":
            return self.block_tokens // 2, self.block_tokens // 2
        data = self.data_info()
        return data["max_prompt"], data["max_target"]

    def overrides(self, run: Run) -> list[str]:
        shape = self.shape_of(run)
        max_input, max_target = self.limits(run)
        out = [
            *self.model_overrides(run.model),
            f"adapter={run.adapter}",
            "dataset=prompt_response_json",
            f"dataset.path={self.token_file(run)}",
            "dataset.format=tokens",
            "dataset.eval_fraction=0",
            "prompt=alpaca",
            "logger=none",
            "exam_eval.enabled=false",
            "train.eval_steps=0",
            "train.save_steps=0",
            "train.logging_steps=1",
            f"train.max_steps={shape['steps']}",
            f"train.micro_batch_size={shape['micro']}",
            f"train.global_batch_size={shape['batch']}",
            f"train.max_input_tokens={max_input}",
            f"train.max_target_tokens={max_target}",
            "train.sampling=sequential",
            "train.lr_scheduler=constant",
            "train.warmup_steps=0",
            f"train.learning_rate={self.lr}",
            "seed=42",
            f"paths.output_root={self.work / 'outputs'}",
            f"paths.cache_dir={self.cache}",
            *self.hardware_overrides(),
            *(CONTENDERS[run.contender][2] or []),
        ]
        if run.contender == "auto" and not self.gpu:
            out.append("hardware.device_memory_gib=2")  # the CPU has no device size; auto needs one
        return out

    def built(self, key: str) -> dict:
        """The prebuild step's entry for model `key` (also when the step failed on the other model)."""
        return (self.ok("prebuild") or self.step("prebuild").result or {}).get(key) or {}

    def checkpoint(self, key: str) -> str:
        built = self.built(key)
        if built.get("ok"):
            return built["checkpoint"]
        raise StepFailed(f"no checkpoint of the {key} model: {built.get('error', 'prebuild did not build it')}")

    def spec_file(self, name: str, spec: dict) -> Path:
        path = self.work / "specs" / f"{name}.json"
        path.write_text(json.dumps(spec, indent=2))
        return path

    def window(self, run: Run) -> list[int]:
        """Token counts of the examples the steady-state steps trained (sequential batches, in file order)."""
        shape = self.shape_of(run)
        if run.data == "blocks":
            return [self.block_tokens] * ((shape["steps"] - shape["warm"]) * shape["batch"])
        lengths = self.data_info()["lengths"]
        first, last = shape["warm"] * shape["batch"], shape["steps"] * shape["batch"]
        return [lengths[i % len(lengths)] for i in range(first, last)]

    def expected_tokens(self, run: Run, steps: int) -> int:
        """Real tokens of the first `steps` optimizer steps."""
        shape = self.shape_of(run)
        if run.data == "blocks":
            return steps * shape["batch"] * self.block_tokens
        lengths = self.data_info()["lengths"]
        return sum(lengths[i % len(lengths)] for i in range(steps * shape["batch"]))

    # -------------------------------------------------------------------------------------------- steps

    def s_env(self, step: Step) -> dict:
        out = self.work / "results" / "env.json"
        self.run(step, [self.py, HERE / "helpers.py", "env", "--json", out])
        info = json.loads(out.read_text())
        gpu = info.get("gpu") or {}
        checks = info.get("checks", {})
        mm = checks.get("matmul_bf16" if self.gpu else "matmul_cpu", {})
        if mm.get("ok"):
            self.peak_tflops = mm["result"]["peak_tflops"]
        if self.gpu and gpu:
            self.device_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", gpu["name"]).strip("_")
            self.device_gib = gpu["total_memory_gib"]
        return info

    def s_data(self, step: Step) -> dict:
        if not (self.data_dir / "data_info.json").is_file():
            raise StepFailed(
                f"no carried token data in {self.data_dir}: run benchmarks/gpu_check/prepare_wheels.sh here "
                "(it writes .gpu_wheels/data) and carry .gpu_wheels"
            )
        spec = {
            "source": str(self.data_dir),
            "out": str(self.work / "data"),
            "vocabs": [m[1]["vocab_size"] for m in MODELS[self.mode].values()],
            "block_tokens": self.block_tokens,
        }
        out = self.work / "results" / "data.json"
        self.run(step, [self.py, HERE / "helpers.py", "data", "--spec", self.spec_file("data", spec), "--json", out])
        return json.loads(out.read_text())

    def s_prebuild(self, step: Step) -> dict:
        spec = {
            "device": "cuda" if self.gpu else "cpu",
            "dtype": "bfloat16" if self.gpu else "float32",
            "runs": [
                {
                    "name": key,
                    "overrides": [
                        *self.model_overrides(key),
                        "adapter=lora",
                        f"paths.output_root={self.work / 'outputs'}",
                        f"paths.cache_dir={self.cache}",
                        *self.hardware_overrides(),
                    ],
                    "config_updates": MODELS[self.mode][key][2],
                }
                for key in ("8b", "7b")
            ],
        }
        out = self.work / "results" / "prebuild.json"
        try:
            self.run(
                step,
                [self.py, HERE / "helpers.py", "prebuild", "--spec", self.spec_file("prebuild", spec), "--json", out],
            )
        except StepFailed:
            if out.is_file():  # the model built before the failure is still there for its runs
                step.result = json.loads(out.read_text())
            raise
        return json.loads(out.read_text())

    def s_medtune(self, step: Step, run: Run) -> dict:
        run_dir = self.work / "runs" / run.name
        shutil.rmtree(run_dir, ignore_errors=True)
        mem = self.work / "results" / f"{run.name}.mem.json"
        cmd = [
            self.py,
            HERE / "run_with_memstats.py",
            mem,
            "train.py",
            *self.overrides(run),
            f"hydra.run.dir={run_dir}",
        ]
        try:
            log = self.run(step, cmd, env={"GPU_CHECK_STEP_LOG": "1"})
        finally:
            failure = run_dir / "failure.json"
            if failure.is_file():
                step.result["failure"] = json.loads(failure.read_text()).get("message", "")[:1500]
        summary = json.loads((run_dir / "train_summary.json").read_text())
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        rows = [r for r in rows if "train/loss" in r]
        memstats = json.loads(mem.read_text()) if mem.is_file() else {}
        shape = self.shape_of(run)
        clock = memstats.get("step_log") or []
        if len(clock) >= 2:  # the same synchronized clock as the plain script
            points = [(s, tok, t - clock[0][2]) for s, tok, t in clock]
            how = "synchronized step clock"
        else:  # medtune's own per-step rate (seconds inside optimizer steps)
            points, t, seen = [(0, 0, 0.0)], 0.0, 0
            for r in rows:
                tokens = r.get("train/tokens_seen", seen)
                speed = r.get("train/tokens_per_second")
                if speed:
                    t += (tokens - seen) / speed
                points.append((r["step"], tokens, t))
                seen = tokens
            how = "medtune's per-step rate"
        rate, counted = steady_rate(points, shape["warm"])
        phases = None
        if len(clock) >= 2 and memstats.get("started_perf") is not None:
            phases = {
                "start": clock[0][2] - memstats["started_perf"],
                "train": clock[-1][2] - clock[0][2],
                "after": memstats["dump_perf"] - clock[-1][2],
            }
        lines = speed_lines(log)
        info = json.loads((run_dir / "run_info.json").read_text()) if (run_dir / "run_info.json").is_file() else {}
        steps = summary.get("train/steps")
        result = {
            "impl": "medtune",
            "run": run.name,
            "config": run.config,
            "contender": run.contender,
            "checkpoint": info.get("checkpoint"),
            "steps": steps,
            "tokens_per_second": rate,
            "rate_clock": how,
            "steady_steps": counted,
            "own_tokens_per_second": summary.get("train/tokens_per_second"),
            "step_seconds": summary.get("train/step_seconds"),
            "tokens_seen": summary.get("train/tokens_seen"),
            "expected_tokens": self.expected_tokens(run, steps or 0) if run.contender != "auto" else None,
            "max_allocated": memstats.get("max_allocated"),
            "max_reserved": memstats.get("max_reserved"),
            "train_peak_allocated": (summary.get("train/peak_memory_mib") or 0) * MIB if self.gpu else None,
            "max_rss": memstats.get("max_rss"),
            "loss_first": summary.get("train/loss_first"),
            "loss_last": summary.get("train/loss_last"),
            "train_seconds": summary.get("train/seconds"),
            "run_seconds": summary.get("run/seconds"),
            "total_params_reported": summary.get("model/total_params"),
            "trainable": summary.get("model/trainable_params"),
            "mfu_logged": [r.get("train/mfu") for r in rows if r.get("train/mfu") is not None][-1:] or None,
            "speed_lines": lines,
            "speed_summary": {k: v for k, v in summary.items() if k.startswith("speed/")},
            "wall_seconds": memstats.get("wall_seconds"),
            "phase_seconds": phases,
            "command": "python " + shlex.join([str(c) for c in cmd[3:]]).replace(str(self.work), "<work>"),
        }
        if run.contender == "auto":
            auto = parse_auto(lines)
            for key in ("train/micro_batch_size", "train/gradient_checkpointing", "train/planned_memory_gib"):
                if key in summary:
                    auto[f"summary_{key.split('/')[1]}"] = summary[key]
            if auto.get("planned_gib") is None and summary.get("train/planned_memory_gib") is not None:
                auto["planned_gib"] = summary["train/planned_memory_gib"]
            if auto.get("micro_batch_size") is None and summary.get("train/micro_batch_size") is not None:
                auto["micro_batch_size"] = summary["train/micro_batch_size"]
            micro = auto.get("micro_batch_size")
            if micro:
                lengths = self.data_info()["lengths"]
                targets = self.data_info()["targets"]
                seen = (steps or 0) * shape["batch"]
                groups = [range(i, min(i + micro, seen)) for i in range(0, seen, micro)]
                rows_tokens = [sum(lengths[j % len(lengths)] for j in g) for g in groups]
                widest = max(range(len(groups)), key=lambda k: rows_tokens[k])
                auto["widest_row_tokens"] = rows_tokens[widest]
                auto["widest_row_targets"] = sum(targets[j % len(targets)] for j in groups[widest])
                auto["mean_row_tokens"] = sum(rows_tokens) / len(rows_tokens)
                result["expected_tokens"] = self.expected_tokens(run, steps or 0)
            result["auto"] = auto
        return result

    def s_plain(self, step: Step, run: Run) -> dict:
        out = self.work / "results" / f"{run.name}.json"
        shape = self.shape_of(run)
        max_input, max_target = self.limits(run)
        cmd = [
            self.py,
            HERE / "plain_baseline_gpu.py",
            "--checkpoint",
            self.checkpoint(run.model),
            "--examples",
            self.token_file(run),
            "--sequential",
            "--adapter",
            run.adapter,
            "--device",
            "cuda" if self.gpu else "cpu",
            "--dtype",
            "bfloat16" if self.gpu else "float32",
            "--gradient-checkpointing" if self.gpu else "--no-gradient-checkpointing",
            "--steps",
            shape["steps"],
            "--micro-batch",
            shape["micro"],
            "--lr",
            self.lr,
            "--max-input-tokens",
            max_input,
            "--max-target-tokens",
            max_target,
            "--output-dir",
            self.work / "plain" / run.name,
            "--json",
            out,
        ]
        self.run(step, cmd)
        r = json.loads(out.read_text())
        points = [(s, tok, t - r["step_log"][0][2]) for s, tok, t in r["step_log"]]
        rate, counted = steady_rate(points, shape["warm"])
        log, begun = r["step_log"], r.get("started_perf")
        phases = (
            {
                "start": log[0][2] - begun,
                "train": log[-1][2] - log[0][2],
                "after": begun + r["wall_seconds"] - log[-1][2],
            }
            if begun is not None and len(log) >= 2
            else None
        )
        return {
            "impl": "plain",
            "run": run.name,
            "config": run.config,
            "contender": run.contender,
            "steps": r["steps"],
            "tokens_per_second": rate,
            "rate_clock": "synchronized step clock",
            "steady_steps": counted,
            "own_tokens_per_second": r["tokens_per_second"],
            "tokens_seen": r["tokens_seen"],
            "expected_tokens": self.expected_tokens(run, r["steps"]),
            "max_allocated": r.get("max_allocated"),
            "max_reserved": r.get("max_reserved"),
            "max_rss": r.get("max_rss"),
            "loss_first": r["loss_first"],
            "loss_last": r["loss_last"],
            "train_seconds": r["train_seconds"],
            "load_seconds": r["load_seconds"],
            "trainable": r["trainable"],
            "widest_batch": r["widest_batch"],
            "wall_seconds": r["wall_seconds"],
            "phase_seconds": phases,
            "padding": 1 - r["collated_real_tokens"] / r["computed_tokens"] if r["computed_tokens"] else None,
            "command": "python " + shlex.join([str(c) for c in cmd[1:]]).replace(str(self.work), "<work>"),
        }

    def s_plan_auto(self, step: Step) -> dict:
        auto = (self.ok("q8_auto") or {}).get("auto") or {}
        if not auto.get("micro_batch_size"):
            raise StepFailed("q8_auto printed no micro batch choice")
        run = self.runs["q8_auto"]
        micro = auto["micro_batch_size"]
        overrides = [o for o in self.overrides(run) if not o.startswith("train.micro_batch_size=")]
        overrides += [
            f"train.micro_batch_size={micro}",
            f"hardware.gradient_checkpointing={str(auto['gradient_checkpointing']).lower()}",
        ]
        per_target = math.ceil(auto["widest_row_targets"] / micro)
        per_example = math.ceil(auto["widest_row_tokens"] / micro)
        spec = {
            "runs": [
                {
                    "name": "q8_auto",
                    "overrides": overrides,
                    "checkpoint": None,
                    "widest": {"max_input": max(1, per_example - per_target), "max_target": max(1, per_target)},
                }
            ]
        }
        out = self.work / "results" / "plan_auto.json"
        self.run(
            step, [self.py, HERE / "helpers.py", "plan", "--spec", self.spec_file("plan_auto", spec), "--json", out]
        )
        return json.loads(out.read_text())["q8_auto"]

    def liger_reason(self) -> str | None:
        if not self.gpu:
            return "no CUDA: train.kernels=liger runs Triton kernels on a CUDA GPU (medtune refuses it on hardware=cpu)"
        checks = (self.ok("env") or {}).get("checks", {})
        for name in ("triton", "liger_kernel"):
            if name in checks and not checks[name].get("ok"):
                return f"{name} does not work here: {checks[name].get('error')}"
        return None

    def build(self) -> None:
        g = self.gpu

        def add(name, title, timeout_gpu, timeout_cpu, fn, min_gpu=30.0, min_cpu=10.0, needs=(), skip_if=None):
            step = Step(
                name,
                title,
                timeout_gpu if g else timeout_cpu,
                lambda: None,
                min_start=min_gpu if g else min_cpu,
                needs=tuple(needs),
                skip_if=skip_if,
            )
            step.fn = lambda s=step: fn(s)
            self.steps.append(step)

        def train(name, config, contender, timeout_gpu=90, min_gpu=30.0):
            run = Run(name, config, contender)
            self.runs[name] = run
            model, adapter, data = CONFIGS[config]
            what = f"{'QLoRA' if adapter == 'qlora' else 'LoRA'} {model.upper()}, {'MedQA' if data == 'medqa' else f'{self.block_tokens}-token blocks'}"
            fn = self.s_plain if contender == "plain" else self.s_medtune

            def reason():
                if not self.built(model).get("ok"):
                    return f"no {model} checkpoint (prebuild: {self.built(model).get('error', 'not built')})"
                return self.liger_reason() if contender == "liger" else None

            add(
                name,
                f"{CONTENDERS[contender][0]}, {what}",
                timeout_gpu,
                120,
                lambda s: fn(s, run),
                min_gpu=min_gpu,
                needs=("data",),
                skip_if=reason,
            )

        add("env", "environment, bf16 matmul peak", 75, 60, self.s_env, min_gpu=15)
        add("data", "SmolLM2-tokenized MedQA and 2,048-token blocks", 60, 60, self.s_data, min_gpu=15)
        add("prebuild", "random-init checkpoints: 8B shape, then 7B", 130, 120, self.s_prebuild, min_gpu=60)
        train("q8_default", "q8", "default")
        train("q8_previous", "q8", "previous")
        train("q8_liger", "q8", "liger")
        train("q8_plain", "q8", "plain")
        train("q7_default", "q7", "default")
        train("q7_previous", "q7", "previous")
        train("q7_plain", "q7", "plain")
        train("l8_default", "l8", "default")
        train("l8_plain", "l8", "plain")
        train("l7_default", "l7", "default")
        train("l7_plain", "l7", "plain")
        train("q8blk_default", "q8blk", "default", min_gpu=35)
        train("q8blk_previous", "q8blk", "previous", min_gpu=35)
        train("q8_auto", "q8", "auto", timeout_gpu=100, min_gpu=40)
        add(
            "plan_auto",
            "planner at auto's choice and at the widest micro-batch trained",
            45,
            60,
            self.s_plan_auto,
            min_gpu=15,
            needs=("q8_auto",),
        )
        if self.args.first:  # --first: these right after env, data and prebuild, in the order given
            setup = [s for s in self.steps if s.name in ("env", "data", "prebuild")]
            first = [self.step(n) for n in self.args.first if n in {s.name for s in self.steps}]
            rest = [s for s in self.steps if s not in setup and s not in first]
            self.steps = setup + [s for s in first if s not in setup] + rest

    # -------------------------------------------------------------------------------------------- numbers

    def arch(self, run: Run) -> dict:
        return MODELS[self.mode][run.model][1]

    def flops_per_token(self, run: Run, result: dict) -> float | None:
        """Model FLOPs per real token: 2N forward + 2N backward through the activations + 2 x trainable (their
        weight gradients) + causal attention 12 x layers x hidden x mean context (forward 4, backward 8)."""
        if not result.get("trainable"):
            return None
        arch = self.arch(run)
        lengths = self.window(run)
        if not lengths:
            return None
        context = sum(n * (n + 1) / 2 for n in lengths) / sum(lengths)
        attention = 12 * arch["num_layers"] * arch["hidden_size"] * context
        return 4.0 * parameters(arch) + 2.0 * result["trainable"] + attention

    def mfu(self, run: Run, result: dict) -> float | None:
        flops = self.flops_per_token(run, result)
        if not (flops and result.get("tokens_per_second") and self.peak_tflops):
            return None
        return result["tokens_per_second"] * flops / (self.peak_tflops * 1e12)

    def trained(self) -> list[tuple[Step, Run, dict]]:
        return [(s, self.runs[s.name], s.result) for s in self.steps if s.name in self.runs and s.status == "ok"]

    def ratio(self, config: str, contender: str, result: dict) -> str:
        other = self.ok(f"{config}_{contender}") or {}
        if not (other.get("tokens_per_second") and result.get("tokens_per_second")):
            return "–"
        return f"{result['tokens_per_second'] / other['tokens_per_second']:.2f}x"

    # -------------------------------------------------------------------------------------------- report

    def summary(self) -> list[str]:
        """The key numbers, one line each, for whoever reads only the top."""
        out = []
        env = self.ok("env") or {}
        chk = env.get("checks", {})
        if env.get("gpu"):
            out.append(
                f"- GPU: {env['gpu']['name']}, torch {env['versions'].get('torch')} (CUDA {env.get('torch_cuda')}), "
                f"measured bf16 matmul peak {num(self.peak_tflops)} TFLOP/s, bitsandbytes NF4 "
                f"{'works' if chk.get('bitsandbytes_nf4', {}).get('ok') else 'FAILS'}, triton "
                f"{(chk.get('triton', {}).get('result') or {}).get('version') or 'MISSING'}, liger-kernel "
                f"{'works' if chk.get('liger_kernel', {}).get('ok') else 'FAILS'}, flash-attn "
                f"{env['versions'].get('flash-attn') or 'not installed'}."
            )
        for config in CONFIGS:
            rows = [(r, res) for s, r, res in self.trained() if r.config == config and r.contender != "auto"]
            if not rows:
                continue
            parts = []
            for run, res in rows:
                mfu = self.mfu(run, res)
                parts.append(
                    f"{CONTENDERS[run.contender][0]} {num(res.get('tokens_per_second'))} tokens/s"
                    + (f" (MFU {100 * mfu:.1f}%)" if mfu is not None and self.gpu else "")
                )
            default = self.ok(f"{config}_default") or {}
            ratios = []
            for base in ("plain", "previous"):
                r = self.ratio(config, base, default)
                if r != "–":
                    ratios.append(f"default / {base} {r}")
            out.append(f"- {config}: " + "; ".join(parts) + (f"; {', '.join(ratios)}" if ratios else "") + ".")
        auto = (self.ok("q8_auto") or {}).get("auto") or {}
        if auto:
            m = self.ok("q8_auto") or {}
            measured = m.get("max_allocated") if self.gpu else m.get("max_rss")
            device = self.step("q8_auto").gpu_peak_mib
            out.append(
                f"- train.micro_batch_size=auto (8B QLoRA): micro batch {auto.get('micro_batch_size')}, checkpointing "
                f"{'on' if auto.get('gradient_checkpointing') else 'off'}, planned {num(auto.get('planned_gib'), '{:.2f}')} GiB; "
                f"measured {'allocator peak' if self.gpu else 'peak RSS'} {gib(measured)} GiB"
                + (f", device peak (NVML) {device / 1024:.2f} GiB" if device else "")
                + "."
            )
        bad = [s.name for s in self.steps if s.status in ("failed", "timeout")]
        skipped = [f"{s.name} ({s.error})" for s in self.steps if s.status == "skipped"]
        out.append(
            f"- steps: {sum(s.status == 'ok' for s in self.steps)} ok"
            + (f"; failed: {', '.join(bad)}" if bad else "")
            + (f"; skipped: {', '.join(skipped)}" if skipped else "")
            + "."
        )
        return ["## Summary", "", *out, ""]

    def report(self, final: bool) -> str:
        g = self.gpu
        env = self.ok("env") or {}
        v = env.get("versions", {})
        elapsed = time.monotonic() - self.started
        L: list[str] = []
        title = "GPU check" if g else "GPU check, CPU dry run (plumbing only: tiny stand-ins, a few steps)"
        mq, bl, au = self.shape["medqa"], self.shape["blocks"], self.shape["auto"]
        L += [
            f"# medtune {title}",
            "",
            "Command: `" + " ".join(["bash benchmarks/gpu_check.sh", *map(shlex.quote, self.args.passthrough)]) + "`",
            "",
            f"Started {self.wall_start}; {'finished' if final else 'IN PROGRESS (partial report)'} after "
            f"{elapsed:.0f} s of a {self.args.budget:.0f} s budget. Mode: **{'GPU' if g else 'CPU dry run'}**. "
            f"MedQA runs: {mq['steps']} optimizer steps of micro batch {mq['micro']} (global {mq['batch']}); "
            f"{self.block_tokens}-token blocks: {bl['steps']} steps of {bl['micro']} blocks; auto: {au['steps']} steps of "
            f"global batch {au['batch']}. Batches in file order (`train.sampling=sequential`, the plain script alike), "
            f"lr {self.lr} constant, seed 42; tokens/s over the steps after step {mq['warm']} "
            f"({bl['warm']} for blocks, {au['warm']} for auto) on the same synchronized step clock for every contender.",
            "",
        ]
        L += self.summary()
        L += self.environment_section(env, v)
        L += self.data_section()
        L += self.steps_section()
        L += self.models_section()
        L += self.training_section()
        L += self.auto_section()
        L += self.failures_section()
        cmds = [(s.name, s.result.get("command")) for s in self.steps if s.status == "ok" and s.result.get("command")]
        if cmds:
            L += ["## Commands", "", "`<work>` is " + str(self.work) + ".", "", *(f"- {n}: `{c}`" for n, c in cmds), ""]
        return "\n".join(L)

    def environment_section(self, env: dict, v: dict) -> list[str]:
        gpu = env.get("gpu") or {}
        chk = env.get("checks", {})

        def c(name):
            x = chk.get(name)
            if not x:
                return "–"
            return (str(x.get("result")) if x.get("ok") else f"FAILED: {x.get('error')}").replace("|", "/")

        mm = chk.get("matmul_bf16" if self.gpu else "matmul_cpu", {})
        mm_text = "–"
        if mm.get("ok"):
            r = mm["result"]
            rates = ", ".join(f"{n}³ {t:,.1f}" for n, t in r["tflops_by_size"].items())
            mm_text = f"{r['dtype']}: {rates} TFLOP/s; peak {r['peak_tflops']:,.1f}"
        elif mm:
            mm_text = f"FAILED: {mm.get('error')}"
        L = [
            "## Environment",
            "",
            "| item | value |",
            "|---|---|",
            f"| python | {env.get('python', '–')} ({env.get('executable', '–')}) |",
            f"| GPU | {gpu.get('name', 'none')} ({gpu.get('total_memory_gib', 0):.1f} GiB, capability "
            f"{gpu.get('capability', '–')}, {gpu.get('multiprocessors', '–')} SMs) |"
            if gpu
            else "| GPU | none (CPU) |",
            f"| torch / CUDA / cuDNN | {v.get('torch')} / {env.get('torch_cuda')} / {env.get('cudnn', '–')} |",
            *(
                f"| {d} | {v.get(d) or 'not installed'} |"
                for d in (
                    "transformers",
                    "peft",
                    "accelerate",
                    "bitsandbytes",
                    "tokenizers",
                    "safetensors",
                    "hydra-core",
                    "omegaconf",
                    "rapidfuzz",
                    "triton",
                    "liger-kernel",
                    "flash-attn",
                )
            ),
            f"| bf16 supported | {env.get('bf16_supported', '–')} |",
            f"| SDPA flash kernel (bf16, causal, 4x32x512x128) | {c('sdpa_flash_attention')} |",
            f"| SDPA memory-efficient kernel | {c('sdpa_efficient_attention')} |",
            f"| SDPA cuDNN kernel | {c('sdpa_cudnn_attention')} |",
            f"| flash-attn package | {c('flash_attn_package')} |",
            f"| transformers' attention for Llama | {c('transformers_default_attention')} |",
            f"| import triton | {c('triton')} |",
            f"| liger-kernel (import; fused RMSNorm vs torch on the GPU) | {c('liger_kernel')} |",
            f"| bitsandbytes NF4 quantize + Linear4bit | {c('bitsandbytes_nf4')} |",
            f"| matmul rate ({'the MFU denominator' if self.gpu else 'CPU float32: plumbing only'}) | {mm_text} |",
            f"| medtune imported from | {env.get('module_files', {}).get('medtune', '–')} |",
            f"| bitsandbytes imported from | {env.get('module_files', {}).get('bitsandbytes', '–')} |",
            "",
        ]
        if env.get("nvidia_smi") and self.gpu:
            L += [
                "<details><summary>nvidia-smi</summary>",
                "",
                "```",
                env["nvidia_smi"].strip(),
                "```",
                "",
                "</details>",
                "",
            ]
        return L

    def data_section(self) -> list[str]:
        data = self.ok("data")
        if not data:
            return []
        info = data["info"]
        re_enc = data.get("reencoded") or {}
        check = (
            f"{re_enc['identical']}/{re_enc['compared']} examples identical"
            if "identical" in re_enc
            else f"not checked ({re_enc.get('error')})"
        )
        files = data.get("files", {})
        maps = "; ".join(f"vocabulary {k}: {f['mapped']}, {f['blocks_count']} blocks" for k, f in files.items())
        return [
            "## Data",
            "",
            f"- MedQA: {info['source']}, tokenized here by `prepare_data.py` with {info['tokenizer']} and medtune's "
            f"`encode_records` (prompt: {info['prompt']}; input <= {info['limits'][0]}, response <= {info['limits'][1]} "
            f"tokens; loss on the response): {info['examples']} examples, {info['mean_tokens']:.0f} tokens on average "
            f"({info['min_tokens']}-{info['max_tokens']}), {info['mean_targets']:.1f} target tokens on average.",
            f"- Carried: SmolLM2's tokenizer files ({', '.join(info['tokenizer_files'])}), the {info['records']} records "
            f"and their token ids. Encoded again on this machine with the carried tokenizer: {check}.",
            f"- Per model: {maps}. The 32k-vocabulary model (Llama-2-7B shape) trains on `id % 32000` of SmolLM2's ids "
            "(same lengths and loss mask; the ids lose their meaning, which a random-init model does not care about); "
            "the 128k one on the ids as tokenized.",
            f"- {self.block_tokens}-token pretraining blocks: the examples' ids joined in file order and cut into "
            f"{self.block_tokens}-token examples, every label a target (`dataset.format=tokens`, labels = input_ids).",
            f"- train.py limits: MedQA `train.max_input_tokens={data['max_prompt']} train.max_target_tokens={data['max_target']}` "
            f"(the longest prompt and response); blocks {self.block_tokens // 2} + {self.block_tokens // 2}.",
            "",
        ]

    def steps_section(self) -> list[str]:
        L = [
            "## Steps",
            "",
            "| step | what | status | seconds | limit | GPU memory peak (NVML, MiB) | mean GPU util % |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for s in self.steps:
            L.append(
                f"| {s.name} | {s.title} | {s.status}{': ' + s.error if s.error else ''} | {s.seconds:.1f} | "
                f"{s.limit:.0f} | {num(s.gpu_peak_mib)} | {num(s.gpu_util, '{:.0f}')} |"
            )
        return [*L, ""]

    def models_section(self) -> list[str]:
        L = ["## Models", ""]
        for key in ("8b", "7b"):
            label, arch, updates = MODELS[self.mode][key]
            b = self.built(key)
            L.append(
                f"- **{key}**: {label}: "
                + ", ".join(f"{k} {v}" for k, v in arch.items() if k not in ("model_type", "initializer_range"))
                + (f", {', '.join(f'{k} {v:g}' for k, v in updates.items())} (set in config.json)" if updates else "")
                + f"; N = {parameters(arch):,} parameters"
                + (
                    f"; checkpoint {gib(b.get('bytes'))} GiB ({b.get('config_dtype')}), built in {b.get('seconds')} s "
                    f"(init {b.get('init')})"
                    if b.get("ok")
                    else f"; prebuild: {b.get('error', 'not run')}"
                )
            )
        L += [
            "",
            "Built by `helpers.py prebuild` through medtune's own `tiny_checkpoint` (same cache path and config as "
            "`model=tiny` with these architecture overrides; train.py finds it in its cache), the random init "
            + ("in bf16 on the GPU." if self.gpu else "on the CPU in float32.")
            + " Its tokenizer (medtune's tiny BPE) only gives the pad id: every run reads SmolLM2's token ids.",
            "",
        ]
        return L

    def training_section(self) -> list[str]:
        g = self.gpu
        trains = self.trained()
        if not trains:
            return []
        L = [
            "## Training: tokens/s, MFU and memory",
            "",
            f"{ADAPTER_TEXT['qlora']}. {ADAPTER_TEXT['lora']}. "
            + (
                "hardware=a100x1 settings: gradient checkpointing (reentrant) in every contender, bf16."
                if g
                else "hardware=cpu: float32, no checkpointing (tiny stand-ins: the numbers only prove the plumbing)."
            )
            + " tokens/s = real (non-padding) tokens / seconds between logged steps, each step closed by a CUDA "
            "synchronize (the same callback in train.py, through `run_with_memstats.py`, and in the plain script); "
            "'own' is the contender's own whole-run figure (medtune: `train/tokens_per_second`, seconds inside "
            "optimizer steps).",
            "",
            "| run | contender | tokens/s | vs plain | vs previous | MFU % | peak allocated GiB | peak reserved GiB | "
            + ("device peak (NVML) GiB" if g else "peak RSS GiB")
            + " | loss first -> last | steady steps | tokens seen (= data) | own tokens/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|",
        ]
        for s, run, r in trains:
            mfu = self.mfu(run, r)
            same = r.get("tokens_seen") == r.get("expected_tokens") if r.get("expected_tokens") else None
            L.append(
                f"| {run.name} | {CONTENDERS[run.contender][0]} | {num(r.get('tokens_per_second'))} | "
                f"{self.ratio(run.config, 'plain', r) if run.contender not in ('plain', 'auto') else ''} | "
                f"{self.ratio(run.config, 'previous', r) if run.contender not in ('previous', 'auto') else ''} | "
                f"{num(100 * mfu if mfu is not None else None, '{:.1f}')} | "
                f"{gib(r.get('max_allocated'))} | {gib(r.get('max_reserved'))} | "
                + (
                    f"{num(s.gpu_peak_mib / 1024 if s.gpu_peak_mib else None, '{:.2f}')} | "
                    if g
                    else f"{gib(r.get('max_rss'))} | "
                )
                + f"{num(r.get('loss_first'), '{:.3f}')} -> {num(r.get('loss_last'), '{:.3f}')} | "
                f"{r.get('steady_steps')} | {num(r.get('tokens_seen'))}"
                + (" (=)" if same else (f" (data: {num(r.get('expected_tokens'))})" if same is False else ""))
                + f" | {num(r.get('own_tokens_per_second'))} |"
            )
        peak_words = (
            f"the measured bf16 matmul peak ({num(self.peak_tflops, '{:,.1f}')} TFLOP/s, the best of 4096³, 8192³ "
            "and 16384³ in the env step)"
            if g
            else f"this CPU's float32 matmul rate ({num(self.peak_tflops, '{:,.3f}')} TFLOP/s; plumbing only)"
        )
        L += [
            "",
            "MFU = tokens/s x FLOPs per token / "
            + peak_words
            + ". FLOPs per real token = 2N (forward) + 2N (backward through the activations) + 2 x trainable "
            "(the adapter's weight gradients) + 12 x layers x hidden x mean causal context (attention: 4 forward, "
            "8 backward), N = all base-model parameters (input embedding and output head included, from the shape). "
            "The mean context is sum(L(L+1)/2) / sum(L) over the examples of the steady-state steps. Recomputation "
            "under gradient checkpointing, padding and the dequantization of 4-bit weights are not counted: they are "
            "overhead, not model FLOPs.",
            "",
        ]
        flops = []
        for config in CONFIGS:
            pair = next(((run, r) for _, run, r in trains if run.config == config and r.get("trainable")), None)
            if pair:
                f = self.flops_per_token(*pair)
                ctx = self.window(pair[0])
                mean_ctx = sum(n * (n + 1) / 2 for n in ctx) / sum(ctx) if ctx else 0
                flops.append(
                    f"{config}: {num(f / 1e9 if f else None, '{:.2f}')} GFLOPs per token (mean context {mean_ctx:.0f})"
                )
        if flops:
            L += ["FLOPs per token: " + "; ".join(flops) + ".", ""]
        env = self.ok("env") or {}
        L += [
            "Where each step's seconds went (process start -> first optimizer step: Python, imports, config, "
            "model load and quantization, data; training: all its optimizer steps; after: saving the adapter, "
            "summaries, up to the process's exit handler). Imports alone in the env step: "
            + (", ".join(f"{k} {v}" for k, v in (env.get("import_seconds") or {}).items()) or "–")
            + " s"
            + (f"; byte-code cache {env['pycache_prefix']}" if env.get("pycache_prefix") else "")
            + ".",
            "",
            "| run | step s | start -> first step s | training s | after s | rest (exit, process start) s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for s, run, r in trains:
            ph = r.get("phase_seconds") or {}
            rest = s.seconds - sum(ph.values()) if ph else None
            L.append(
                f"| {run.name} | {s.seconds:.1f} | {num(ph.get('start'), '{:.1f}')} | {num(ph.get('train'), '{:.1f}')} | "
                f"{num(ph.get('after'), '{:.1f}')} | {num(rest, '{:.1f}')} |"
            )
        L += ["", "What each medtune run printed about its loss path, attention, kernels and batches:", ""]
        for _, run, r in trains:
            if r.get("impl") != "medtune":
                continue
            lines = r.get("speed_lines") or []
            extra = r.get("speed_summary") or {}
            L.append(
                f"- **{run.name}**: " + (" / ".join(f"`{x}`" for x in lines) if lines else "(none found in the log)")
            )
            if extra:
                L.append("  train_summary.json: " + ", ".join(f"{k}={v}" for k, v in extra.items()))
        L.append("")
        return L

    def auto_section(self) -> list[str]:
        m = self.ok("q8_auto")
        if not m:
            return []
        auto = m.get("auto") or {}
        g = self.gpu
        step = self.step("q8_auto")
        plan = self.ok("plan_auto") or {}
        device = step.gpu_peak_mib * MIB if step.gpu_peak_mib else None
        planned = auto.get("planned_gib") * GIB if auto.get("planned_gib") is not None else None
        measured = m.get("max_allocated") if g else m.get("max_rss")

        def err(a, b):
            return f"{100 * (a - b) / b:+.0f}%" if a and b else "–"

        L = [
            "## train.micro_batch_size=auto against the measured peak (8B QLoRA, MedQA)",
            "",
            f"`train.micro_batch_size=auto train.global_batch_size={self.shape['auto']['batch']}` on the q8 configuration. "
            f"What the run printed: `{auto.get('line', '(no line found)')}`",
            "",
            "The plan budgets every example at the limits "
            f"({self.limits(self.runs['q8_auto'])[0]} + {self.limits(self.runs['q8_auto'])[1]} tokens); the real "
            f"micro-batches averaged {num(auto.get('mean_row_tokens'))} tokens (widest {num(auto.get('widest_row_tokens'))}) "
            "in one padding-free row: for these batches the plan is an upper bound.",
            "",
            "| quantity | GiB | plan vs it |",
            "|---|---:|---:|",
            f"| planned total (what auto compared with {'the device' if g else 'hardware.device_memory_gib=2'} x 0.9) | "
            f"{gib(planned)} | |",
            f"| measured: allocator peak (max_memory_allocated, whole process) | {gib(m.get('max_allocated'))} | "
            f"{err(planned, m.get('max_allocated'))} |",
            f"| measured: allocator reserved peak | {gib(m.get('max_reserved'))} | {err(planned, m.get('max_reserved'))} |",
            f"| measured: device peak (NVML, CUDA context included) | {gib(device)} | {err(planned, device)} |"
            if g
            else f"| measured: peak RSS (CPU) | {gib(measured)} | {err(planned, measured)} |",
        ]
        if plan.get("ok"):
            L += [
                f"| planner, allocated part (total less its CUDA context + fragmentation term) | {gib(plan.get('allocated'))} | "
                f"{err(plan.get('allocated'), m.get('max_allocated'))} vs allocator peak |",
                f"| planner at the widest real micro-batch ({num(auto.get('widest_row_tokens'))} tokens), total | "
                f"{gib(plan.get('widest_total'))} | {err(plan.get('widest_total'), device if g else measured)} vs "
                f"{'device' if g else 'RSS'} peak |",
                f"| planner at the widest real micro-batch, allocated part | {gib(plan.get('widest_allocated'))} | "
                f"{err(plan.get('widest_allocated'), m.get('max_allocated'))} vs allocator peak |",
            ]
        L += [
            "",
            f"Chosen: micro batch {auto.get('micro_batch_size')} x {auto.get('accumulation')} accumulation steps, gradient "
            f"checkpointing {'on' if auto.get('gradient_checkpointing') else 'off'}; it "
            + ("fit (the run finished)." if m else "did not finish.")
            + f" tokens/s {num(m.get('tokens_per_second'))}"
            + (f" (MFU {100 * self.mfu(self.runs['q8_auto'], m):.1f}%)" if self.mfu(self.runs["q8_auto"], m) else "")
            + ".",
            "",
        ]
        return L

    def failures_section(self) -> list[str]:
        bad = [s for s in self.steps if s.status in ("failed", "timeout")]
        if not bad:
            return []
        L = ["## Failures", ""]
        for s in bad:
            L += [f"### {s.name}: {s.error}", ""]
            if s.result.get("failure"):
                L += [f"failure.json: {s.result['failure']}", ""]
            L += ["```", s.tail.strip()[-2500:], "```", ""]
        return L

    def write_report(self, final: bool) -> None:
        text = repo_relative(self.report(final))
        self.report_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.report_path.with_suffix(".md.partial")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.report_path)
        data = {
            "mode": self.mode,
            "budget": self.args.budget,
            "elapsed": time.monotonic() - self.started,
            "peak_tflops": self.peak_tflops,
            "shape": self.shape,
            "steps": [
                {
                    "name": s.name,
                    "status": s.status,
                    "seconds": s.seconds,
                    "limit": s.limit,
                    "error": s.error,
                    "gpu_peak_mib": s.gpu_peak_mib,
                    "gpu_util": s.gpu_util,
                    "result": s.result,
                    **self.numbers(s),
                }
                for s in self.steps
            ],
        }
        json_path = (self.out_dir or self.work) / ("gpu_check.json" if self.gpu else "gpu_check_cpu_dry.json")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(repo_relative(json.dumps(data, indent=1, default=str)))

    def numbers(self, s: Step) -> dict:
        run = self.runs.get(s.name)
        if run is None or s.status != "ok":
            return {}
        try:
            return {"flops_per_token": self.flops_per_token(run, s.result), "mfu": self.mfu(run, s.result)}
        except Exception as error:  # noqa: BLE001 - the report must still be written
            return {"numbers_error": repr(error)}

    def pack_logs(self) -> None:
        if not self.out_dir:
            return
        name = "gpu_check_logs.tar.gz" if self.gpu else "gpu_check_cpu_dry_logs.tar.gz"
        with tarfile.open(self.out_dir / name, "w:gz") as tar:
            for log in sorted(self.logs.glob("*.log")):
                data = log.read_bytes()[-300_000:]
                info = tarfile.TarInfo(f"logs/{log.name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    def main(self) -> int:
        if not self.args.keep_work:
            for sub in ("runs", "results", "logs", "specs", "plain", "data", "outputs"):
                shutil.rmtree(self.work / sub, ignore_errors=True)
            if not self.args.keep_cache:
                shutil.rmtree(self.cache, ignore_errors=True)
        for sub in ("results", "logs", "specs", "runs"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        if self.sampler and self.sampler.how:
            self.sampler.start()
        self.build()
        print(
            f"medtune GPU check, mode {self.mode}, budget {self.args.budget:.0f} s, work dir {self.work}, "
            f"report {self.report_path}",
            flush=True,
        )
        try:
            for step in self.steps:
                self.execute(step)
                self.write_report(final=False)
        finally:
            if self.sampler:
                self.sampler.stop.set()
            self.write_report(final=True)
            self.pack_logs()
        print(f"\nwrote {self.report_path}")
        print("\n".join(f"{s.name:16s} {s.status:8s} {s.seconds:6.1f} s  {s.error}" for s in self.steps))
        return 0 if all(s.status in ("ok", "skipped") for s in self.steps) else 1


def cuda_visible(python: str) -> bool:
    try:
        out = subprocess.run(
            [python, "-c", "import torch; print(torch.cuda.is_available())"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return out.stdout.strip().endswith("True")
    except (OSError, subprocess.SubprocessError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-dry", action="store_true", help="tiny stand-ins on the CPU (automatic with no CUDA)")
    parser.add_argument("--budget", type=float, help="seconds for all steps (default 450 GPU, 290 CPU dry)")
    parser.add_argument("--steps", type=int, help="optimizer steps per MedQA run (default 8 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, help="steps left out of tokens/s (default 2 GPU, 1 CPU)")
    parser.add_argument("--work-dir", type=Path, help="default /tmp/medtune_gpu_check[_cpu]")
    parser.add_argument("--out", type=Path, help="report path (default $OUT/gpu_check.md or benchmarks/results/)")
    parser.add_argument("--only", default="", help="comma-separated step names to run (others skipped)")
    parser.add_argument("--skip", default="", help="comma-separated step names to skip")
    parser.add_argument("--first", default="", help="comma-separated step names to run before the other runs")
    parser.add_argument("--keep-cache", action="store_true", help="keep built checkpoints from an earlier run")
    parser.add_argument("--keep-work", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.passthrough = sys.argv[1:]
    args.only = [s for s in args.only.split(",") if s]
    args.skip = [s for s in args.skip.split(",") if s]
    args.first = [s for s in args.first.split(",") if s]
    if args.cpu_dry:
        args.mode = "cpu"
    elif cuda_visible(sys.executable):
        args.mode = "gpu"
    else:
        print("no CUDA device visible to torch: running the CPU dry run (--cpu-dry)", flush=True)
        args.mode = "cpu"
    args.budget = args.budget or (450.0 if args.mode == "gpu" else 290.0)
    args.work_dir = args.work_dir or Path("/tmp/medtune_gpu_check" + ("" if args.mode == "gpu" else "_cpu"))
    return Check(args).main()


if __name__ == "__main__":
    raise SystemExit(main())
