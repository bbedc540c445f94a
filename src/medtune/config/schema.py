"""Typed schemas for every config group; YAML options are merged into these, so typos fail early.

The dataclasses are plain Python: Hydra's ConfigStore registration lives in `store.py`.
Enums are `str` enums so that YAML and command-line values stay readable (`adapter.quantization.method=nf4`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from medtune.config.exam_schema import ExamConfig, ExamEvalConfig


class Task(str, Enum):
    train = "train"  # instruction tuning: loss on the responses only
    pretrain = "pretrain"  # continual pretraining: causal-LM loss on every token of raw text

    def __str__(self) -> str:  # interpolated into paths (task_name: ${task})
        return self.value


class ResumeMode(str, Enum):
    auto = "auto"  # continue from the run dir's last complete checkpoint if config and data match, else refuse
    force = "force"  # continue even though the config or data changed (the differences are printed)
    off = "off"  # start from step 0 in this run dir


class DType(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class ModelSource(str, Enum):
    pretrained = "pretrained"  # a checkpoint: model.path (a folder or a .gguf file), or model.hub_id in the HF cache
    tiny = "tiny"  # random-init model built locally from model.architecture, cached under paths.cache_dir
    embedded = "embedded"  # GGUF weights shipped in installed Python packages (model.package_files)


class AdapterKind(str, Enum):
    lora = "lora"
    full = "full"  # every weight trains; only sensible for tiny models
    none = "none"  # nothing trains: an untuned base, for evaluation rows of a study


class Quantization(str, Enum):
    none = "none"
    nf4 = "nf4"
    fp4 = "fp4"
    int8 = "int8"


class DatasetFormat(str, Enum):
    auto = "auto"  # decided per record from its fields
    alpaca = "alpaca"  # instruction / input / output
    prompt_response = "prompt_response"  # prompt / response (the Vietnamese paper's format)
    exam = "exam"  # IgakuQA fields: problem_text / choices / answer
    text = "text"  # raw text for task=pretrain: .txt / .md files, or JSON Lines with a "text" field
    tokens = "tokens"  # pre-tokenized JSON Lines: {"input_ids": [...], "labels": [...]} (-100: no loss)


class OverlongPolicy(str, Enum):
    truncate_input = "truncate_input"  # keep the end of the prompt, never cut the answer
    drop = "drop"  # drop the example


class Accelerator(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class LoggerKind(str, Enum):
    wandb = "wandb"
    none = "none"


class WandbMode(str, Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class LrScheduler(str, Enum):
    constant = "constant"
    constant_with_warmup = "constant_with_warmup"
    linear = "linear"
    cosine = "cosine"


class Sampling(str, Enum):
    random = "random"
    sequential = "sequential"  # the data's order: reproducible comparisons (e.g. 1 vs 2 ranks)
    group_by_length = "group_by_length"  # similar lengths share a batch: less padding


class LossKind(str, Enum):
    auto = "auto"  # target-only where the model's output head allows it, else full logits (the run says why)
    target_only = "target_only"  # LM head + float32 cross-entropy on the target positions only, chunked
    full_logits = "full_logits"  # transformers' own loss over full-vocabulary logits at every position


class AttentionKind(str, Enum):
    auto = "auto"  # flash_attention_2 on a GPU where flash_attn imports, else varlen_sdpa
    varlen_sdpa = "varlen_sdpa"  # SDPA's causal kernel on each packed example's own slice
    flash_attention_2 = "flash_attention_2"  # flash-attention's varlen kernel (needs flash_attn, CUDA, 16-bit)
    model = "model"  # the model's own implementation, with transformers' block mask from position_ids


class Kernels(str, Enum):
    none = "none"
    liger = "liger"  # liger-kernel's fused RMSNorm, SwiGLU, RoPE and linear cross-entropy (CUDA only)


class Optimizer(str, Enum):
    adamw_torch = "adamw_torch"
    paged_adamw_32bit = "paged_adamw_32bit"
    paged_adamw_8bit = "paged_adamw_8bit"


@dataclass
class ArchitectureConfig:
    """The numbers that define a decoder; enough to build it on the meta device with no download.

    A checkpoint on this machine overrides them with its own config.json (a disagreement is
    reported); they are the offline fallback for planning (`dry_run`) a model that is not here,
    and the recipe of the random-init `model=tiny`. Null = unknown until the checkpoint is read."""

    model_type: str = "llama"
    hidden_size: Optional[int] = None
    num_layers: Optional[int] = None
    num_heads: Optional[int] = None
    num_kv_heads: Optional[int] = None
    intermediate_size: Optional[int] = None
    vocab_size: Optional[int] = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02  # only used when a model is built from these numbers (model=tiny)


@dataclass
class ModelConfig:
    name: str = MISSING
    source: ModelSource = ModelSource.pretrained
    hub_id: Optional[str] = None
    path: Optional[str] = None  # a checkpoint folder, a train.py run dir, or a .gguf file; wins over hub_id
    gguf_file: Optional[str] = None  # a GGUF file inside model.path (converted once to safetensors in the cache)
    package_files: List[str] = field(default_factory=list)  # source=embedded: "package/file" parts, joined in order
    sha256: Optional[str] = None  # source=embedded: the joined GGUF file's digest, checked before use
    install: Optional[str] = None  # source=embedded: the command that installs the packages (shown when missing)
    revision: Optional[str] = None
    dtype: DType = DType.bfloat16
    allow_download: bool = False  # fetch hub_id when it is not cached (needs network)
    trust_remote_code: bool = False
    architecture: ArchitectureConfig = field(default_factory=ArchitectureConfig)


@dataclass
class QuantizationConfig:
    method: Quantization = Quantization.none
    double_quant: bool = True
    compute_dtype: DType = DType.float32
    quant_storage: Optional[DType] = None  # ZeRO-3 / FSDP shard the 4-bit base only if this equals the compute dtype


@dataclass
class AdapterConfig:
    name: str = MISSING
    kind: AdapterKind = AdapterKind.lora
    r: int = 8
    alpha: int = 8
    dropout: float = 0.0
    target_modules: List[str] = field(default_factory=list)  # [] = PEFT's default for the architecture
    bias: str = "none"
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)


@dataclass
class MixtureSourceConfig:
    """One source of a dataset mixture (the Vietnamese paper's Alpaca + GPT4All, Alpaca + ChatDoctor)."""

    path: Optional[str] = MISSING  # a file or folder; null = the bundled sample files
    format: DatasetFormat = DatasetFormat.auto
    weight: float = 1.0  # copies of the source in the mix: 1 = every record once, 0.5 = a seeded half, 2 = twice
    max_records: Optional[int] = None  # read at most this many records of the source first


@dataclass
class DatasetConfig:
    name: str = MISSING
    path: Optional[str] = MISSING  # every option sets it: null = the bundled sample files, ??? = the user's
    format: DatasetFormat = DatasetFormat.auto
    max_records: Optional[int] = None
    eval_fraction: float = 0.1
    mixture: Dict[str, MixtureSourceConfig] = field(default_factory=dict)  # name -> source; non-empty: replaces path
    text_field: str = "text"  # format=text: the JSON field that holds a document
    description: str = ""


@dataclass
class PromptConfig:
    name: str = MISSING
    language: Optional[str] = None  # the template's language (ja, en, vi); null = not stated, so not checked
    template: str = MISSING  # must contain {instruction}; {input} is filled with the choices / context
    template_no_input: Optional[str] = None  # used when a record has no input
    answer_marker: str = "Answer:"  # ends a worked example's reasoning; the parser reads what follows it
    chat: bool = (
        False  # render through the tokenizer's chat template: system text, then the filled template as the user turn
    )
    system: str = ""  # chat=true: the system message ("" = none)
    description: str = ""


@dataclass
class DeepSpeedConfig:
    zero_stage: int = 0  # 0 = DeepSpeed off
    offload_optimizer: bool = False
    offload_params: bool = False


@dataclass
class HardwareConfig:
    name: str = MISSING
    accelerator: Accelerator = Accelerator.cpu
    devices_per_node: int = 1
    num_nodes: int = 1
    device_name: str = "cpu"
    device_memory_gib: Optional[float] = None
    compute_dtype: DType = DType.float32
    max_model_params_billion: Optional[float] = None  # refuse larger models (a CPU cannot train 70B)
    gradient_checkpointing: bool = False
    peak_tflops: Optional[float] = None  # dense bf16/fp16 peak of one device, for MFU; null = not logged
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)


