"""A scripted OpenAI-compatible chat server for tests: stands in for a hosted model we cannot run here
(GPT-4 as a judge, ChatGPT as a QA generator). medtune's real client talks to it over HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class ScriptedChatServer:
    """Answers `POST /v1/chat/completions` with `reply(<last message's text>)` on a free port; after
    `fail_after` answers it replies 503 to every request (a provider going down). `calls` counts requests."""

    def __init__(self, reply: Callable[[str], str], fail_after: int | None = None):
        self.reply, self.fail_after, self.calls, self.lock = reply, fail_after, 0, threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.calls += 1
                    failing = outer.fail_after is not None and outer.calls > outer.fail_after
                if failing:
                    status, payload = 503, {"error": {"message": "overloaded"}}
                else:
                    text = outer.reply(body["messages"][-1]["content"])
                    status, payload = 200, {"choices": [{"message": {"role": "assistant", "content": text}}]}
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "ScriptedChatServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
