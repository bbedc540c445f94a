"""The GPU check: medtune on one GPU, every step timed, in one call of a lent machine (see README.md here).

Run through `bash benchmarks/gpu_check.sh` (it installs the carried wheels first). Steps, in priority order,
each a separate process with its own time limit inside one overall budget (a step that fails or hangs is
recorded with the tail of its log, and the next one starts):

  env        versions, nvidia-smi, bf16, SDPA backends, flash-attn, a bitsandbytes NF4 check, a bf16 matmul rate
  prebuild   the random-init checkpoints in medtune's tiny cache: Llama-2-7B's and SmolLM2-135M's architectures
  medtune_*  train.py (model=tiny + architecture overrides, adapter=qlora|lora, hardware=a100x1 on the GPU)
  plain_*    the same training written with plain transformers + PEFT (plain_baseline_gpu.py)
  plan       the planner's estimate for each medtune run (configured limits, and the widest real batch)
  dry_run    train.py ... dry_run=true as a user runs it (the printed plan)
  export_*   `python -m medtune export` of a QLoRA run (4-bit layers dequantized on the GPU), and a reload
  generate   batched vs one-at-a-time greedy generation on the bundled sample exam
  evaluate   evaluate.py run=<the small QLoRA run> on the bundled sample exam

`--cpu-dry` (automatic when no CUDA device is visible) runs every step on the CPU with tiny stand-ins of
both architectures and a few steps, to prove the plumbing. The report goes to $OUT/gpu_check.md when
$OUT is set (also gpu_check.json and gpu_check_logs.tar.gz), else to benchmarks/results/gpu_check.md
(gpu_check_cpu_dry.md for the dry run). It is rewritten after every step, so a killed run leaves one.
"""

from __future__ import annotations

import argparse
import io
import json
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

# (label, model.architecture.* overrides of model=tiny)
ARCH = {
    "gpu": {
        "big": (
            "Llama-2-7B architecture (random init)",
            dict(
                model_type="llama",
                hidden_size=4096,
                num_layers=32,
                num_heads=32,
                num_kv_heads=32,
                intermediate_size=11008,
                vocab_size=32000,
                max_position_embeddings=4096,
                tie_word_embeddings=False,
                initializer_range=0.02,
            ),
        ),
        "small": (
            "SmolLM2-135M architecture (random init)",
            dict(
                model_type="llama",
                hidden_size=576,
                num_layers=30,
                num_heads=9,
                num_kv_heads=3,
                intermediate_size=1536,
                vocab_size=49152,
                max_position_embeddings=8192,
                tie_word_embeddings=True,
                initializer_range=0.02,
            ),
        ),
    },
    "cpu": {
        "big": (
            "tiny stand-in for the 7B (MHA, untied)",
            dict(
                model_type="llama",
                hidden_size=128,
                num_layers=2,
                num_heads=4,
                num_kv_heads=4,
                intermediate_size=384,
                vocab_size=4096,
                max_position_embeddings=2048,
                tie_word_embeddings=False,
                initializer_range=0.02,
            ),
        ),
        "small": (
            "tiny stand-in for SmolLM2 (GQA, tied)",
            dict(
                model_type="llama",
                hidden_size=128,
                num_layers=2,
                num_heads=2,
                num_kv_heads=1,
                intermediate_size=256,
                vocab_size=4096,
                max_position_embeddings=2048,
                tie_word_embeddings=True,
                initializer_range=0.02,
            ),
        ),
    },
}
ADAPTER_TEXT = {
    "qlora": "QLoRA: NF4 + double quant, r 64, alpha 16, dropout 0.1, all linear layers",
    "lora": "LoRA: r 8, alpha 8, q_proj + v_proj",
}
PEAK_TFLOPS = {"H100": 989, "H200": 989, "A100": 312}  # dense bf16, datasheet


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
    status: str = "pending"  # ok | failed | timeout | skipped
    seconds: float = 0.0
    limit: float = 0.0
    result: dict = field(default_factory=dict)
    error: str = ""
    tail: str = ""
    gpu_peak_mib: float | None = None
    gpu_util: float | None = None


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


def gib(n: float | None) -> str:
    return "–" if n is None else f"{n / GIB:.2f}"


