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
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from medtune.config.generator_schema import GeneratorConfig
from medtune.llm.access import make_generator
from medtune.llm.batching import WAIT_GAPS, BatchWorker
from medtune.llm.hf import LocalGenerator
from medtune.llm.server_requests import (
    MAX_CHOICES,
    BadRequest,
    Decoding,
    cut_at_stops,
    number,
    read_messages,
    read_stops,
    split_messages,
)

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"  # the repository's Hydra configs (editable install)


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