@dataclass
class LoggerConfig:
    kind: LoggerKind = LoggerKind.wandb
    project: str = "medtune"
    entity: Optional[str] = None
    mode: WandbMode = WandbMode.offline
    group: Optional[str] = None  # default: one group per multirun, none for a single run
    tags: List[str] = field(default_factory=list)


@dataclass
class TrainingConfig:
    max_steps: int = 60
    epochs: Optional[float] = None  # set: max_steps = ceil(epochs x train examples / global batch)
    learning_rate: float = 2e-4
    global_batch_size: int = 16
    # examples (or packed rows) per device and forward pass, or "auto": the largest that the memory plan
    # fits on the device, gradient accumulation keeping the global batch
    micro_batch_size: Any = 4
    max_input_tokens: int = 512
    max_target_tokens: int = 512
    max_total_tokens: Optional[int] = (
        None  # a cap on prompt + response (alpaca-lora's cutoff_len); the prompt gives way first
    )
    overlong: OverlongPolicy = OverlongPolicy.truncate_input
    lr_scheduler: LrScheduler = LrScheduler.constant_with_warmup
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optimizer: Optimizer = Optimizer.adamw_torch
    sampling: Sampling = Sampling.random
    packing: bool = False  # bin-pack whole examples into padding-free rows (batch sizes then count rows)
    padding_free: bool = True  # a micro-batch's examples run as one row without padding (same loss as padded)
    attention: AttentionKind = AttentionKind.auto  # how padding-free and packed rows attend
    loss: LossKind = LossKind.auto  # where the LM head and the cross-entropy run
    kernels: Kernels = Kernels.none  # liger: fused GPU kernels (needs a CUDA device and liger-kernel)
    pack_max_tokens: int = 0  # tokens per packed row; 0 = max_input_tokens + max_target_tokens
    logging_steps: int = 5
    eval_steps: int = 0  # 0 = evaluate before and after training only
    save_steps: int = 0  # 0 = save the final adapter only
    save_total_limit: int = 2


