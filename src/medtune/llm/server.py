"""A minimal OpenAI-compatible server for a local model: `POST /v1/chat/completions`, `GET /v1/models`.

    python -m medtune.llm.server --run outputs/train/runs/<stamp>          # a trained run (base + adapter)
    python -m medtune.llm.server --model-path /models/llama-2-7b --port 8000

It lets a judge or a QA generator reach a model through the same endpoint code as a hosted one, and
lets tests start a real server. Requests are answered one at a time (one model, one lock). It
binds 127.0.0.1 by default and has no authentication: keep it on a trusted host.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from medtune.config.generator_schema import GeneratorConfig
from medtune.llm.backend import ChatRequest, LocalGenerator


def split_messages(messages: list[dict]) -> ChatRequest:
    """System messages become the system text; user and assistant turns are joined in order."""
    system = "\n".join(m.get("content") or "" for m in messages if m.get("role") == "system") or None
    turns = [m.get("content") or "" for m in messages if m.get("role") != "system"]
    return ChatRequest(user="\n\n".join(turns), system=system)


def make_handler(generator: LocalGenerator, model_name: str):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002  (quiet: the caller has its own progress)
            pass

        def reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self.reply(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            else:
                self.reply(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self.reply(404, {"error": {"message": f"no route {self.path}; use /v1/chat/completions"}})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                request = split_messages(body["messages"])
            except (ValueError, KeyError, TypeError) as error:
                self.reply(400, {"error": {"message": f"expected a JSON body with 'messages' ({error})"}})
                return
            with lock:
                cfg = generator.cfg
                saved = (cfg.max_new_tokens, cfg.temperature)
                cfg.max_new_tokens = int(body.get("max_tokens") or cfg.max_new_tokens)
                cfg.temperature = float(body.get("temperature", cfg.temperature) or 0.0)
                try:
                    text = generator.generate([request], progress=False)[0]
                finally:
                    cfg.max_new_tokens, cfg.temperature = saved
            self.reply(200, {
                "id": f"medtune-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
                "model": model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            })

    return Handler


def load_generator(args) -> LocalGenerator:
    from medtune.llm.backend import make_generator
    from medtune.quiet import quiet_third_party

    quiet_third_party(cpu_only=True)
    cfg = GeneratorConfig(run=args.run, max_new_tokens=args.max_new_tokens, batch_size=1)
    if args.run:
        return make_generator(cfg)
    from medtune.config.schema import DType, ModelConfig

    return make_generator(cfg, ModelConfig(name=args.model_path, path=args.model_path, dtype=DType.float32))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medtune.llm.server", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a train.py run dir: its base model with its adapter")
    source.add_argument("--model-path", help="a local checkpoint directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="default when a request gives no max_tokens")
    args = parser.parse_args(argv)
    generator = load_generator(args)
    name = args.run or args.model_path
    server = ThreadingHTTPServer((args.host, args.port), make_handler(generator, name))
    print(f"medtune server: http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
