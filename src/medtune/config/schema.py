"""Typed schemas for every config group; YAML options are merged into these, so typos fail early.

The dataclasses are plain Python: Hydra's ConfigStore registration lives in `store.py`.
Enums are `str` enums so that YAML and command-line values stay readable (`adapter.quantization.method=nf4`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Dict, List, Optional

from omegaconf import MISSING

from medtune.config.contamination_schema import ContaminationConfig
from medtune.config.exam_schema import ExamConfig, ExamEvalConfig
from medtune.config.field_help import help_field
from medtune.config.read_only import ConfigNode
from medtune.config.training_schema import (  # noqa: F401  (re-exported: medtune.config.schema names them all)
    AttentionKind,
    Kernels,
    LossKind,
    LrScheduler,
    Optimizer,
    OverlongPolicy,
    PretrainConfig,
    Sampling,
    TrainingConfig,
)


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


@dataclass
class ArchitectureConfig(ConfigNode):
    """The numbers that define a decoder; enough to build it on the meta device with no download.

    A checkpoint on this machine overrides them with its own config.json (a disagreement is
    reported); they are the offline fallback for planning (`dry_run`) a model that is not here,
    and the recipe of the random-init `model=tiny`. Null = unknown until the checkpoint is read."""

    model_type: str = help_field("llama", "The transformers model type (config.json's model_type), e.g. llama.")
    hidden_size: Optional[int] = help_field(None, "Width of the hidden states; null = read from the checkpoint.")
    num_layers: Optional[int] = help_field(None, "Decoder layers; null = read from the checkpoint.")
    num_heads: Optional[int] = help_field(None, "Attention (query) heads; null = read from the checkpoint.")
    num_kv_heads: Optional[int] = help_field(
        None, "Key/value heads (fewer than num_heads: grouped-query attention); null = read from the checkpoint."
    )
    intermediate_size: Optional[int] = help_field(
        None, "Width of the MLP's inner layer; null = read from the checkpoint."
    )
    vocab_size: Optional[int] = help_field(None, "Tokens in the vocabulary; null = read from the checkpoint.")
    max_position_embeddings: int = help_field(4096, "The longest sequence the model's positions cover, in tokens.")
    tie_word_embeddings: bool = help_field(False, "true: the output head shares the input embedding's weights.")
    initializer_range: float = help_field(
        0.02, "Std of the random init; only used when a model is built from these numbers (model=tiny)."
    )


@dataclass
class ModelConfig(ConfigNode):
    name: str = help_field(
        MISSING, "The model option's name (model=<name>), as the console, messages and evaluation reports name it."
    )
    source: ModelSource = help_field(
        ModelSource.pretrained,
        "Where the weights come from: pretrained (model.path, or model.hub_id in the Hugging Face cache), "
        "tiny (a random-init model built locally from model.architecture) or embedded "
        "(GGUF weights in installed Python packages: model.package_files).",
    )
    hub_id: Optional[str] = help_field(
        None, "A Hugging Face hub id, read from the local HF cache (downloaded only with model.allow_download=true)."
    )
    path: Optional[str] = help_field(
        None, "A checkpoint folder, a train.py run dir or a .gguf file on this machine; wins over model.hub_id."
    )
    gguf_file: Optional[str] = help_field(
        None, "A GGUF file inside model.path, converted once to safetensors in the cache; null = none."
    )
    package_files: List[str] = help_field(
        help="source=embedded: the GGUF file's parts as package/file paths inside installed packages, joined in order.",
        factory=list,
    )
    sha256: Optional[str] = help_field(None, "source=embedded: the joined GGUF file's digest, checked before use.")
    install: Optional[str] = help_field(
        None, "source=embedded: the command that installs the packages (shown when they are missing)."
    )
    revision: Optional[str] = help_field(None, "The hub revision (branch, tag or commit) of model.hub_id; null = main.")
    dtype: DType = help_field(DType.bfloat16, "The dtype the base weights are loaded in.")
    allow_download: bool = help_field(False, "true: download model.hub_id when it is not in the cache (needs network).")
    trust_remote_code: bool = help_field(
        False, "true: run the model repository's own Python code (transformers' trust_remote_code)."
    )
    architecture: ArchitectureConfig = help_field(
        help="The decoder's shape: the offline fallback for dry runs, and the recipe of model=tiny.",
        factory=ArchitectureConfig,
    )


@dataclass
class QuantizationConfig(ConfigNode):
    method: Quantization = help_field(
        Quantization.none, "How the frozen base is quantized (bitsandbytes): none, nf4 / fp4 (4-bit, QLoRA) or int8."
    )
    double_quant: bool = help_field(True, "4-bit only: quantize the quantization constants too (QLoRA's double quant).")
    compute_dtype: DType = help_field(DType.float32, "4-bit only: the dtype the dequantized weights compute in.")
    quant_storage: Optional[DType] = help_field(
        None,
        "4-bit only: the dtype the packed weights are stored in; null = the compute dtype under ZeRO-3, else bitsandbytes' uint8. "
        "ZeRO-3 / FSDP shard the 4-bit base only if it equals the compute dtype.",
    )


@dataclass
class AdapterConfig(ConfigNode):
    name: str = help_field(MISSING, "The adapter option's name (adapter=<name>), as the console and messages name it.")
    kind: AdapterKind = help_field(
        AdapterKind.lora,
        "What trains: lora (a LoRA adapter through PEFT), full (every weight; only sensible for tiny models) "
        "or none (nothing: an untuned base, for evaluation rows of a study).",
    )
    r: int = help_field(8, "LoRA rank.")
    alpha: int = help_field(8, "LoRA alpha: the update is scaled by alpha / r.")
    dropout: float = help_field(0.0, "Dropout on the LoRA path's input, 0-1.")
    target_modules: List[str] = help_field(
        help="Module names that get LoRA; [] = PEFT's default for the architecture, [all-linear] = every linear layer.",
        factory=list,
    )
    bias: str = help_field("none", "Which biases train with LoRA (PEFT's bias): none, all or lora_only.")
    quantization: QuantizationConfig = help_field(
        help="Quantization of the frozen base (QLoRA, int8 LoRA).", factory=QuantizationConfig
    )


@dataclass
class MixtureSourceConfig(ConfigNode):
    """One source of a dataset mixture (the Vietnamese paper's Alpaca + GPT4All, Alpaca + ChatDoctor)."""

    path: Optional[str] = help_field(MISSING, "A file or folder of this source; null = the bundled sample files.")
    format: DatasetFormat = help_field(DatasetFormat.auto, "The source's record format (as dataset.format).")
    weight: float = help_field(
        1.0, "Copies of the source in the mix: 1 = every record once, 0.5 = a seeded half, 2 = twice."
    )
    max_records: Optional[int] = help_field(None, "Read at most this many records of the source first; null = all.")


@dataclass
class DatasetConfig(ConfigNode):
    name: str = help_field(MISSING, "The dataset option's name (dataset=<name>), as the console names it.")
    path: Optional[str] = help_field(
        MISSING, "A file or folder of records; null = the bundled sample files. Every option sets it (??? = yours)."
    )
    format: DatasetFormat = help_field(
        DatasetFormat.auto,
        "Record format: auto (decided per record from its fields), alpaca (instruction / input / output), "
        "prompt_response, exam (IgakuQA fields), text (raw text for task=pretrain) or tokens "
        '(pre-tokenized {"input_ids", "labels"} JSON Lines, -100 = no loss).',
    )
    max_records: Optional[int] = help_field(None, "Read at most this many records; null = all.")
    eval_fraction: float = help_field(
        0.1, "Share of the records held out for the eval loss, in [0, 1) (whole records, never trained on)."
    )
    mixture: Dict[str, MixtureSourceConfig] = help_field(
        help="Named sources mixed into one training set (name -> source); non-empty: replaces dataset.path.",
        factory=dict,
    )
    text_field: str = help_field("text", "format=text: the JSON field that holds a document.")
    description: str = help_field("", "What the dataset is, in words (for people reading the config).")


@dataclass
class PromptConfig(ConfigNode):
    name: str = help_field(
        MISSING, "The prompt option's name (prompt=<name>): in messages, and in an evaluation's default output dir."
    )
    language: Optional[str] = help_field(
        None, "The template's language (ja, en, vi), checked against the exam's; null = not stated, not checked."
    )
    template: str = help_field(
        MISSING,
        "The prompt text: must contain {instruction}; {input} receives the choices or the context "
        "(without {input}, they follow the instruction).",
    )
    template_no_input: Optional[str] = help_field(
        None, "The template for a record with an empty input; null = prompt.template with an empty {input}."
    )
    answer_marker: str = help_field(
        "Answer:",
        "Precedes the answer: ends a worked example's reasoning, generation stops after the line that follows it, "
        "and eval=loglik scores the choices after it.",
    )
    chat: bool = help_field(
        False,
        "true: render through the tokenizer's chat template: prompt.system, then the filled template as the user "
        "turn (refused for a tokenizer without one).",
    )
    system: str = help_field("", 'prompt.chat=true: the system message ("" = none).')
    description: str = help_field("", "What the prompt is, in words (for people reading the config).")


@dataclass
class DeepSpeedConfig(ConfigNode):
    zero_stage: int = help_field(0, "DeepSpeed ZeRO stage: 0 = DeepSpeed off, 1, 2 or 3 (3 also shards parameters).")
    offload_optimizer: bool = help_field(False, "true: keep the optimizer state in CPU memory (ZeRO stage 1 or more).")
    offload_params: bool = help_field(False, "true: keep the parameters in CPU memory (ZeRO-3 only).")


@dataclass
class HardwareConfig(ConfigNode):
    name: str = help_field(
        MISSING, "The hardware option's name (hardware=<name>), as the console and messages name it."
    )
    accelerator: Accelerator = help_field(Accelerator.cpu, "The device kind: cpu or cuda.")
    devices_per_node: int = help_field(
        1, "Devices (ranks) per node; a launcher such as torchrun starts one per device."
    )
    num_nodes: int = help_field(1, "Nodes of the launch.")
    device_name: str = help_field("cpu", "The device's name, for the memory plan and the console, e.g. NVIDIA A100.")
    device_memory_gib: Optional[float] = help_field(
        None, "Memory of one device in GiB for the memory plan; null = read from the GPU at run time, or unknown."
    )
    compute_dtype: DType = help_field(
        DType.float32,
        "The mixed-precision dtype (bf16 / fp16 of the Trainer and DeepSpeed): on a GPU with 16-bit model weights, "
        "or bfloat16 autocast on a CPU (hardware=cpu_bf16). A quantized base computes in "
        "adapter.quantization.compute_dtype instead.",
    )
    max_model_params_billion: Optional[float] = help_field(
        None, "Refuse models larger than this many billion parameters (a CPU cannot train 70B); null = no limit."
    )
    gradient_checkpointing: bool = help_field(
        False, "true: recompute activations in the backward pass (less memory, more compute)."
    )
    peak_tflops: Optional[float] = help_field(
        None, "Dense bf16/fp16 peak TFLOPS of one device, for the logged MFU; null = no MFU."
    )
    deepspeed: DeepSpeedConfig = help_field(help="DeepSpeed ZeRO settings.", factory=DeepSpeedConfig)


@dataclass
class LoggerConfig(ConfigNode):
    kind: LoggerKind = help_field(
        LoggerKind.wandb, "The experiment tracker: wandb or none (metrics still go to the run dir's files)."
    )
    project: str = help_field("medtune", "The W&B project.")
    entity: Optional[str] = help_field(None, "The W&B entity (user or team); null = your default.")
    mode: WandbMode = help_field(
        WandbMode.offline,
        "W&B mode: offline (files under <run dir>/wandb; `wandb sync` uploads them), online or disabled.",
    )
    group: Optional[str] = help_field(
        None,
        "The W&B group; null = the group handed down (an evaluation joins its training run's), else "
        "<task_name>-<multirun dir> for a multirun's jobs, else <task_name>-<run dir>.",
    )
    tags: List[str] = help_field(help="Extra W&B tags, besides the group:option tags of the run.", factory=list)


@dataclass
class PathsConfig(ConfigNode):
    output_root: str = help_field(
        "outputs", "Where run dirs, sweeps and the cache go: <output_root>/<task_name>/runs/."
    )
    cache_dir: str = help_field(
        "outputs/cache", "Converted and built checkpoints and tokenized datasets (conf/paths: <output_root>/cache)."
    )
    shared: str = help_field(
        "../shared", "The shared data folder (exams, datasets); conf/paths reads $MEDTUNE_SHARED, else ../shared."
    )


@dataclass
class TrainRunConfig(ConfigNode):
    """The whole `train.py` config: one field per group plus run-level keys."""

    task: Task = help_field(
        Task.train,
        "train: instruction tuning, loss on the responses only; pretrain: continual pretraining, loss on every "
        "token of raw text (dataset=medical_text).",
    )
    task_name: str = help_field("train", "Names the output folder: <paths.output_root>/<task_name>/runs/<time>.")
    seed: int = help_field(42, "Seeds the adapter's initial weights, the data order and the mixture's draws.")
    dry_run: bool = help_field(False, "true: validate and describe the run and its memory plan; load no weights.")
    resume: ResumeMode = help_field(
        ResumeMode.auto,
        "A rerun in the same run dir: auto (continue from its last complete checkpoint if config and data match, "
        "else refuse), force (continue anyway, the differences printed) or off (start from step 0).",
    )
    overwrite: bool = help_field(
        False, "true: replace a finished run made with other settings in this run dir (deletes it)."
    )
    optimized_metric: str = help_field(
        "eval/loss_after", "What the job returns to a Hydra sweeper: a key of train_summary.json."
    )
    model: ModelConfig = help_field(help="The base model (model=<option>).", factory=ModelConfig)
    adapter: AdapterConfig = help_field(
        help="What trains on the base: LoRA, QLoRA, full (adapter=<option>).", factory=AdapterConfig
    )
    dataset: DatasetConfig = help_field(help="The training data (dataset=<option>).", factory=DatasetConfig)
    prompt: PromptConfig = help_field(
        help="The template records are rendered in (prompt=<option>).", factory=PromptConfig
    )
    hardware: HardwareConfig = help_field(
        help="The machine: devices, dtype, DeepSpeed (hardware=<option>).", factory=HardwareConfig
    )
    logger: LoggerConfig = help_field(help="Experiment tracking (logger=<option>).", factory=LoggerConfig)
    train: TrainingConfig = help_field(
        help="The optimisation schedule and how steps compute (schedule=<option> sets some).", factory=TrainingConfig
    )
    exam: ExamConfig = help_field(
        help="The exam asked (exam=<option>); training reports its accuracy before and after.", factory=ExamConfig
    )
    exam_eval: ExamEvalConfig = help_field(
        help="When and how training's exam check asks the exam.", factory=ExamEvalConfig
    )
    contamination: ContaminationConfig = help_field(
        help="The training data audited against the exam, before its check.", factory=ContaminationConfig
    )
    pretrain: PretrainConfig = help_field(help="Blocks of raw text for task=pretrain.", factory=PretrainConfig)
    paths: PathsConfig = help_field(help="Where outputs, caches and the shared data are.", factory=PathsConfig)
