"""A minimal OpenAI-compatible server for a local model: `POST /v1/chat/completions`, `POST /v1/completions`,
`GET /v1/models` (and `GET /stats`: requests, batches and prompts answered so far).

    python -m medtune.llm.server --model smollm2_135m                    # a model option of conf/model/
    python -m medtune.llm.server --run outputs/train/runs/<stamp>          # a trained run (base + adapter)
    python -m medtune.llm.server --model-path /models/llama-2-7b --port 8000

It lets evaluate.py (eval.backend=endpoint), a judge or a QA generator reach a model through the
same endpoint code as a hosted one, and lets tests start a real server. Chat messages are rendered
whole (system, earlier turns, the last user turn) through the tokenizer's chat template, or, for a
run trained on a plain template, through that template; a completion prompt is used as given.
Requests that arrive together are answered together: a worker collects those waiting (up to
--max-batch, waiting a few ms for late ones: --batch-wait-ms), and runs one batched generation per
group of equal decoding settings. Decoding is greedy unless a request sets a temperature (OpenAI's
default is 1); usage counts re-tokenize the returned text. It binds 127.0.0.1 by default and has
no authentication: keep it on a trusted host.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

from medtune.config.generator_schema import GeneratorConfig
from medtune.llm.backend import ChatRequest, LocalGenerator

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"  # the repository's Hydra configs (editable install)
MAX_CHOICES = 16  # most `n` a request may ask for
WAIT_GAPS = 4  # a batch waits for late requests at most this many --batch-wait-ms in all


class BadRequest(ValueError):
    """A request this server cannot answer as sent (a 400 reply with this message)."""


def message_text(content: Any) -> str:
    """A message's content: a string, or OpenAI's list of parts (the text parts, joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    raise BadRequest(f"a message's content must be a string or a list of text parts, not {type(content).__name__}")


def read_messages(body: dict) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("expected 'messages': a non-empty list of {role, content}")
    read = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise BadRequest("every message needs a role of system, user or assistant")
        read.append({"role": message["role"], "content": message_text(message.get("content"))})
    return read


def split_messages(messages: list[dict]) -> ChatRequest:
    """System messages become the system text; user and assistant turns are joined in order (for a
    model that has no chat template, or a run trained on a plain template)."""
    system = "\n".join(m.get("content") or "" for m in messages if m.get("role") == "system") or None
    turns = [m.get("content") or "" for m in messages if m.get("role") != "system"]
    return ChatRequest(user="\n\n".join(turns), system=system)


def chat_prompt(generator: LocalGenerator, messages: list[dict[str, str]]) -> str:
    """The prompt text of a chat request: every turn through the tokenizer's chat template, or the
    plain rendering a run trained on a plain template (or a model without a chat template) reads."""
    from medtune.data.templates import apply_chat_template

    trained = generator.prompt
    if (trained is not None and not trained.chat) or not getattr(generator.tokenizer, "chat_template", None):
        return generator.render(split_messages(messages))
    system = trained.system if trained is not None else None
    system = generator.cfg.system_prompt or system
    if system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    return apply_chat_template(generator.tokenizer, messages)


def number(
    body: dict,
    key: str,
    kind: type,
    default: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> Any:
    """body[key] as `kind` within bounds (None or absent: `default`); BadRequest otherwise."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise BadRequest(f"'{key}' must be a number{' (a whole one)' if kind is int else ''}, not {value!r}")
    value = kind(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise BadRequest(f"'{key}'={value} must be {'above' if low_open else 'at least'} {low}")
    if high is not None and value > high:
        raise BadRequest(f"'{key}'={value} must be at most {high}")
    return value


def read_stops(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise BadRequest("'stop' must be a string or a list of strings")
    return tuple(s for s in stops if s)


@dataclass(frozen=True)
class Decoding:
    """The settings that decide a generation; requests with equal settings share a batch."""

    max_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    repetition_penalty: float = 1.0
    seed: Optional[int] = None
    stop_ids: tuple[int, ...] = ()

    @classmethod
    def of(cls, body: dict, default_max_tokens: int, stop_ids: list[int]) -> Decoding:
        temperature = number(body, "temperature", float, 0.0, low=0.0)
        top_p = number(body, "top_p", float, None, low=0.0, high=1.0, low_open=True)
        top_k = number(body, "top_k", int, None)
        return cls(
            max_tokens=number(body, "max_tokens", int, default_max_tokens, low=1),
            temperature=temperature,
            top_p=top_p if temperature > 0 and top_p not in (None, 1.0) else None,
            top_k=top_k if temperature > 0 and top_k not in (None, 0, -1) else None,
            repetition_penalty=number(body, "repetition_penalty", float, 1.0, low=0.0, low_open=True),
            seed=number(body, "seed", int, None),
            stop_ids=tuple(stop_ids),
        )

    def settings(self, batch_size: int):
        """These settings as the EvalConfig `generate_responses` reads."""
        from medtune.config.exam_schema import EvalConfig

        return EvalConfig(
            batch_size=batch_size,
            max_new_tokens=self.max_tokens,
            do_sample=self.temperature > 0,
            temperature=self.temperature if self.temperature > 0 else 1.0,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
        )


@dataclass
class Job:
    """One request's prompts (n copies each), waiting for the worker."""

    prompts: list[str]
    decoding: Decoding
    done: threading.Event = field(default_factory=threading.Event)
    texts: list[str] = field(default_factory=list)
    error: Optional[str] = None


class BatchWorker:
    """One thread owns the model: it takes the requests waiting (up to `max_batch`; while others keep
    arriving less than `wait_s` apart, it waits for them, at most WAIT_GAPS * `wait_s` in all), and
    runs one batched `generate_responses` per group of requests with equal decoding settings.
    Handler threads block in `submit` until theirs is done."""

    def __init__(self, model, tokenizer, max_batch: int = 8, wait_s: float = 0.005):
        self.model, self.tokenizer, self.max_batch, self.wait_s = model, tokenizer, max(1, max_batch), wait_s
        self.jobs: queue.Queue[Optional[Job]] = queue.Queue()
        self.counts = {"requests": 0, "batches": 0, "prompts": 0, "largest_batch": 0}
        self.thread = threading.Thread(target=self.run, name="medtune-batcher", daemon=True)
        self.thread.start()

    def submit(self, prompts: list[str], decoding: Decoding) -> list[str]:
        job = Job(prompts, decoding)
        self.jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise RuntimeError(job.error)
        return job.texts

    def take(self) -> Optional[list[Job]]:
        """The next jobs to run together (None: the worker is closing)."""
        first = self.jobs.get()
        if first is None:
            return None
        taken, deadline = [first], time.monotonic() + WAIT_GAPS * self.wait_s
        while len(taken) < self.max_batch:
            timeout = min(self.wait_s, deadline - time.monotonic())
            try:
                job = self.jobs.get(timeout=timeout) if timeout > 0 else self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self.jobs.put(None)  # close after this batch
                break
            taken.append(job)
        return taken

    def run(self) -> None:
        while (jobs := self.take()) is not None:
            groups: dict[Decoding, list[Job]] = {}
            for job in jobs:
                groups.setdefault(job.decoding, []).append(job)
            for decoding, group in groups.items():
                self.run_group(decoding, group)

    def run_group(self, decoding: Decoding, group: list[Job]) -> None:
        import torch

        from medtune.llm.generation import generate_responses

        prompts = [p for job in group for p in job.prompts]
        texts = [""] * len(prompts)

        def keep(indices: list[int], outputs: list[str]) -> None:
            for index, text in zip(indices, outputs):
                texts[index] = text

        try:
            if decoding.seed is not None:
                torch.manual_seed(decoding.seed)
            max_positions = getattr(self.model.config, "max_position_embeddings", 4096)
            generate_responses(
                self.model,
                self.tokenizer,
                prompts,
                decoding.settings(len(prompts)),
                max_positions,
                keep,
                progress=False,
                stop_ids=list(decoding.stop_ids),
            )
        except Exception as error:  # the request fails (a 500), the server stays up
            for job in group:
                job.error = f"generation failed: {error.__class__.__name__}: {error}"
                job.done.set()
            return
        self.counts["requests"] += len(group)
        self.counts["batches"] += 1
        self.counts["prompts"] += len(prompts)
        self.counts["largest_batch"] = max(self.counts["largest_batch"], len(prompts))
        start = 0
        for job in group:
            job.texts = texts[start : start + len(job.prompts)]
            start += len(job.prompts)
            job.done.set()

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=5)


def cut_at_stops(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first of `stops` (the stop itself excluded), and whether one was found."""
    positions = [p for p in (text.find(s) for s in stops) if p >= 0]
    return (text[: min(positions)], True) if positions else (text, False)


class Completions:
    """Turns OpenAI-shaped request bodies into prompts for the worker, and its texts into replies."""

    def __init__(self, generator: LocalGenerator, worker: BatchWorker, model_name: str, default_max_tokens: int):
        from medtune.data.templates import stop_token_ids

        self.generator, self.worker, self.model_name = generator, worker, model_name
        self.default_max_tokens = default_max_tokens
        self.chat_stop_ids = generator.stop_ids()
        self.text_stop_ids = stop_token_ids(generator.tokenizer, generator.prompt)

    def count(self, text: str, special: bool = False) -> int:
        from medtune.data.templates import encode_prompt

        if special:
            return len(encode_prompt(self.generator.tokenizer, text))
        return len(self.generator.tokenizer(text, add_special_tokens=False)["input_ids"])

    def answer(self, body: dict, chat: bool) -> dict:
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object")
        if chat:
            prompts = [chat_prompt(self.generator, read_messages(body))]
        else:
            given = body.get("prompt")
            prompts = [given] if isinstance(given, str) else given
            if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
                raise BadRequest("expected 'prompt': a string or a non-empty list of strings")
        n = number(body, "n", int, 1, low=1, high=MAX_CHOICES)
        stops = read_stops(body)
        decoding = Decoding.of(body, self.default_max_tokens, self.chat_stop_ids if chat else self.text_stop_ids)
        texts = self.worker.submit([p for p in prompts for _ in range(n)], decoding)
        choices, completion_tokens = [], 0
        for index, text in enumerate(texts):
            text, stopped = cut_at_stops(text, stops)
            tokens = self.count(text)
            completion_tokens += tokens
            reason = "length" if tokens >= decoding.max_tokens and not stopped else "stop"
            if chat:
                choices.append(
                    {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
                )
            else:
                choices.append({"index": index, "text": text, "logprobs": None, "finish_reason": reason})
        prompt_tokens = sum(self.count(p, special=True) for p in prompts)
        return {
            "id": f"medtune-{time.time_ns()}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


CHAT_ROUTES = ("/v1/chat/completions", "/chat/completions")
TEXT_ROUTES = ("/v1/completions", "/completions")


def make_handler(completions: Completions):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a client's connection serves many requests

        def log_message(self, format, *args):  # noqa: A002  (quiet: the caller has its own progress)
            pass

        def reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def refuse(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
            self.reply(status, {"error": {"message": message, "type": kind}})

        def do_GET(self):
            path = self.path.rstrip("/")
            if path in ("/v1/models", "/models"):
                self.reply(200, {"object": "list", "data": [{"id": completions.model_name, "object": "model"}]})
            elif path in ("/stats", "/v1/stats"):
                self.reply(200, dict(completions.worker.counts))
            else:
                self.refuse(404, f"no route {self.path}")

        def do_POST(self):
            path = self.path.rstrip("/")
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            if path not in CHAT_ROUTES + TEXT_ROUTES:
                self.refuse(404, f"no route {self.path}; use /v1/chat/completions or /v1/completions")
                return
            try:
                body = json.loads(raw or b"{}")
                self.reply(200, completions.answer(body, chat=path in CHAT_ROUTES))
            except (BadRequest, ValueError) as error:
                self.refuse(400, f"bad request: {error}")
            except RuntimeError as error:
                self.refuse(500, str(error), "server_error")

    return Handler


def model_config(name: str, conf_dir: Path):
    """The ModelConfig of the model option `name` (conf/model/<name>.yaml), as evaluate.py composes it."""
    from omegaconf import OmegaConf

    from medtune.config.schema import ModelConfig
    from medtune.errors import ConfigError

    path = Path(conf_dir) / "model" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (Path(conf_dir) / "model").glob("*.yaml"))
        raise ConfigError(
            [
                f"--model {name}: there is no {path}; pick one of {', '.join(known) or '(none found)'}, "
                "or point --conf-dir at the repository's conf/ folder, or use --model-path <checkpoint>."
            ]
        )
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path)))


def load_generator(args) -> LocalGenerator:
    from medtune.llm.backend import make_generator
    from medtune.quiet import quiet_third_party

    quiet_third_party(cpu_only=True)
    cfg = GeneratorConfig(run=args.run, max_new_tokens=args.max_new_tokens, batch_size=1)
    if args.run:
        return make_generator(cfg)
    if getattr(args, "model", None):
        return make_generator(cfg, model_config(args.model, args.conf_dir), cache_dir=args.cache_dir)
    from medtune.config.schema import DType, ModelConfig

    return make_generator(cfg, ModelConfig(name=args.model_path, path=args.model_path, dtype=DType.float32))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m medtune.llm.server", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a model option of conf/model/, e.g. smollm2_135m (resolved like model=<name>)")
    source.add_argument("--run", help="a train.py run dir: its base model with its adapter")
    source.add_argument("--model-path", help="a local checkpoint directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="default when a request gives no max_tokens")
    parser.add_argument("--max-batch", type=int, default=8, help="most requests answered in one batched generation")
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        help=f"a batch waits this long for one more request (at most {WAIT_GAPS} times in all)",
    )
    parser.add_argument("--cache-dir", default="outputs/cache", help="with --model: where converted weights are cached")
    parser.add_argument("--conf-dir", type=Path, default=CONF_DIR, help="with --model: the folder that holds model/")
    return parser


def main(argv: list[str] | None = None) -> None:
    from medtune.errors import MedtuneError

    args = build_parser().parse_args(argv)
    try:
        generator = load_generator(args)
    except MedtuneError as error:
        sys.exit(f"medtune server: {error}")
    name = args.model or args.run or args.model_path
    worker = BatchWorker(generator.model, generator.tokenizer, args.max_batch, args.batch_wait_ms / 1000)
    server = ThreadingHTTPServer(
        (args.host, args.port), make_handler(Completions(generator, worker, name, args.max_new_tokens))
    )
    server.daemon_threads = True
    print(f"medtune server: http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        worker.close()


if __name__ == "__main__":
    sys.exit(main())