def num(x: Any, fmt: str = "{:,.0f}") -> str:
    return "–" if x is None else fmt.format(x)


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
        self.steps_n = args.steps or (20 if self.gpu else 3)
        self.warm = args.warmup if args.warmup is not None else (5 if self.gpu else 1)
        self.lr = 1e-4
        self.results: dict[str, Any] = {}
        self.device_name, self.device_gib, self.peak_tflops = ("gpu" if self.gpu else "cpu"), None, None
        out_dir = os.environ.get("OUT")
        base = "gpu_check" if self.gpu else "gpu_check_cpu_dry"
        if args.out:
            self.report_path = args.out
        elif out_dir:
            self.report_path = Path(out_dir) / f"{base}.md"
        else:
            self.report_path = REPO / "benchmarks" / "results" / f"{base}.md"
        self.out_dir = Path(out_dir) if out_dir else None
        self.sampler = GpuSampler() if self.gpu else None
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
        if not self.gpu:
            self.env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
        self.steps: list[Step] = []

    # -------------------------------------------------------------------------------------------- plumbing

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, step: Step, cmd: list[str], log_name: str | None = None) -> Path:
        """Run `cmd` in its own process group with the step's limit; raise StepFailed on a non-zero exit."""
        log = self.logs / f"{log_name or step.name}.log"
        limit = max(1.0, min(step.limit - (time.monotonic() - step._t0), self.remaining()))  # type: ignore[attr-defined]
        cmd = [str(c) for c in cmd]
        with open(log, "a") as f:
            f.write(f"$ {shlex.join(cmd)}\n# limit {limit:.0f} s\n")
            f.flush()
            proc = subprocess.Popen(
                cmd, cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
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

    def overrides(self, key: str, adapter: str) -> list[str]:
        arch = ARCH[self.mode][key][1]
        out = [
            "model=tiny",
            *(f"model.architecture.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in arch.items()),
            f"adapter={adapter}",
            "dataset=sample",
            "prompt=alpaca",
            "logger=none",
            "exam_eval.enabled=false",
            "dataset.eval_fraction=0",
            "train.eval_steps=0",
            "train.save_steps=0",
            "train.logging_steps=1",
            f"train.max_steps={self.steps_n}",
            "train.micro_batch_size=8",
            "train.global_batch_size=8",
            "train.max_input_tokens=384",
            "train.max_target_tokens=256",
            f"train.learning_rate={self.lr}",
            "seed=42",
            f"paths.output_root={self.work / 'outputs'}",
            f"paths.cache_dir={self.cache}",
        ]
        if self.gpu:
            out += ["hardware=a100x1", "model.dtype=bfloat16", f"hardware.device_name={self.device_name}"]
            if self.device_gib:
                out.append(f"hardware.device_memory_gib={self.device_gib:.2f}")
            out.append(f"hardware.peak_tflops={self.peak_tflops}" if self.peak_tflops else "hardware.peak_tflops=null")
        else:
            out += ["hardware=cpu"]
        return out

    def checkpoint(self, key: str) -> str:
        built = self.step("prebuild").result.get(key) or {}
        if built.get("ok"):
            return built["checkpoint"]
        for adapter in ("lora", "qlora"):
            info = self.work / "runs" / f"medtune_{key}_{adapter}" / "run_info.json"
            if info.is_file():
                return json.loads(info.read_text())["checkpoint"]
        raise StepFailed(f"no checkpoint of the {key} model: prebuild failed and no medtune run built it")

    def spec_file(self, name: str, spec: dict) -> Path:
        path = self.work / "specs" / f"{name}.json"
        path.write_text(json.dumps(spec, indent=2))
        return path

    # -------------------------------------------------------------------------------------------- steps

    def s_env(self, step: Step) -> dict:
        out = self.work / "results" / "env.json"
        self.run(step, [self.py, HERE / "helpers.py", "env", "--json", out])
        info = json.loads(out.read_text())
        gpu = info.get("gpu") or {}
        if self.gpu and gpu:
            self.device_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", gpu["name"]).strip("_")
            self.device_gib = gpu["total_memory_gib"]
            self.peak_tflops = next((v for k, v in PEAK_TFLOPS.items() if k in gpu["name"]), None)
        return info

    def s_prebuild(self, step: Step) -> dict:
        spec = {
            "device": "cuda" if self.gpu else "cpu",
            "dtype": "bfloat16" if self.gpu else "float32",
            "runs": [{"name": key, "overrides": self.overrides(key, "lora")} for key in ("big", "small")],
        }
        out = self.work / "results" / "prebuild.json"
        try:
            self.run(
                step,
                [self.py, HERE / "helpers.py", "prebuild", "--spec", self.spec_file("prebuild", spec), "--json", out],
            )
        except StepFailed:
            if out.is_file():  # one of the two built: keep what there is for the later steps
                step.result = json.loads(out.read_text())
            raise
        return json.loads(out.read_text())

    def s_medtune(self, step: Step, key: str, adapter: str) -> dict:
        name = f"medtune_{key}_{adapter}"
        run_dir = self.work / "runs" / name
        shutil.rmtree(run_dir, ignore_errors=True)
        mem = self.work / "results" / f"{name}.mem.json"
        cmd = [
            self.py,
            HERE / "run_with_memstats.py",
            mem,
            "train.py",
            *self.overrides(key, adapter),
            f"hydra.run.dir={run_dir}",
        ]
        try:
            self.run(step, cmd)
        finally:
            failure = run_dir / "failure.json"
            if failure.is_file():
                step.result["failure"] = json.loads(failure.read_text()).get("message", "")[:1500]
        summary = json.loads((run_dir / "train_summary.json").read_text())
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        rows = [r for r in rows if "train/loss" in r]
        points, t, seen = [(0, 0, 0.0)], 0.0, 0
        for r in rows:
            tokens = r.get("train/tokens_seen", seen)
            speed = r.get("train/tokens_per_second")
            if speed:
                t += (tokens - seen) / speed
            points.append((r["step"], tokens, t))
            seen = tokens
        rate, counted = steady_rate(points, self.warm)
        info = json.loads((run_dir / "run_info.json").read_text()) if (run_dir / "run_info.json").is_file() else {}
        memstats = json.loads(mem.read_text()) if mem.is_file() else {}
        return {
            "impl": "medtune",
            "key": key,
            "adapter": adapter,
            "run_dir": str(run_dir),
            "checkpoint": info.get("checkpoint"),
            "steps": summary.get("train/steps"),
            "tokens_per_second": rate,
            "steady_steps": counted,
            "summary_tokens_per_second": summary.get("train/tokens_per_second"),
            "tokens_seen": summary.get("train/tokens_seen"),
            "max_allocated": (summary.get("train/peak_memory_mib") or 0) * MIB if self.gpu else None,
            "max_reserved": memstats.get("max_reserved"),
            "max_rss": memstats.get("max_rss"),
            "peak_memory_mib_summary": summary.get("train/peak_memory_mib"),
            "loss_first": summary.get("train/loss_first"),
            "loss_last": summary.get("train/loss_last"),
            "train_seconds": summary.get("train/seconds"),
            "run_seconds": summary.get("run/seconds"),
            "total_params": summary.get("model/total_params"),
            "trainable": summary.get("model/trainable_params"),
            "mfu_logged": [r.get("train/mfu") for r in rows if r.get("train/mfu") is not None][-1:] or None,
            "wall_seconds": memstats.get("wall_seconds"),
            "command": "python " + shlex.join([str(c) for c in cmd[3:]]).replace(str(self.work), "<work>"),
        }

    def s_plain(self, step: Step, key: str, adapter: str) -> dict:
        name = f"plain_{key}_{adapter}"
        out = self.work / "results" / f"{name}.json"
        cmd = [
            self.py,
            HERE / "plain_baseline_gpu.py",
            "--checkpoint",
            self.checkpoint(key),
            "--adapter",
            adapter,
            "--device",
            "cuda" if self.gpu else "cpu",
            "--dtype",
            "bfloat16" if self.gpu else "float32",
            "--gradient-checkpointing" if self.gpu else "--no-gradient-checkpointing",
            "--steps",
            self.steps_n,
            "--micro-batch",
            8,
            "--lr",
            self.lr,
            "--max-input-tokens",
            384,
            "--max-target-tokens",
            256,
            "--output-dir",
            self.work / "plain" / name,
            "--json",
            out,
        ]
        self.run(step, cmd)
        r = json.loads(out.read_text())
        points = [(s, tok, t - r["step_log"][0][2]) for s, tok, t in r["step_log"]]
        rate, counted = steady_rate(points, self.warm)
        return {
            "impl": "plain",
            "key": key,
            "adapter": adapter,
            "steps": r["steps"],
            "tokens_per_second": rate,
            "steady_steps": counted,
            "summary_tokens_per_second": r["tokens_per_second"],
            "tokens_seen": r["tokens_seen"],
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
            "examples": r.get("examples"),
            "padding": 1 - r["collated_real_tokens"] / r["computed_tokens"] if r["computed_tokens"] else None,
            "command": "python " + shlex.join([str(c) for c in cmd[1:]]).replace(str(self.work), "<work>"),
        }

    def s_plan(self, step: Step) -> dict:
        runs = []
        for key in ("big", "small"):
            try:
                ckpt = self.checkpoint(key)
            except StepFailed:
                ckpt = None
            for adapter in ("qlora", "lora"):
                runs.append(
                    {"name": f"medtune_{key}_{adapter}", "overrides": self.overrides(key, adapter), "checkpoint": ckpt}
                )
        out = self.work / "results" / "plan.json"
        self.run(
            step,
            [self.py, HERE / "helpers.py", "plan", "--spec", self.spec_file("plan", {"runs": runs}), "--json", out],
        )
        return json.loads(out.read_text())

    def s_dry_run(self, step: Step) -> dict:
        texts = {}
        for adapter in ("qlora", "lora"):
            cmd = [
                self.py,
                "train.py",
                *self.overrides("big", adapter),
                "dry_run=true",
                f"hydra.run.dir={self.work / 'dry' / adapter}",
            ]
            log = self.run(step, cmd, f"dry_run_{adapter}")
            text = tail(log, 12000)
            start = text.find("memory plan")
            texts[adapter] = text[max(0, text.rfind("\n", 0, start)) :] if start >= 0 else text[-4000:]
            m = re.search(r"│\s*total\s*│\s*([\d,.]+) GiB", texts[adapter])
            texts[f"{adapter}_total_gib"] = float(m.group(1).replace(",", "")) if m else None
        return texts

    def s_generate(self, step: Step) -> dict:
        spec = {
            "device": "cuda" if self.gpu else "cpu",
            "overrides": self.overrides("big", "lora"),
            "questions": None if self.gpu else 4,
            "batch_size": 16 if self.gpu else 4,
            "one_at_a_time": 8 if self.gpu else 2,
            "max_new_tokens": 64 if self.gpu else 8,
        }
        out = self.work / "results" / "generate.json"
        self.run(
            step, [self.py, HERE / "helpers.py", "generate", "--spec", self.spec_file("generate", spec), "--json", out]
        )
        return json.loads(out.read_text())

    def s_export(self, step: Step, key: str) -> dict:
        source = self.ok(f"medtune_{key}_qlora")
        run_dir = Path(source["run_dir"])
        out_dir = self.work / "exports" / f"{key}_qlora"
        shutil.rmtree(out_dir, ignore_errors=True)
        mem = self.work / "results" / f"export_{key}.mem.json"
        dtype = "bfloat16" if self.gpu else "float32"
        self.run(
            step,
            [
                self.py,
                HERE / "run_with_memstats.py",
                mem,
                "-m",
                "medtune",
                "export",
                run_dir,
                "--out",
                out_dir,
                "--dtype",
                dtype,
            ],
        )
        meta = json.loads((out_dir / "medtune_export.json").read_text())
        memstats = json.loads(mem.read_text()) if mem.is_file() else {}
        size = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
        return {
            "out": str(out_dir),
            "bytes": size,
            "dtype": meta.get("dtype"),
            "dequantized": meta.get("dequantized"),
            "dequantized_layers": meta.get("dequantized_layers"),
            "verification": meta.get("verification"),
            "seconds": meta.get("seconds"),
            "max_allocated": memstats.get("max_allocated"),
            "max_rss": memstats.get("max_rss"),
            "command": f"python -m medtune export <run {run_dir.name}> --out <export> --dtype {dtype}",
        }

    def s_reload(self, step: Step, key: str) -> dict:
        export = Path(self.ok(f"export_{key}_qlora")["out"])
        out = self.work / "results" / f"reload_{key}.json"
        self.run(
            step,
            [
                self.py,
                HERE / "helpers.py",
                "reload",
                "--export",
                export,
                "--device",
                "cuda" if self.gpu else "cpu",
                "--json",
                out,
            ],
        )
        return json.loads(out.read_text())

    def s_evaluate(self, step: Step) -> dict:
        run_dir = Path(self.ok("medtune_small_qlora")["run_dir"])
        out_dir = self.work / "eval" / "small_qlora"
        shutil.rmtree(out_dir, ignore_errors=True)
        extra = (
            ["eval.batch_size=16", "eval.max_new_tokens=64"]
            if self.gpu
            else ["eval.batch_size=4", "eval.max_new_tokens=8", "exam.max_questions=4"]
        )
        cmd = [
            self.py,
            "evaluate.py",
            f"run={run_dir}",
            "logger=none",
            "exam=sample",
            "hardware=a100x1" if self.gpu else "hardware=cpu",
            *extra,
            f"eval.output_dir={out_dir}",
            f"paths.output_root={self.work / 'outputs'}",
            f"paths.cache_dir={self.cache}",
            f"hydra.run.dir={self.work / 'eval_hydra'}",
        ]
        tick = time.perf_counter()
        self.run(step, cmd)
        seconds = time.perf_counter() - tick
        metrics = json.loads((out_dir / "metrics.json").read_text())
        keep = {k: metrics.get(k) for k in ("questions", "correct", "invalid", "wrong", "accuracy") if k in metrics}
        return {
            "metrics": keep or {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))},
            "wall_seconds": seconds,
            "command": "python " + shlex.join(cmd[1:]).replace(str(self.work), "<work>"),
        }

    def build(self) -> None:
        g = self.gpu

        def add(name, title, timeout_gpu, timeout_cpu, fn, min_gpu=20.0, min_cpu=10.0, needs=()):
            step = Step(
                name,
                title,
                timeout_gpu if g else timeout_cpu,
                lambda: None,
                min_start=min_gpu if g else min_cpu,
                needs=tuple(needs),
            )
            step.fn = lambda s=step: fn(s)
            self.steps.append(step)

        big, small = ("7B architecture", "SmolLM2-135M architecture") if g else ("big stand-in", "small stand-in")
        lora = "LoRA bf16" if g else "LoRA fp32"
        add("env", "environment", 90, 60, self.s_env)
        add("prebuild", "random-init checkpoints", 180, 90, self.s_prebuild, min_gpu=60)
        add(
            "medtune_big_qlora",
            f"medtune QLoRA, {big}",
            200,
            90,
            lambda s: self.s_medtune(s, "big", "qlora"),
            min_gpu=60,
        )
        add(
            "medtune_big_lora",
            f"medtune {lora}, {big}",
            160,
            90,
            lambda s: self.s_medtune(s, "big", "lora"),
            min_gpu=50,
        )
        add(
            "plain_big_lora",
            f"plain transformers+PEFT {lora}, {big}",
            160,
            90,
            lambda s: self.s_plain(s, "big", "lora"),
            min_gpu=50,
        )
        add(
            "plain_big_qlora",
            f"plain transformers+PEFT QLoRA, {big}",
            200,
            90,
            lambda s: self.s_plain(s, "big", "qlora"),
            min_gpu=60,
        )
        add("plan", "planner estimates (all medtune runs)", 90, 60, self.s_plan)
        add("dry_run", f"train.py dry_run=true, {big}, QLoRA and LoRA", 90, 60, self.s_dry_run)
        add(
            "medtune_small_qlora",
            f"medtune QLoRA, {small}",
            120,
            90,
            lambda s: self.s_medtune(s, "small", "qlora"),
            min_gpu=30,
        )
        add(
            "export_small_qlora",
            f"medtune export of the {small} QLoRA run",
            150,
            60,
            lambda s: self.s_export(s, "small"),
            min_gpu=30,
            needs=("medtune_small_qlora",),
        )
        add(
            "reload_small",
            "reload of that export with plain transformers",
            90,
            60,
            lambda s: self.s_reload(s, "small"),
            needs=("export_small_qlora",),
        )
        add("generate", f"batched vs one-at-a-time generation, {big}", 150, 60, self.s_generate, min_gpu=45)
        add(
            "medtune_small_lora",
            f"medtune {lora}, {small}",
            120,
            90,
            lambda s: self.s_medtune(s, "small", "lora"),
            min_gpu=30,
        )
        add(
            "plain_small_lora",
            f"plain transformers+PEFT {lora}, {small}",
            120,
            90,
            lambda s: self.s_plain(s, "small", "lora"),
            min_gpu=30,
        )
        add(
            "plain_small_qlora",
            f"plain transformers+PEFT QLoRA, {small}",
            120,
            90,
            lambda s: self.s_plain(s, "small", "qlora"),
            min_gpu=30,
        )
        add(
            "evaluate",
            f"evaluate.py run=<{small} QLoRA run>, sample exam",
            150,
            60,
            self.s_evaluate,
            min_gpu=30,
            needs=("medtune_small_qlora",),
        )
        add(
            "export_big_qlora",
            f"medtune export of the {big} QLoRA run (only with time left)",
            300,
            60,
            lambda s: self.s_export(s, "big"),
            min_gpu=240,
            needs=("medtune_big_qlora",),
        )
        add(
            "reload_big",
            f"reload of the {big} export",
            120,
            60,
            lambda s: self.s_reload(s, "big"),
            min_gpu=45,
            needs=("export_big_qlora",),
        )

    # -------------------------------------------------------------------------------------------- report

    def examples(self) -> str:
        for name in ("plain_big_lora", "plain_small_lora", "plain_big_qlora", "plain_small_qlora"):
            r = self.ok(name)
            if r and r.get("examples"):
                return str(r["examples"])
        counts = [p.get("examples") for p in (self.ok("plan") or {}).values() if p.get("examples")]
        return str(counts[0]) if counts else "all"

    def summary(self) -> list[str]:
        """The key numbers, one line each, for whoever reads only the top."""
        out = []
        env = self.ok("env") or {}
        if env.get("gpu"):
            chk = env.get("checks", {})
            flash = chk.get("sdpa_flash_attention", {}).get("ok")
            mm = (chk.get("matmul_bf16", {}).get("result") or {}).get("bf16_8192_cubed_tflops")
            out.append(
                f"- GPU: {env['gpu']['name']}, torch {env['versions'].get('torch')} (CUDA {env.get('torch_cuda')}), "
                f"bf16 {env.get('bf16_supported')}, SDPA flash kernel {'runs' if flash else 'FAILS'}, "
                f"bitsandbytes NF4 {'works' if chk.get('bitsandbytes_nf4', {}).get('ok') else 'FAILS'}"
                + (f", bf16 matmul {mm:.0f} TFLOP/s" if mm else "")
                + "."
            )
        for key in ("big", "small"):
            for adapter in ("qlora", "lora"):
                m, p = self.ok(f"medtune_{key}_{adapter}"), self.ok(f"plain_{key}_{adapter}")
                if not m:
                    continue
                line = (
                    f"- {key} {adapter}: medtune {num(m.get('tokens_per_second'))} tokens/s, peak allocated "
                    f"{gib(m.get('max_allocated'))} GiB"
                    if self.gpu
                    else f"- {key} {adapter}: medtune {num(m.get('tokens_per_second'))} tokens/s, peak RSS {gib(m.get('max_rss'))} GiB"
                )
                if p and p.get("tokens_per_second") and m.get("tokens_per_second"):
                    line += f"; plain {num(p['tokens_per_second'])} tokens/s ({m['tokens_per_second'] / p['tokens_per_second']:.2f}x)"
                    if self.gpu and p.get("max_allocated") and m.get("max_allocated"):
                        line += f", {gib(p['max_allocated'])} GiB"
                plan = (self.ok("plan") or {}).get(f"medtune_{key}_{adapter}") or {}
                if self.gpu and plan.get("widest_allocated") and m.get("max_allocated"):
                    line += (
                        f"; planner (widest batch, allocated) {gib(plan['widest_allocated'])} GiB = "
                        f"{100 * (plan['widest_allocated'] - m['max_allocated']) / m['max_allocated']:+.0f}%"
                    )
                out.append(line + ".")
        gen = self.ok("generate")
        if gen and len(gen.get("rows", [])) == 2:
            one, batched = gen["rows"]
            out.append(
                f"- generation: {batched['questions_per_s'] / one['questions_per_s']:.1f}x questions/s batched "
                f"({batched['new_tokens_per_s']:.0f} vs {one['new_tokens_per_s']:.0f} new tokens/s); identical "
                f"texts {gen.get('identical')}/{gen.get('compared')}."
            )
        for key in ("small", "big"):
            ex, rl = self.ok(f"export_{key}_qlora"), self.ok(f"reload_{key}")
            if ex:
                ver = ex.get("verification") or {}
                out.append(
                    f"- export ({key} QLoRA): {ex.get('dequantized_layers')} layers dequantized, max |logit diff| "
                    f"{num(ver.get('max_abs_logit_diff'), '{:.3g}')} (relative {num(ver.get('relative_diff'), '{:.2g}')}); "
                    f"reload {'ok' if rl and rl.get('logits_finite') and not rl.get('bitsandbytes_layers') else 'NOT checked'}."
                )
        bad = [s.name for s in self.steps if s.status in ("failed", "timeout")]
        skipped = [s.name for s in self.steps if s.status == "skipped"]
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
        L += [
            f"# medtune {title}",
            "",
            "Command: `" + " ".join(["bash benchmarks/gpu_check.sh", *map(shlex.quote, self.args.passthrough)]) + "`",
            "",
            f"Started {self.wall_start}; {'finished' if final else 'IN PROGRESS (partial report)'} after "
            f"{elapsed:.0f} s of a {self.args.budget:.0f} s budget. Mode: **{'GPU' if g else 'CPU dry run'}**; "
            f"{self.steps_n} optimizer steps per training run, micro batch 8 (global 8), bundled sample set "
            f"(`dataset=sample`, {self.examples()} examples, `dataset.eval_fraction=0`), lr {self.lr}, seed 42; tokens/s over "
            f"the steps after step {self.warm} (warm-up left out).",
            "",
        ]
        L += self.summary()
        # environment
        L += ["## Environment", ""]
        gpu = env.get("gpu") or {}
        chk = env.get("checks", {})

        def c(name):
            x = chk.get(name)
            if not x:
                return "–"
            return (str(x.get("result")) if x.get("ok") else f"FAILED: {x.get('error')}").replace("|", "/")

        L += [
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
                    "flash-attn",
                    "deepspeed",
                    "wandb",
                )
            ),
            f"| bf16 supported | {env.get('bf16_supported', '–')} |",
            "| SDPA flags | "
            + (", ".join(f"{k}={x}" for k, x in env["sdpa_flags"].items()) if env.get("sdpa_flags") else "–")
            + " |",
            f"| SDPA flash kernel (bf16, causal, 4x32x512x128) | {c('sdpa_flash_attention')} |",
            f"| SDPA memory-efficient kernel | {c('sdpa_efficient_attention')} |",
            f"| SDPA cuDNN kernel | {c('sdpa_cudnn_attention')} |",
            f"| flash-attn package | {c('flash_attn_package')} |",
            f"| transformers' attention for Llama | {c('transformers_default_attention')} |",
            f"| bitsandbytes NF4 quantize + Linear4bit | {c('bitsandbytes_nf4')} |",
            f"| bf16 matmul 8192³ | {c('matmul_bf16')} |" if g else "| bf16 matmul | not measured on CPU |",
            f"| medtune imported from | {env.get('module_files', {}).get('medtune', '–')} |",
            f"| bitsandbytes imported from | {env.get('module_files', {}).get('bitsandbytes', '–')} |",
            "",
        ]
        if env.get("nvidia_smi"):
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
        # steps
        L += [
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
        L.append("")
        # models
        built = self.ok("prebuild") or self.step("prebuild").result or {}
        L += ["## Models", ""]
        for key in ("big", "small"):
            label, arch = ARCH[self.mode][key]
            b = built.get(key) or {}
            L.append(
                f"- **{key}**: {label}: "
                + ", ".join(f"{k} {v}" for k, v in arch.items() if k != "model_type")
                + (
                    f"; checkpoint {gib(b.get('bytes'))} GiB ({b.get('config_dtype')}), built in {b.get('seconds')} s (init {b.get('init')}), "
                    f"tokenizer {b.get('tokenizer_size')} tokens"
                    if b.get("ok")
                    else f"; prebuild: {b.get('error', 'not run')}"
                )
            )
        L += [
            "",
            "Built by `helpers.py prebuild` through medtune's own `tiny_checkpoint` (same cache path, "
            "tokenizer and config as `model=tiny`; train.py then finds it in its cache), with the random init done "
            + (
                "in bf16 on the GPU instead of float32 on the CPU (seconds instead of minutes for 7B, 13 GB instead "
                "of 27 GB)."
                if g
                else "on the CPU in float32 (as medtune does)."
            ),
            "The tokenizer is medtune's tiny BPE trained on the bundled samples: it has ~3,300 tokens whatever "
            "`vocab_size` says, so the embedding / output layers have the real architecture's size but the token "
            "counts per example are not Llama-2's or SmolLM2's.",
            "",
        ]
        # training
        trains = [(s, s.result) for s in self.steps if s.name.startswith(("medtune_", "plain_")) and s.status == "ok"]
        L += [
            "## Training: medtune vs plain transformers + PEFT",
            "",
            f"Same checkpoint, tokenizer, examples (medtune's `encode_records`, 384 / 256 token limits), micro batch 8, "
            f"{self.steps_n} steps, {'hardware=a100x1 settings (gradient checkpointing, reentrant; bf16 autocast for LoRA, bf16 compute for QLoRA)' if g else 'hardware=cpu (float32, no checkpointing)'}. "
            f"{ADAPTER_TEXT['qlora']}; {ADAPTER_TEXT['lora']}.",
            "",
            "| run | tokens/s (steady) | tokens/s (all steps) | peak allocated GiB | peak reserved GiB | "
            + ("device peak (NVML) GiB | " if g else "peak RSS GiB | ")
            + "loss first -> last | train s | step wall s |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|",
        ]
        for s, r in trains:
            L.append(
                f"| {s.name} | {num(r.get('tokens_per_second'))} | {num(r.get('summary_tokens_per_second'))} | "
                f"{gib(r.get('max_allocated'))} | {gib(r.get('max_reserved'))} | "
                + (
                    f"{num(s.gpu_peak_mib / 1024 if s.gpu_peak_mib else None, '{:.2f}')} | "
                    if g
                    else f"{gib(r.get('max_rss'))} | "
                )
                + f"{num(r.get('loss_first'), '{:.3f}')} -> {num(r.get('loss_last'), '{:.3f}')} | "
                f"{num(r.get('train_seconds'), '{:.1f}')} | {s.seconds:.1f} |"
            )
        L.append("")
        pairs = []
        for key in ("big", "small"):
            for adapter in ("qlora", "lora"):
                m, p = self.ok(f"medtune_{key}_{adapter}"), self.ok(f"plain_{key}_{adapter}")
                if m and p and m.get("tokens_per_second") and p.get("tokens_per_second"):
                    mem_ratio = (
                        (m["max_allocated"] / p["max_allocated"])
                        if m.get("max_allocated") and p.get("max_allocated")
                        else None
                    )
                    pairs.append(
                        f"| {key} {adapter} | {m['tokens_per_second'] / p['tokens_per_second']:.2f}x | "
                        f"{num(mem_ratio, '{:.2f}x')} | {m.get('trainable'):,} / {p.get('trainable'):,} |"
                    )
        if pairs:
            L += [
                "| model, adapter | medtune / plain tokens/s | medtune / plain peak allocated | trainable params medtune / plain |",
                "|---|---:|---:|---|",
                *pairs,
                "",
            ]
        if g:
            mfu = []
            for s, r in trains:
                if r.get("tokens_per_second") and self.peak_tflops:
                    n = (self.ok(f"medtune_{r['key']}_{r['adapter']}") or {}).get("total_params")
                    if n:
                        flops = 4.0 * n + 2.0 * r["trainable"]
                        mfu.append(f"{s.name} {100 * r['tokens_per_second'] * flops / (self.peak_tflops * 1e12):.1f}%")
            if mfu:
                L += [
                    f"Model FLOPs utilisation (medtune's formula 4N + 2 x trainable FLOPs per token, recomputation "
                    f"not counted, vs {self.peak_tflops} TFLOP/s dense bf16): " + ", ".join(mfu) + ".",
                    "",
                ]
        # planner
        plan = self.ok("plan") or {}
        if plan:
            L += [
                "## Planner vs measured peak",
                "",
                "Estimate: `medtune.modeling.planner.plan` on the run's own composed config (what `dry_run=true` "
                "prints), for micro batch x (max_input_tokens + max_target_tokens) = 8 x 640 tokens, and the same "
                "estimate for the widest batch the run really trains (8 x the longest example; random batches of 8 "
                f"over {self.steps_n} steps{' see every example' if self.steps_n * 8 >= 58 else ', which need not include the longest example'}). "
                "'allocated' leaves out the planner's CUDA context + 5% fragmentation term, to compare with "
                "`torch.cuda.max_memory_allocated`; the total compares with the device-level peak (NVML, which "
                "includes the CUDA context)."
                if g
                else "On the CPU the planner adds no overhead and medtune's peak is the process RSS, so these rows "
                "only prove the plumbing (benchmarks/planner_accuracy.py measures the CPU allocator properly).",
                "",
                "| run | plan total (8 x 640) GiB | plan allocated, widest batch GiB | longest example | measured peak allocated GiB | error % | plan total, widest GiB | "
                + ("device peak GiB | error % |" if g else "peak RSS GiB | error % |"),
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for name, p in plan.items():
                step = next((s for s in self.steps if s.name == name), None)
                m = self.ok(name) or {}
                if not p.get("ok"):
                    L.append(f"| {name} | plan failed: {p.get('error', '')[:200]} | | | | | | | |")
                    continue
                alloc_w = p.get("widest_allocated")
                measured = m.get("max_allocated")
                err = f"{100 * (alloc_w - measured) / measured:+.1f}" if alloc_w and measured else "–"
                device = (step.gpu_peak_mib * MIB if step and step.gpu_peak_mib else None) if g else m.get("max_rss")
                err2 = (
                    f"{100 * (p.get('widest_total') - device) / device:+.1f}"
                    if p.get("widest_total") and device
                    else "–"
                )
                L.append(
                    f"| {name} | {gib(p['total'])} | {gib(alloc_w)} | {p.get('longest_example', '–')} | "
                    f"{gib(measured)} | {err} | {gib(p.get('widest_total'))} | {gib(device)} | {err2} |"
                )
            L.append("")
            first = next((p for p in plan.values() if p.get("ok")), None)
            if first:
                L += [
                    f"Planner details ({next(k for k, p in plan.items() if p is first)}): precision {first.get('precision')}; "
                    f"peak moment at 8 x 640: {first.get('peak_moment')}; widest batch: {first.get('widest_peak_moment')}; "
                    f"attention {first.get('attention')}.",
                    "",
                ]
        dry = self.ok("dry_run")
        if dry:
            L += [
                "`train.py ... dry_run=true` totals (7B architecture, 8 x 640 tokens): "
                f"QLoRA {dry.get('qlora_total_gib')} GiB, LoRA {dry.get('lora_total_gib')} GiB.",
                "",
                "<details><summary>dry-run output (QLoRA)</summary>",
                "",
                "```",
                dry.get("qlora", "").strip(),
                "```",
                "",
                "</details>",
                "",
            ]
        # generation
        gen = self.ok("generate")
        if gen:
            L += [
                "## Generation (greedy, bundled sample exam, prompt A, 1 worked example)",
                "",
                f"Model: big ({gen.get('parameters', 0):,} parameters, {gen.get('dtype')}), loaded in "
                f"{gen.get('load_seconds', 0):.1f} s; max_new_tokens {gen.get('max_new_tokens')}; "
                f"{gen.get('exam_questions')} exam questions. A random-init model rarely stops early, so "
                "nearly every response is max_new_tokens long.",
                "",
                "| mode | batch | questions | seconds | questions/s | new tokens/s |",
                "|---|---:|---:|---:|---:|---:|",
                *(
                    f"| {r['mode']} | {r['batch_size']} | {r['questions']} | {r['seconds']:.2f} | "
                    f"{r['questions_per_s']:.2f} | {r['new_tokens_per_s']:.0f} |"
                    for r in gen.get("rows", [])
                ),
                "",
                f"Identical greedy texts, batched vs one at a time: {gen.get('identical')}/{gen.get('compared')}"
                + (
                    " (bf16 on a GPU: a left-padded batch may change a near-tie, so some differences are expected)."
                    if g
                    else "."
                ),
                f" Peak allocated {gib(gen.get('peak_allocated'))} GiB." if g else "",
                "",
            ]
        ev = self.ok("evaluate")
        if ev:
            L += [
                f"evaluate.py on the small QLoRA run: {ev.get('metrics')} in {ev.get('wall_seconds', 0):.1f} s "
                f"(process wall time, loading included): `{ev.get('command')}`",
                "",
            ]
        # export
        for key in ("small", "big"):
            ex, rl = self.ok(f"export_{key}_qlora"), self.ok(f"reload_{key}")
            if not ex:
                continue
            ver = ex.get("verification") or {}
            L += [
                f"## Export of the {key} QLoRA run",
                "",
                f"`{ex.get('command')}`: {ex.get('dequantized_layers')} {ex.get('dequantized')} layers dequantized "
                f"({'on the GPU' if g else 'on the CPU'}), saved as {ex.get('dtype')} ({gib(ex.get('bytes'))} GiB) in "
                f"{num(ex.get('seconds'), '{:.1f}')} s; medtune's own check (reload with plain transformers, logits vs "
                f"the trained model): max |diff| {num(ver.get('max_abs_logit_diff'), '{:.4g}')} on logits up to "
                f"{num(ver.get('logit_scale'), '{:.3g}')} (relative {num(ver.get('relative_diff'), '{:.3g}')}, "
                f"{ver.get('positions')} positions)."
                + (
                    f" Process peak allocated {gib(ex.get('max_allocated'))} GiB, RSS {gib(ex.get('max_rss'))} GiB."
                    if g
                    else ""
                ),
                "",
            ]
            if rl:
                L += [
                    f"Independent reload (`helpers.py reload`): {rl.get('parameters', 0):,} parameters as "
                    f"{rl.get('dtype')} on {rl.get('device')}; quantization_config in config.json: "
                    f"{rl.get('has_quantization_config')}; bitsandbytes layers: {rl.get('bitsandbytes_layers')}; "
                    f"PEFT layers: {rl.get('peft_layers')}; logits finite: {rl.get('logits_finite')}; generated "
                    f"{rl.get('generated_tokens')} tokens; {rl.get('seconds', 0):.1f} s.",
                    "",
                ]
        # failures
        bad = [s for s in self.steps if s.status in ("failed", "timeout")]
        if bad:
            L += ["## Failures", ""]
            for s in bad:
                L += [f"### {s.name}: {s.error}", ""]
                if s.result.get("failure"):
                    L += [f"failure.json: {s.result['failure']}", ""]
                L += ["```", s.tail.strip()[-2500:], "```", ""]
        # commands
        cmds = [(s.name, s.result.get("command")) for s in self.steps if s.status == "ok" and s.result.get("command")]
        if cmds:
            L += [
                "## Commands",
                "",
                "`<work>` is " + str(self.work) + ".",
                "",
                *(f"- {n}: `{cmd}`" for n, cmd in cmds),
                "",
            ]
        return "\n".join(L)

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
                }
                for s in self.steps
            ],
        }
        json_path = (self.out_dir or self.work) / ("gpu_check.json" if self.gpu else "gpu_check_cpu_dry.json")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(repo_relative(json.dumps(data, indent=1, default=str)))

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
            for sub in ("runs", "results", "logs", "specs", "plain", "exports", "eval", "eval_hydra", "dry", "outputs"):
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
        print("\n".join(f"{s.name:22s} {s.status:8s} {s.seconds:6.1f} s  {s.error}" for s in self.steps))
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
    parser.add_argument("--budget", type=float, help="seconds for all steps (default 430 GPU, 290 CPU dry)")
    parser.add_argument("--steps", type=int, help="optimizer steps per training run (default 20 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, help="steps left out of tokens/s (default 5 GPU, 1 CPU)")
    parser.add_argument("--work-dir", type=Path, help="default /tmp/medtune_gpu_check[_cpu]")
    parser.add_argument("--out", type=Path, help="report path (default $OUT/gpu_check.md or benchmarks/results/)")
    parser.add_argument("--only", default="", help="comma-separated step names to run (others skipped)")
    parser.add_argument("--skip", default="", help="comma-separated step names to skip")
    parser.add_argument("--keep-cache", action="store_true", help="keep built checkpoints from an earlier run")
    parser.add_argument("--keep-work", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.passthrough = sys.argv[1:]
    args.only = [s for s in args.only.split(",") if s]
    args.skip = [s for s in args.skip.split(",") if s]
    if args.cpu_dry:
        args.mode = "cpu"
    elif cuda_visible(sys.executable):
        args.mode = "gpu"
    else:
        print("no CUDA device visible to torch: running the CPU dry run (--cpu-dry)", flush=True)
        args.mode = "cpu"
    args.budget = args.budget or (430.0 if args.mode == "gpu" else 290.0)
    args.work_dir = args.work_dir or Path("/tmp/medtune_gpu_check" + ("" if args.mode == "gpu" else "_cpu"))
    return Check(args).main()


if __name__ == "__main__":
    raise SystemExit(main())
