"""medtune.jsonl_store: the one policy of every resumable JSON Lines file (a torn last line is dropped and
truncated away, any other bad line is an error naming file:line, other settings are refused, the finish is
atomic), then each place that keeps one resuming over a torn last line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from chat_server import ScriptedChatServer
from medtune.errors import ConfigError, DataError
from medtune.jsonl_store import (
    JsonlLineError,
    JsonlStore,
    RowStamp,
    SettingsChangedError,
    SettingsFile,
    read_jsonl,
    settings_fingerprint,
)

SETTINGS = {"model": "tiny", "decoding": {"temperature": 0.0, "max_new_tokens": 8}}


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def store_at(tmp_path: Path, reports: list[str] | None = None) -> JsonlStore:
    return JsonlStore(
        tmp_path / "rows.partial.jsonl",
        final=tmp_path / "rows.jsonl",
        settings_at=SettingsFile(tmp_path / "state.json"),
        report=reports.append if reports is not None else lambda message: None,
    )


# ------------------------------------------------------------------------------------------ torn last line


@pytest.mark.parametrize(
    "tail",
    [
        b'{"id": "q3", "answer": "cut he',  # killed mid-write
        '{"id": "q3", "answer": "高血圧"}'.encode()[:-4],  # cut inside a multi-byte character
        '{"id": "q3", "answer": "高血圧"}'.encode()[:-4] + b"\n",  # the same, not UTF-8 before its newline
        b'{"id": "q3", "answer": "whole"}',  # the row is there, its newline is not: not written yet
        b'{"id": "q3", "ans\n',  # a newline, but no JSON before it
    ],
)
def test_a_torn_last_line_is_dropped_reported_and_truncated_on_resume(tmp_path, tail):
    reports: list[str] = []
    store = store_at(tmp_path, reports)
    assert store.open(SETTINGS) == []
    store.append([{"id": "q1", "answer": "a"}, {"id": "q2", "answer": "b"}])
    with store.path.open("ab") as handle:
        handle.write(tail)

    assert read_jsonl(store.path).rows == [{"id": "q1", "answer": "a"}, {"id": "q2", "answer": "b"}]
    assert read_jsonl(store.path).torn.line == 3
    assert store.path.read_bytes().endswith(tail)  # reading changes nothing

    again = store_at(tmp_path, reports)
    assert [r["id"] for r in again.open(SETTINGS)] == ["q1", "q2"]
    size = len(tail.removesuffix(b"\n"))
    assert reports == [
        f"{store.path}:3: the last line ({size} bytes) was cut short by an interrupted write; it "
        "was removed, and that work is done again."
    ]
    assert lines(store.path) == ['{"id": "q1", "answer": "a"}', '{"id": "q2", "answer": "b"}']
    again.append([{"id": "q3", "answer": "c"}])  # the next append starts a clean line
    assert [r["id"] for r in read_jsonl(store.path).rows] == ["q1", "q2", "q3"] and read_jsonl(store.path).torn is None


def test_a_file_that_is_only_a_torn_line_resumes_empty(tmp_path):
    store = store_at(tmp_path)
    store.open(SETTINGS)
    store.path.write_bytes(b'{"id": "q1", "ans')
    assert store_at(tmp_path).open(SETTINGS) == [] and store.path.read_bytes() == b""


# ------------------------------------------------------------------------------------ a bad line elsewhere


@pytest.mark.parametrize(
    "bad, problem",
    [
        (b'{"id": "q2", "answer": "b"', r"not valid JSON \(Expecting ',' delimiter, column 27\)"),
        (b'\xff\xfe{"id": "q2"}', "not UTF-8 text"),
        (b'["q2", "b"]', "a JSON list, not an object"),
        (b'"q2"', "a JSON str, not an object"),
    ],
)
def test_a_bad_line_before_the_last_is_an_error_naming_file_and_line(tmp_path, bad, problem):
    store = store_at(tmp_path)
    store.open(SETTINGS)
    store.path.write_bytes(b'{"id": "q1"}\n\n' + bad + b'\n{"id": "q3"}\n')
    for read in (lambda: read_jsonl(store.path), lambda: store_at(tmp_path).open(SETTINGS)):
        with pytest.raises(JsonlLineError, match=rf"{re.escape(str(store.path))}:3: {problem}") as error:
            read()
        assert isinstance(error.value, DataError) and "delete that line" in str(error.value)
    assert store.path.read_bytes().endswith(b'{"id": "q3"}\n')  # nothing was truncated or rewritten


def test_a_complete_last_line_that_is_json_but_not_an_object_is_not_forgiven(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "q1"}\n[1, 2]\n')
    with pytest.raises(JsonlLineError, match=r"rows\.jsonl:2: a JSON list, not an object"):
        read_jsonl(path)


# ------------------------------------------------------------------------------------------------ settings


def test_a_resume_with_other_settings_is_refused_saying_what_changed(tmp_path):
    store = store_at(tmp_path)
    store.open(SETTINGS)
    store.append([{"id": "q1"}])
    state = json.loads((tmp_path / "state.json").read_text())
    assert state == {"settings": SETTINGS, "fingerprint": settings_fingerprint(SETTINGS)}

    other = {"model": "tiny", "decoding": {"temperature": 0.7, "max_new_tokens": 8}, "seed": 1}
    with pytest.raises(SettingsChangedError) as error:
        store_at(tmp_path).open(other, what="answers", fresh="delete rows.partial.jsonl to start over.", prefix="gen.")
    message = str(error.value)
    assert isinstance(error.value, ConfigError)
    assert (
        f"{tmp_path} holds answers with different settings (changed: gen.decoding.temperature: 0.0 -> 0.7; "
        "gen.seed: '(absent)' -> 1); delete rows.partial.jsonl to start over."
    ) in message
    assert json.loads((tmp_path / "state.json").read_text()) == state  # the refused run recorded nothing
    assert [r["id"] for r in store_at(tmp_path).open(SETTINGS)] == ["q1"]  # the same settings go on


def test_settings_compare_as_they_read_back_from_json(tmp_path):
    store = store_at(tmp_path)
    store.open({"layers": (1, 2), "path": Path("/data")})
    store.append([{"id": "q1"}])
    assert len(store_at(tmp_path).open({"layers": [1, 2], "path": "/data"})) == 1


def test_rows_without_a_record_of_their_settings_are_not_resumed(tmp_path):
    store = store_at(tmp_path)
    store.append([{"id": "q1"}])
    with pytest.raises(SettingsChangedError, match=r"holds rows but no state\.json recording the settings"):
        store.open(SETTINGS)


def test_a_sidecar_of_an_earlier_version_with_only_a_fingerprint_still_resumes(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"fingerprint": settings_fingerprint(SETTINGS)}))
    store = store_at(tmp_path)
    store.append([{"id": "q1"}])
    assert len(store.open(SETTINGS)) == 1
    assert json.loads((tmp_path / "state.json").read_text())["settings"] == SETTINGS
    (tmp_path / "state.json").write_text(json.dumps({"fingerprint": "0123456789abcdef"}))
    with pytest.raises(SettingsChangedError, match=r"changed: fingerprint '0123456789abcdef' -> "):
        store_at(tmp_path).open(SETTINGS)


def test_rows_stamped_with_another_fingerprint_are_refused(tmp_path):
    key = settings_fingerprint(SETTINGS)
    store = JsonlStore(tmp_path / "a.partial.jsonl", final=tmp_path / "a.jsonl", settings_at=RowStamp("key"))
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": "q1", "key": key}) + "\n")
    store.append([{"id": "q2", "key": key}])
    assert [r["id"] for r in store.open(SETTINGS, reuse_final=True)] == ["q1", "q2"]
    store.append([{"id": "q3", "key": "an-older-key"}])
    with pytest.raises(SettingsChangedError, match=rf"fingerprint an-older-key -> {key}\); start over"):
        store.open(SETTINGS, reuse_final=True, fresh="start over")


# -------------------------------------------------------------------------------------------------- finish


def test_finish_replaces_the_final_file_atomically_and_removes_the_appended_one(tmp_path):
    store = store_at(tmp_path)
    store.final.write_text('{"id": "old"}\n')
    store.open(SETTINGS)
    store.append([{"id": "q2"}, {"id": "q1"}])
    with store.final.open(encoding="utf-8") as reader:  # a reader that opened the old file before the finish
        store.finish([{"id": "q1", "answer": "高血圧"}, {"id": "q2"}])
        assert reader.read() == '{"id": "old"}\n'  # still whole: the new file was renamed over, not written into
    assert lines(store.final) == ['{"id": "q1", "answer": "高血圧"}', '{"id": "q2"}']
    assert not store.path.exists() and not list(tmp_path.glob(".rows.jsonl.*"))  # no temporary file left


# ------------------------------------------------------------------------- each place that keeps such a file


def cut_last_line(path: Path) -> int:
    """Cut the file's last line in half, as a kill mid-write would; returns the rows left whole."""
    whole = lines(path)
    path.write_text("\n".join(whole[:-1]) + "\n" + whole[-1][: len(whole[-1]) // 2], encoding="utf-8")
    return len(whole) - 1


def test_an_evaluation_resumes_over_a_torn_last_line(run_eval, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["eval=loglik", "logger=none", f"eval.output_dir={out}", "exam.max_questions=3"]
    run_eval(args, name="first")
    expected = (out / "predictions.jsonl").read_text(encoding="utf-8")
    partial = out / "predictions.partial.jsonl"
    shutil.move(out / "predictions.jsonl", partial)  # as if it had been killed before its last question
    (out / "metrics.json").unlink()
    assert cut_last_line(partial) == 2
    capsys.readouterr()
    run_eval(args, name="again")
    captured = capsys.readouterr()
    assert f"{partial}:3: the last line" in captured.err and "resuming: 2 questions already answered" in captured.out
    assert (out / "predictions.jsonl").read_text(encoding="utf-8") == expected and not partial.exists()


def test_the_evaluation_refuses_a_partial_file_damaged_before_its_last_line(tmp_path):
    from medtune.evaluation.task import PARTIAL, resume_rows

    resume_rows(tmp_path, SETTINGS)
    (tmp_path / PARTIAL).write_text('{"id": "q1"}\n{"id": "q2", "sta\n{"id": "q3"}\n')
    with pytest.raises(JsonlLineError, match=rf"{PARTIAL}:2: not valid JSON.*the question is answered again"):
        resume_rows(tmp_path, SETTINGS)


def test_judgments_resume_over_a_torn_last_line(tmp_path):
    from medtune.judge.judging import FINAL, PARTIAL, earlier_judgments

    settings = {"kind": "endpoint", "endpoint_model": "judge"}
    assert earlier_judgments(tmp_path, settings) == {}
    rows = [{"id": f"q{i}", "order": "ab", "answer_1": "x", "answer_2": "y", "raw": "8 6"} for i in range(3)]
    (tmp_path / FINAL).write_text(json.dumps(rows[0]) + "\n")  # an earlier, finished run's
    (tmp_path / PARTIAL).write_text(json.dumps(rows[1]) + "\n" + json.dumps(rows[2])[:20])
    assert set(earlier_judgments(tmp_path, settings)) == {("q0", "ab"), ("q1", "ab")}
    assert lines(tmp_path / PARTIAL) == [json.dumps(rows[1])]
    with pytest.raises(ConfigError, match="changed: endpoint_model: 'judge' -> 'gpt-4'"):
        earlier_judgments(tmp_path, {**settings, "endpoint_model": "gpt-4"})


def test_a_judge_run_resumes_answers_and_judgments_over_torn_last_lines(run_judge, tmp_path):
    """End to end: a system answering through an endpoint and a judge behind the same scripted server."""
    from medtune.judge.questions import read_questions

    questions = read_questions(None)[:3]

    def reply(prompt: str) -> str:
        return "8 6" if "###Question" in prompt else f"answer to {prompt[:20]}"

    server = ScriptedChatServer(reply)
    try:
        out = tmp_path / "judge"
        answers = tmp_path / "answers_base.jsonl"
        answers.write_text("".join(json.dumps({"id": q.qid, "answer": f"base {q.qid}"}) + "\n" for q in questions))
        args = [
            f"judge.a.answers={answers}",
            "judge.b.generator.kind=endpoint",
            f"judge.b.generator.url={server.url}",
            "judge.b.generator.endpoint_model=chat",
            "judge.b.generator.concurrency=1",
            f"judge.judge.url={server.url}",
            "judge.judge.concurrency=1",
            "judge.max_questions=3",
            f"judge.output_dir={out}",
            "logger=none",
        ]
        first = run_judge(args, name="first")
        assert server.calls == 3 + 2 * 3
        expected = {
            name: (out / name).read_text(encoding="utf-8") for name in ("answers_chat.jsonl", "judgments.jsonl")
        }
        for name in expected:  # killed while writing each file's last line
            partial = out / name.replace(".jsonl", ".partial.jsonl")
            shutil.move(out / name, partial)
            assert cut_last_line(partial) == (2 if name.startswith("answers") else 5)
        again = run_judge(args, name="again")
        assert server.calls == 3 + 2 * 3 + 1 + 1  # the torn answer, and the torn judgment, asked again
        assert again["total"] == first["total"]
        assert {name: (out / name).read_text(encoding="utf-8") for name in expected} == expected
        assert not list(out.glob("*.partial.jsonl"))
    finally:
        server.close()


def test_qa_generation_resumes_over_torn_last_lines_of_both_files(tmp_path):
    from medtune.qa.store import RunStore

    settings, hashes = {"pairs_per_chunk": 1}, {"doc#0": "h0", "doc#1": "h1"}
    store = RunStore(tmp_path)
    store.open(settings, hashes)
    store.append([{"instruction": "q0", "output": "a0", "source": "doc#0"}], {"chunk": "doc#0", "hash": "h0"})
    with store.pairs_path.open("a", encoding="utf-8") as handle:
        handle.write('{"instruction": "q1", "output": "a1", "sou')  # killed inside chunk 1's records
    finished, kept = RunStore(tmp_path).open(settings, hashes)
    assert list(finished) == ["doc#0"] and [r["source"] for r in kept] == ["doc#0"]
    assert lines(store.pairs_path) == ['{"instruction": "q0", "output": "a0", "source": "doc#0"}']
    store.progress_path.write_text('{"chunk": "doc#0", "hash": "h0"}\nnot json\n{"chunk": "doc#1", "hash": "h1"}\n')
    with pytest.raises(DataError, match=r"qa_progress\.jsonl:2: not valid JSON.*that chunk is asked again"):
        RunStore(tmp_path).open(settings, hashes)