@dataclass
class PretrainConfig:
    """task=pretrain: documents joined with EOS and cut into blocks of `block_tokens` (no padding)."""

    block_tokens: int = 768  # JMedLoRA's MedCALM: 768
    isolate_documents: bool = True  # attention and positions restart at every document inside a block
    eval_blocks: int = 0  # 0 = eval_fraction of the documents (whole documents, never split across)


@dataclass
class PathsConfig:
    output_root: str = "outputs"
    cache_dir: str = "outputs/cache"
    shared: str = "../shared"


@dataclass
class TrainRunConfig:
    """The whole `train.py` config: one field per group plus run-level keys."""

    task: Task = Task.train
    task_name: str = "train"
    seed: int = 42
    dry_run: bool = False
    resume: ResumeMode = ResumeMode.auto  # rerun in the same run dir: continue from its last checkpoint
    overwrite: bool = False  # true: replace a finished run made with other settings in this run dir (deletes it)
    optimized_metric: str = "eval/loss_after"  # what the job returns to a Hydra sweeper (a key of train_summary.json)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    train: TrainingConfig = field(default_factory=TrainingConfig)
    exam: ExamConfig = field(default_factory=ExamConfig)  # the exam whose accuracy training reports
    exam_eval: ExamEvalConfig = field(default_factory=ExamEvalConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
