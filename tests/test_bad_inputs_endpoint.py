"""A catalogue of bad endpoints: servers that trickle, flood, answer in HTML or in odd shapes, rate
limit, echo the key back; and a judge that never follows the format. Each case checks the message.

The client under test is medtune's (`EndpointBackend` for evaluate.py, `EndpointGenerator` for
the judge and QA generation, both over `medtune.llm.http.post_json`); the servers are real HTTP
servers in a thread (`FaultServer` below, `ScriptedChatServer`), never mocks. Hang guards are the
servers' own work counts (bytes sent), not wall-clock bounds.

Cases: a body trickled a byte at a time and headers trickled a line at a time (cut at the deadline);
a body over the size cap, with and without Content-Length (reading stops); a 200 that is an HTML
page, or JSON that is not an OpenAI answer (named, quoted, no timeout advice); content as a list of
parts (read); content of any other shape (an EndpointError); null and empty answers (counted,
warned, scored invalid); 429 with Retry-After (a line per wait, capped; the final message says to
lower the concurrency); a server echoing the Authorization header in a 401 / 500 body (masked in
the message, failure.json and the W&B files); every judgment unparsable (exit 2, no table) or some
(counted and warned).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest

from chat_server import ScriptedChatServer
from conftest import cli
from medtune.config.exam_schema import EndpointConfig, EvalConfig
from medtune.config.generator_schema import GeneratorConfig, GeneratorKind
from medtune.config.schema import PromptConfig
from medtune.exam.prompting import exam_prompt
from medtune.exam.scoring import score_response
from medtune.llm import http, openai_api
from medtune.llm.endpoint import EndpointGenerator
from medtune.llm.protocol import ChatRequest, EndpointError
from medtune.secrets import MASK, mask, register
from medtune.vocabulary import ExamQuestion, Status

CHAT = PromptConfig(name="chat", chat=True, template="{instruction}\n\n{input}", answer_marker="Answer:")
QUESTIONS = [
    ExamQuestion(
        qid=f"q{i}", question=f"Which organ filters blood, case {i}?", choices=("liver", "kidney"), answers=("b",)
    )
    for i in range(3)
]
PROMPTS = [exam_prompt(CHAT, q, []) for q in QUESTIONS]
SETTINGS = EvalConfig(max_new_tokens=16)


class FaultServer:
    """An HTTP server in a thread whose every POST is answered by `behaviour(handler)`; it counts the
    requests (`calls`) and the body bytes it managed to send (`sent`), and keeps the headers it got."""

    def __init__(self, behaviour: Callable[[BaseHTTPRequestHandler], None]):
        self.calls, self.sent, self.headers, self.lock = 0, 0, [], threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.calls += 1
                    outer.headers.append(dict(self.headers))
                try:
                    behaviour(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: what it was sent is counted

            def send(self, data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()
                with outer.lock:
                    outer.sent += len(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def reply(handler, status: int, body: bytes, headers: dict | None = None) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.send(body)


def chat_answer(content) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


def backend(url: str, **keys):
    from medtune.llm.endpoint import EndpointBackend

    settings = {"backoff_s": 0.01, "max_retries": 0, "timeout_s": 5.0, "concurrency": 1, **keys}
    return EndpointBackend(EndpointConfig(url=url, **settings), SETTINGS, CHAT)


def answers(backend_, prompts=PROMPTS[:1]) -> dict[int, str]:
    texts: dict[int, str] = {}
    backend_.generate(prompts, lambda indices, outputs: texts.update(zip(indices, outputs)), progress=False)
    return texts


def failure_of(backend_, prompts=PROMPTS[:1]) -> str:
    with pytest.raises(EndpointError) as error:
        answers(backend_, prompts)
    return str(error.value)


# -- 2c: a deadline for the whole request, a cap on the body -------------------------------------------


def trickled_body(handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "2000")
    handler.end_headers()
    for _ in range(2000):
        handler.send(b" ")
        time.sleep(0.02)


def trickled_headers(handler) -> None:
    handler.send(b"HTTP/1.1 200 OK\r\n")
    for _ in range(2000):
        handler.send(b"X-Slow: a\r\n")
        time.sleep(0.02)


@pytest.mark.parametrize("behaviour", [trickled_body, trickled_headers], ids=["body", "headers"])
def test_a_trickling_server_is_cut_off_at_the_deadline(behaviour):
    with FaultServer(behaviour) as server:
        message = failure_of(backend(server.url, timeout_s=0.5, max_retries=1))
        sent = server.sent
    assert "no complete answer within 0.5 s (timeout_s=0.5) (after 2 attempt(s))" in message, message
    assert "raise eval.endpoint.timeout_s or check the server" in message
    assert server.calls == 2 and sent < 2 * 2000 * 0.5  # each attempt cut well before the server's end


def flood(declare_length: bool):
    def behaviour(handler) -> None:
        handler.send_response(200)
        if declare_length:
            handler.send_header("Content-Length", str(10 * 2**20))
        handler.end_headers()
        for _ in range(160):  # 10 MiB, 64 KiB at a time
            handler.send(b"x" * 65536)

    return behaviour


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "no-length"])
def test_a_body_over_the_cap_is_not_read_further(declare_length, monkeypatch):
    monkeypatch.setattr(http, "MAX_BODY_BYTES", 2**20)  # 1 MiB here; 32 MiB by default
    with FaultServer(flood(declare_length)) as server:
        message = failure_of(backend(server.url, max_retries=2))
    assert "an answer body over 1048576 bytes" in message and "medtune stopped reading it" in message, message
    assert server.calls == 1  # not retried: the same server floods again
    assert "OpenAI-compatible server" in message and "timeout" not in message


# -- 4: answers named for what they are -----------------------------------------------------------------

HTML = b"<html><head><title>Sign in</title></head><body>Please sign in to continue</body></html>"


@pytest.mark.parametrize(
    "body, problem",
    [
        (
            HTML,
            r"HTTP 200 with a body that is not JSON, so not a chat completion .* it begins: '<html><head><title>Sign",
        ),
        (
            json.dumps({"error": {"message": "no such model"}}).encode(),
            r"HTTP 200 with JSON that is not a chat completion .*no 'choices'.* it begins: '\{\"error\"",
        ),
        (chat_answer({"text": "b"}), r"choices\[0\]\.message\.content is a dict"),
        (chat_answer(7), r"choices\[0\]\.message\.content is a int"),
        (chat_answer([{"type": "text", "text": 3}]), r"choices\[0\]\.message\.content\[0\] is .* not a text part"),
        (json.dumps({"choices": []}).encode(), r"'choices' is \[\], not a list with one choice"),
        (json.dumps([1, 2]).encode(), r"the JSON is a list, not an object with 'choices'"),
    ],
    ids=["html", "error-object", "content-dict", "content-int", "bad-part", "no-choice", "json-list"],
)
def test_a_200_that_is_not_an_openai_answer_says_so_and_quotes_it(body, problem):
    import re

    with FaultServer(lambda handler: reply(handler, 200, body)) as server:
        message = failure_of(backend(server.url, max_retries=2))
    assert re.search(problem, message), message
    assert server.calls == 1  # no retry mends a shape
    assert "check that eval.endpoint.url is the API root of an OpenAI-compatible server" in message
    assert "timeout" not in message


def test_content_given_as_a_list_of_parts_is_read():
    parts = [{"type": "text", "text": "The kidney.\n"}, {"type": "image_url", "image_url": {}}, "Answer: b"]
    with FaultServer(lambda handler: reply(handler, 200, chat_answer(parts))) as server:
        assert answers(backend(server.url)) == {0: "The kidney.\nAnswer: b"}


def test_null_and_empty_answers_are_counted_warned_and_scored_invalid(capsys):
    contents = iter([None, "", "  \n", "Answer: b"])
    with FaultServer(lambda handler: reply(handler, 200, chat_answer(next(contents)))) as server:
        texts = answers(backend(server.url), [exam_prompt(CHAT, q, []) for q in QUESTIONS + QUESTIONS[:1]])
    assert texts == {0: "", 1: "", 2: "", 3: "Answer: b"}  # concurrency 1: asked in order
    err = capsys.readouterr().err
    assert "medtune: warning: 3 of 4 answers from eval.endpoint.url=" in err and "they count as invalid answers" in err
    assert score_response(QUESTIONS[0], texts[0]).status == Status.invalid


def test_the_judge_client_reads_parts_and_counts_empty_answers(capsys):
    contents = iter([[{"type": "text", "text": "8 6"}], None])
    with FaultServer(lambda handler: reply(handler, 200, chat_answer(next(contents)))) as server:
        generator = EndpointGenerator(
            GeneratorConfig(kind=GeneratorKind.endpoint, url=server.url, concurrency=1, max_retries=0), "judge.judge"
        )
        texts = generator.generate([ChatRequest("q1"), ChatRequest("q2")], progress=False)
    assert texts == ["8 6", ""]
    assert "medtune: warning: 1 of 2 answers from judge.judge.url=" in capsys.readouterr().err
    with FaultServer(lambda handler: reply(handler, 200, HTML)) as server:
        generator = EndpointGenerator(GeneratorConfig(kind=GeneratorKind.endpoint, url=server.url), "judge.judge")
        with pytest.raises(EndpointError, match=r"judge.judge.url=.*not JSON.*'<html>.*check that judge.judge.url"):
            generator.generate([ChatRequest("q1")], progress=False)


def rate_limited(times: int, retry_after: str | None):
    count = iter(range(10**6))

    def behaviour(handler) -> None:
        if next(count) < times:
            reply(handler, 429, b'{"error": "slow down"}', {"Retry-After": retry_after} if retry_after else {})
        else:
            reply(handler, 200, chat_answer("Answer: b"))

    return behaviour


def test_429_waits_on_retry_after_saying_so_then_answers(capsys):
    with FaultServer(rate_limited(1, "0.2")) as server:
        assert answers(backend(server.url, max_retries=2)) == {0: "Answer: b"}
    assert server.calls == 2
    err = capsys.readouterr().err
    assert "rate limited (HTTP 429); waiting 0.2 s (as the server's Retry-After asks), then retry 1 of 2." in err


def test_429_to_the_end_says_to_lower_the_concurrency(capsys):
    with FaultServer(rate_limited(99, None)) as server:
        message = failure_of(backend(server.url, max_retries=1, concurrency=2))
    assert server.calls == 2 and "HTTP 429 (rate limited)" in message, message
    assert "rate limited: lower eval.endpoint.concurrency" in message
    assert capsys.readouterr().err.count("rate limited (HTTP 429); waiting") == 1  # one line per wait


def test_a_long_retry_after_is_capped_and_the_line_says_so():
    lines: list[str] = []
    with FaultServer(rate_limited(1, "3600")) as server:
        text = http.post_json(
            server.url + "/chat/completions",
            {},
            openai_api.chat_message_text,
            retry=http.RetryPolicy(max_retries=3, max_backoff_s=0.2),
            notify=lines.append,
        )
    assert text == "Answer: b" and server.calls == 2
    assert lines == [
        f"endpoint {server.url}/chat/completions: rate limited (HTTP 429); waiting 0.2 s (the server's Retry-After "
        "asks 3600 s; medtune waits at most 0.2 s), then retry 1 of 3."
    ]


def test_a_retry_after_given_as_a_date_is_read():
    import email.utils
    import urllib.error
    from email.message import Message

    headers = Message()
    headers["Retry-After"] = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = http.retry_after_seconds(urllib.error.HTTPError("u", 429, "", headers, None))
    assert 20 < seconds <= 30


# -- 3: secrets never echo ------------------------------------------------------------------------------

KEY_VALUE = "sk-probe-7f3a9c1e5b2d8f4a6c0e"
TOKEN_VALUE = "tok-probe-1b2c3d4e5f6a7b8c"


def echo_authorization(status: int):
    def behaviour(handler) -> None:
        body = json.dumps({"error": {"message": f"invalid credentials: {handler.headers['Authorization']}"}})
        reply(handler, status, body.encode())

    return behaviour


@pytest.mark.parametrize("status", [401, 500])
def test_a_key_echoed_in_an_error_body_is_masked(status, monkeypatch):
    monkeypatch.setenv("MEDTUNE_PROBE_KEY", KEY_VALUE)
    with FaultServer(echo_authorization(status)) as server:
        message = failure_of(backend(server.url, api_key_env="MEDTUNE_PROBE_KEY"))
        assert server.headers[0]["Authorization"] == f"Bearer {KEY_VALUE}"  # the server did get, and echo, the key
    assert f"invalid credentials: Bearer {MASK}" in message, message
    assert KEY_VALUE not in message and KEY_VALUE[:12] not in message


def test_mask_hides_registered_keys_and_secret_like_variables(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_TOKEN", TOKEN_VALUE)
    monkeypatch.setenv("SHORT_KEY", "abc")  # too short to mask: "abc" is in ordinary words
    register("registered-value-42")
    text = f"a {TOKEN_VALUE} b registered-value-42 c abc"
    assert mask(text) == f"a {MASK} b {MASK} c abc"


@pytest.mark.slow
def test_evaluate_with_an_echoing_server_leaks_no_key_to_stderr_failure_json_or_wandb(tmp_path):
    """A real evaluate.py run, W&B offline, against a server that echoes the Authorization header in a
    500: the key named by api_key_env and a *_TOKEN variable a config names are written nowhere."""
    run_dir = tmp_path / "run"
    with FaultServer(echo_authorization(500)) as server:
        result = cli(
            "evaluate.py",
            "eval=endpoint",
            "prompt=chat",
            "exam=sample",
            f"eval.endpoint.url={server.url}",
            "eval.endpoint.api_key_env=MEDTUNE_PROBE_API_KEY",
            "eval.endpoint.max_retries=0",
            "logger=wandb",
            "logger.mode=offline",
            "logger.tags=[canary-visible-31337,${oc.env:MEDTUNE_PROBE_TOKEN}]",
            f"paths.output_root={tmp_path}",
            f"hydra.run.dir={run_dir}",
            env={"MEDTUNE_PROBE_API_KEY": KEY_VALUE, "MEDTUNE_PROBE_TOKEN": TOKEN_VALUE},
            timeout=300,
        )
        assert server.calls >= 1
    assert result.returncode == 2, result.stderr[-3000:]
    assert "HTTP 500" in result.stderr and f"invalid credentials: Bearer {MASK}" in result.stderr, result.stderr[-3000:]
    failure = json.loads((run_dir / "failure.json").read_text())
    assert failure["error_type"] == "EndpointError" and f"Bearer {MASK}" in failure["message"]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    wandb_files = [p for p in files if "wandb" in p.parts and p.suffix == ".wandb"]
    assert wandb_files and any(b"canary-visible-31337" in p.read_bytes() for p in wandb_files)  # the search sees tags
    for secret in (KEY_VALUE, TOKEN_VALUE):
        assert secret not in result.stdout + result.stderr
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"{secret} leaked into {path}"


# -- 8: a judge whose judgments cannot be read -------------------------------------------------------------


def answer_files(tmp_path: Path, questions) -> list[str]:
    args = []
    for side in ("a", "b"):
        path = tmp_path / f"answers_{side}.jsonl"
        path.write_text("".join(json.dumps({"id": q.qid, "answer": f"{side} says"}) + "\n" for q in questions))
        args.append(f"judge.{side}.answers={path}")
    return args


def judge_overrides(tmp_path: Path, url: str, out: Path) -> list[str]:
    from medtune.judge.questions import read_questions

    questions = read_questions(None)[:3]
    return [
        *answer_files(tmp_path, questions),
        "judge.max_questions=3",
        f"judge.judge.url={url}",
        "judge.judge.max_retries=0",
        f"judge.output_dir={out}",
        "logger=none",
    ]


def test_a_judge_that_never_gives_scores_fails_with_its_raw_outputs_kept(run_judge, tmp_path):
    from medtune.judge.judging import UnreadableJudge

    out = tmp_path / "judge"
    with ScriptedChatServer(lambda _: "Both assistants did well.") as server:
        with pytest.raises(UnreadableJudge) as error:
            run_judge(judge_overrides(tmp_path, server.url, out))
    message = str(error.value)
    assert message.startswith(
        f"all 6 judgments were unparsable: the judge model did not follow the format; see {out / 'judgments.jsonl'} "
        "for its raw outputs (reasons: no pair of scores found x6; the first one reads 'Both assistants did well.')"
    ), message
    rows = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert (
        len(rows) == 6
        and {r["status"] for r in rows} == {"unparsable"}
        and rows[0]["raw"] == "Both assistants did well."
    )
    assert not (out / "metrics.json").exists() and not (out / "judge_table.md").exists()


def test_a_judge_partly_unparsable_is_counted_and_warned(run_judge, tmp_path, capsys):
    replies = iter(["8 6", "I cannot say."] * 3)
    out = tmp_path / "judge"
    with ScriptedChatServer(lambda _: next(replies)) as server:
        metrics = run_judge([*judge_overrides(tmp_path, server.url, out), "judge.judge.concurrency=1"])
    assert metrics["unparsable_judgments"] == 3 and metrics["judgments"] == 6
    err = capsys.readouterr().err
    assert "medtune: warning: 3 of 6 judgments were unparsable and are left out of the scores" in err
    assert str(out / "judgments.jsonl") in err


def test_judge_py_exits_2_when_no_judgment_can_be_read(tmp_path):
    out = tmp_path / "judge"
    with ScriptedChatServer(lambda _: "No comment.") as server:
        result = cli("judge.py", *judge_overrides(tmp_path, server.url, out), f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "medtune: all 6 judgments were unparsable: the judge model did not follow the format" in result.stderr
    assert "Traceback" not in result.stderr and (out / "judgments.jsonl").is_file()


def test_a_url_without_a_scheme_is_a_config_error_not_a_traceback():
    from medtune.errors import ConfigError

    with pytest.raises(ConfigError, match=r"eval.endpoint.url=127.0.0.1:8000/v1 is not an http:// or https:// URL"):
        backend("127.0.0.1:8000/v1")
    with pytest.raises(ConfigError, match=r"judge.judge.url=localhost/v1 is not an http:// or https:// URL"):
        EndpointGenerator(GeneratorConfig(kind=GeneratorKind.endpoint, url="localhost/v1"), "judge.judge")
