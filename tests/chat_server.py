"""A scripted OpenAI-compatible server for tests: stands in for a hosted model we cannot run here
(GPT-4 as a judge, ChatGPT as a QA generator) or for a server having a bad day (overloaded, slow,
refusing). medtune's real clients talk to it over HTTP."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Sequence


class ScriptedChatServer:
    """Answers `POST /v1/chat/completions` with `reply(<last message's text>)` and `POST /v1/completions`
    with `reply(<prompt>)`, on a free port.

    `failures` are the statuses of the first requests (e.g. [503, 503]: down twice, then fine), sent
    with a `Retry-After: <retry_after>` header when given; after `fail_after` answers every request
    gets 503 (a provider going down). `delay_s` holds every answer back that long (a slow server).
    `calls` counts requests; `requests` keeps (path, body, headers) of each."""

    def __init__(
        self,
        reply: Callable[[str], str],
        fail_after: int | None = None,
        failures: Sequence[int] = (),
        retry_after: str | None = None,
        delay_s: float = 0.0,
    ):
        self.reply, self.fail_after, self.calls, self.lock = reply, fail_after, 0, threading.Lock()
        self.failures, self.retry_after, self.delay_s = list(failures), retry_after, delay_s
        self.requests: list[tuple[str, dict, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.calls += 1
                    outer.requests.append((self.path, body, dict(self.headers)))
                    scripted = outer.failures[outer.calls - 1] if outer.calls <= len(outer.failures) else None
                    failing = outer.fail_after is not None and outer.calls > outer.fail_after
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                headers = {}
                if scripted is not None or failing:
                    status = scripted or 503
                    payload = {"error": {"message": "overloaded" if status >= 500 else "refused"}}
                    if outer.retry_after is not None:
                        headers["Retry-After"] = outer.retry_after
                elif "messages" in body:
                    text = outer.reply(body["messages"][-1]["content"])
                    status, payload = 200, {"choices": [{"message": {"role": "assistant", "content": text}}]}
                else:
                    status, payload = 200, {"choices": [{"text": outer.reply(body["prompt"])}]}
                data = json.dumps(payload, ensure_ascii=False).encode()
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> ScriptedChatServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
