"""Typed schema of exams and of how they are evaluated (used by evaluate.py and by train.py's exam check)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from omegaconf import MISSING


class Similarity(str, Enum):
    rapidfuzz = "rapidfuzz"  # rapidfuzz.fuzz.ratio: normalised Indel similarity (longest common subsequence)
    difflib = "difflib"  # difflib.SequenceMatcher.ratio: Ratcliff/Obershelp "Gestalt pattern matching"


class ExamFormat(str, Enum):
    igakuqa = "igakuqa"  # <path>/<year>/<exam>-<block>.jsonl with optional *_metadata.jsonl
    jsonl = "jsonl"  # one file (or a folder of files) read through exam.fields
    sample = "sample"  # the bundled sample exam


class EvalMode(str, Enum):
    generate = "generate"  # the paper's protocol: generate, parse, Algorithm 1
    loglik = "loglik"  # the likeliest choice by log-probability, one forward pass per question


class EvalBackend(str, Enum):
    hf = "hf"  # transformers.generate in this process (the model.* / run= model)
    endpoint = "endpoint"  # any OpenAI-compatible server (vLLM, llama.cpp, TGI, SGLang, a hosted API)
    vllm = "vllm"  # vLLM in this process (a GPU machine with vllm installed)


class EndpointApi(str, Enum):
    chat = "chat"  # POST <url>/chat/completions with messages: the server applies its chat template
    completions = "completions"  # POST <url>/completions with the prompt text medtune renders


@dataclass
class EndpointConfig:
    """An OpenAI-compatible server for eval.backend=endpoint. The key never lives in a config."""

    url: Optional[str] = None  # the API root, e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1
    model: str = "default"  # the "model" field of every request, e.g. gpt-4
    api: EndpointApi = EndpointApi.chat
    api_key_env: Optional[str] = None  # name of the environment variable that holds the key
    concurrency: int = 4  # requests in flight at once
    timeout_s: float = 120.0  # the most one request may take, connecting to the answer's last byte
    max_retries: int = 4  # on connection errors, timeouts, 429 and 5xx answers (a Retry-After waits at most 60 s)
    backoff_s: float = 1.0  # first wait before a retry; doubles each time (capped at 60 s)


class LoglikTarget(str, Enum):
    letter = "letter"  # score " c" after the prompt
    text = "text"  # score "c. <choice text>", length-normalised
    both = "both"  # letter and text scored; the answer is the letter's, the text's is recorded beside it


class ExamAggregate(str, Enum):
    """Breakdowns beyond accuracy that an exam's metrics.json holds; each needs data the exam has."""

    points = "points"  # points and points_total: questions weigh differently (IgakuQA: 1 or 3)
    essential = "essential"  # essential / general tallies: IgakuQA's "hisshu" blocks B and E
    block = "block"  # by_block: one tally per IgakuQA block letter
    category = "category"  # by_category: one tally per category of IgakuQA's _metadata files
    kinki = "kinki"  # contraindicated choices picked (kinki, from IgakuQA's _metadata files)


@dataclass
class ExamFieldsConfig:
    """Which JSON field holds what, for exam.format=jsonl."""

    id: str = "problem_id"
    question: str = "problem_text"
    choices: str = "choices"
    answer: str = "answer"
    points: str = "points"
    text_only: str = "text_only"


@dataclass
class ExamConfig:
    """One exam. The defaults suit any exam: every question, the keys as written, accuracy without
    breakdowns. An exam's own assumptions (IgakuQA's paper subset, the ministry's key corrections, its
    points and blocks) live in its conf/exam/<name>.yaml."""

    name: str = MISSING
    format: ExamFormat = ExamFormat.jsonl
    path: Optional[str] = MISSING  # null for the bundled sample
    language: Optional[str] = (
        None  # the questions' language (ja, en, vi); null = not stated: not checked, English shots
    )
    # The prompt must be in the exam's language (check_prompt_language); true keeps a prompt in another on purpose.
    allow_prompt_language_mismatch: bool = False
    years: List[int] = field(default_factory=list)  # IgakuQA years; [] = every year folder found
    english: bool = False  # IgakuQA's *_translate.jsonl English version (the questions are then in English)
    # Filters; the defaults keep every question (conf/exam/igakuqa.yaml sets the 70B paper's subset).
    text_only: bool = False  # true: drop questions that come with an image
    min_answers: int = 1
    max_answers: int = 99  # 99: no limit
    require_choices: bool = False  # true: drop numeric-answer questions (no choice list)
    blocks: List[str] = field(default_factory=list)  # [] = every block
    max_questions: Optional[int] = None
    answer_overrides: Optional[str] = None  # a JSONL of answer-key corrections by problem_id; null = none
    aggregates: List[ExamAggregate] = field(default_factory=list)  # breakdowns in metrics.json; [] = none
    shuffle_choices: bool = False  # seeded permutation of every question's choices: position bias
    shuffle_seed: int = 0
    fewshot_path: Optional[str] = None  # worked examples with explanations; null = the bundled exemplars
    fields: ExamFieldsConfig = field(default_factory=ExamFieldsConfig)


@dataclass
class EvalConfig:
    mode: EvalMode = EvalMode.generate
    backend: EvalBackend = EvalBackend.hf  # who generates: hf | endpoint | vllm (same prompts and scoring)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    num_shots: int = 1  # worked chain-of-thought examples before each question (0-5)
    samples: int = 1  # self-consistency: sampled chains per question, majority vote (>1 turns sampling on)
    shuffles: int = 1  # choice-shuffle ensemble: each question under k permutations of its choices
    ensemble_seed: int = 0  # seeds the permutations of eval.shuffles
    batch_size: int = 8
    max_new_tokens: int = 256
    do_sample: bool = False  # greedy by default
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    repetition_penalty: float = 1.0
    similarity: Similarity = Similarity.rapidfuzz
    match_threshold: float = 0.2  # a response part less similar than this to every choice matches none
    strict_threshold: float = 0.8  # the strict reading: a choice text counts only this similar or more
    loglik_target: LoglikTarget = LoglikTarget.letter
    output_dir: Optional[str] = None  # null: <run>/eval/<exam>_<prompt>_<mode> with run=, else the Hydra run dir


@dataclass
class ExamEvalConfig:
    """Exam accuracy during training: before, every `every_steps` steps, and after."""

    enabled: bool = True
    every_steps: int = 0  # 0 = before and after training only
    mode: EvalMode = EvalMode.generate
    num_shots: int = 0
    max_new_tokens: int = 48
    batch_size: int = 16
    keep_best: bool = True  # with every_steps > 0: save the adapter with the best exam accuracy
