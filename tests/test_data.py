"""Tests of the data layer: readers, prompt templates, tokenization and the train / eval split.

Everything runs on real files written under `tmp_path`, the bundled sample set, the real prompt
YAMLs and a real byte-level BPE tokenizer trained on the bundled corpus; nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from medtune.config.schema import DatasetFormat, OverlongPolicy, PromptConfig
from medtune.data.readers import InstructionRecord, read_records
from medtune.data.splits import split_train_eval
from medtune.data.templates import fill_template, render_prompt
from medtune.data.tokenize import IGNORE_INDEX, PadCollator, encode_records
from medtune.errors import DataError

PROMPT_DIR = Path(__file__).resolve().parents[1] / "conf" / "prompt"
CHOICES = ["fever", "cough", "rash", "headache", "nausea"]


def write_jsonl(path: Path, items: list) -> Path:
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    return path


def exam(answer, choices=CHOICES, text="Which is a symptom?") -> dict:
    return {"problem_id": "T-01", "problem_text": text, "choices": choices, "answer": answer}


def load_prompt(name: str) -> PromptConfig:
    merged = OmegaConf.merge(OmegaConf.structured(PromptConfig), OmegaConf.load(PROMPT_DIR / f"{name}.yaml"))
    return OmegaConf.to_object(merged)


def read_one(tmp_path: Path, item: dict, fmt: DatasetFormat = DatasetFormat.auto) -> InstructionRecord:
    (record,) = read_records(write_jsonl(tmp_path / "one.jsonl", [item]), fmt)
    return record


def data_error(path: Path, fmt: DatasetFormat = DatasetFormat.auto) -> str:
    with pytest.raises(DataError) as info:
        read_records(path, fmt)
    return str(info.value)


# --- 1. readers ---------------------------------------------------------------------------------


def test_alpaca_jsonl_and_json_list(tmp_path):
    items = [
        {"instruction": "Define fever.", "input": "adult", "output": "A raised temperature."},
        {"instruction": "Define rash.", "output": "A change of the skin."},
    ]
    for path in (write_jsonl(tmp_path / "a.jsonl", items), tmp_path / "a.json"):
        if path.suffix == ".json":
            path.write_text(json.dumps(items, indent=2), encoding="utf-8")
        records = read_records(path)
        assert [(r.instruction, r.input, r.output) for r in records] == [
            ("Define fever.", "adult", "A raised temperature."),
            ("Define rash.", "", "A change of the skin."),
        ]
        assert all(r.source.startswith(f"{path}:") for r in records)


def test_prompt_response_record(tmp_path):
    record = read_one(tmp_path, {"prompt": "Tôi bị sốt?", "response": "Hãy nghỉ ngơi."})
    assert (record.instruction, record.input, record.output) == ("Tôi bị sốt?", "", "Hãy nghỉ ngơi.")


def test_exam_single_answer_lists_choices_in_input(tmp_path):
    record = read_one(tmp_path, exam(["b"]))
    assert record.instruction == "Which is a symptom?"
    assert record.input == "a. fever\nb. cough\nc. rash\nd. headache\ne. nausea"
    assert record.output == "b. cough"


def test_exam_two_answers_one_per_line(tmp_path):
    assert read_one(tmp_path, exam(["a", "c"])).output == "a. fever, c. rash"


def test_an_exam_answer_given_as_choice_text_trains_on_its_letter_as_the_exam_reader_scores_it(tmp_path):
    assert read_one(tmp_path, exam("Cough")).output == "b. cough"  # folded: case, width, spaces
    assert read_one(tmp_path, exam(["ＦＥＶＥＲ ", "rash"])).output == "a. fever, c. rash"
    twins = write_jsonl(tmp_path / "twins.jsonl", [exam(["b"]), exam("rash", choices=["rash", "cough", "Rash"])])
    message = data_error(twins)
    assert "twins.jsonl:2" in message and "choices a and c" in message and "give the letter" in message


def test_exam_numeric_answer_with_no_choices(tmp_path):
    record = read_one(tmp_path, exam(["42"], choices=[]))
    assert (record.input, record.output) == ("", "42")


def test_auto_detection_per_record_in_one_file(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl", [{"instruction": "I", "output": "O"}, {"prompt": "P", "response": "R"}, exam("e")]
    )
    assert [r.output for r in read_records(path)] == ["O", "R", "e. nausea"]
    assert [r.source for r in read_records(path)] == [f"{path}:{n}" for n in (1, 2, 3)]


def test_folder_skips_metadata_and_translation_files(tmp_path):
    write_jsonl(tmp_path / "112-A.jsonl", [exam(["a"])])
    write_jsonl(tmp_path / "112-A_metadata.jsonl", [{"problem_id": "T-01", "year": 2018}])
    write_jsonl(tmp_path / "112-A_translate.jsonl", [exam(["b"], text="translated")])
    records = read_records(tmp_path)
    assert [r.source for r in records] == [f"{tmp_path / '112-A.jsonl'}:1"]


def test_max_records(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", [{"prompt": f"p{i}", "response": "r"} for i in range(10)])
    assert [r.instruction for r in read_records(path, max_records=3)] == ["p0", "p1", "p2"]


def test_bundled_sample():
    records = read_records(None)
    assert len(records) == 24 + 16 + 12 + 6 == 58
    by_file: dict[str, int] = {}
    for record in records:
        file, _, line = record.source.rpartition(":")
        assert Path(file).is_file() and line.isdigit(), record.source
        by_file[Path(file).name] = by_file.get(Path(file).name, 0) + 1
    assert by_file == {"exam_ja.jsonl": 24, "exam_en.jsonl": 16, "instructions.jsonl": 12, "chat_vi.jsonl": 6}


# --- 2. bad input -------------------------------------------------------------------------------


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "response": "r"}\n{"prompt": "p",\n', encoding="utf-8")
    message = data_error(path)
    assert f"{path}:2:" in message and "not valid JSON" in message


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text('\n{"prompt": "p", "response": "r"}\n   \n\n{"prompt": "q", "response": "s"}\n', encoding="utf-8")
    assert [r.source for r in read_records(path)] == [f"{path}:2", f"{path}:5"]


def test_missing_field_for_explicit_format(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "I", "output": "O"}, {"instruction": "I"}])
    message = data_error(path, DatasetFormat.alpaca)
    assert f"{path}:2:" in message and "'output'" in message and "alpaca" in message


def test_fields_matching_no_format(tmp_path):
    message = data_error(write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "reply": "r"}]))
    assert f"{tmp_path / 'x.jsonl'}:1:" in message and "match no known format" in message
    assert "question" in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    message = data_error(path)
    assert str(path) in message and "empty" in message


@pytest.mark.parametrize(
    ("item", "pieces"),
    [
        (exam(["f"]), ["'f'", "a–e", "5 choices"]),
        (exam([]), ["answer is empty"]),
        (exam(["", "  "]), ["answer is empty"]),
        (exam("a", choices="a. fever b. cough"), ["'choices' is a str", "list"]),
    ],
    ids=["letter-outside-choices", "empty-answer-list", "blank-answers", "choices-not-a-list"],
)
def test_bad_exam_records(tmp_path, item, pieces):
    path = write_jsonl(tmp_path / "exam.jsonl", [exam(["a"]), item])
    message = data_error(path)
    assert f"{path}:2:" in message
    for piece in pieces:
        assert piece in message


def test_letter_answer_with_no_choices(tmp_path):
    message = data_error(write_jsonl(tmp_path / "exam.jsonl", [exam(["a"], choices=[])]))
    assert f"{tmp_path / 'exam.jsonl'}:1:" in message and "'a'" in message


def test_missing_path(tmp_path):
    for missing in (tmp_path / "nope.jsonl", tmp_path / "no_folder" / "x.jsonl"):
        message = data_error(missing)
        assert str(missing) in message and "no such file" in message


def test_folder_without_data_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not data", encoding="utf-8")
    write_jsonl(tmp_path / "112-A_metadata.jsonl", [{"problem_id": "T-01"}])
    message = data_error(tmp_path)
    assert str(tmp_path) in message and "no .jsonl" in message


# --- 3. templates -------------------------------------------------------------------------------

PROMPT_NAMES = sorted(p.stem for p in PROMPT_DIR.glob("*.yaml"))


def test_all_prompt_yamls_are_present():
    assert {"alpaca", "alpaca_cot", "medpalm2_cot", "vi_chat", "vi_doctor"} <= set(PROMPT_NAMES)


@pytest.mark.parametrize("name", PROMPT_NAMES)
def test_render_puts_instruction_and_input_in_text(name):
    prompt = load_prompt(name)
    assert prompt.name == name
    fill = fill_template if prompt.chat else render_prompt  # a chat prompt's user turn (the template needs a tokenizer)
    text = fill(prompt, InstructionRecord("QUESTION-TEXT", "a. CHOICE-ONE\nb. CHOICE-TWO", "a. CHOICE-ONE", "t:1"))
    assert "QUESTION-TEXT" in text and "a. CHOICE-ONE\nb. CHOICE-TWO" in text
    assert "{instruction}" not in text and "{input}" not in text
    assert text.index("QUESTION-TEXT") < text.index("CHOICE-ONE")


def test_alpaca_uses_no_input_template_for_empty_input():
    prompt = load_prompt("alpaca")
    with_input = render_prompt(prompt, InstructionRecord("Define fever.", "adult", "o", "t:1"))
    without = render_prompt(prompt, InstructionRecord("Define fever.", "  ", "o", "t:1"))
    assert "### Input:" in with_input and "### Input:" not in without
    assert without == prompt.template_no_input.replace("{instruction}", "Define fever.")


def test_vi_chat_appends_input_to_instruction():
    prompt = load_prompt("vi_chat")
    assert "{input}" not in prompt.template
    text = render_prompt(prompt, InstructionRecord("Câu hỏi?", "a. Một\nb. Hai", "a. Một", "t:1"))
    assert "### Instruction:\nCâu hỏi?\na. Một\nb. Hai\n\n### Response:" in text


def test_record_text_is_not_resubstituted():
    prompt = load_prompt("alpaca")
    text = render_prompt(prompt, InstructionRecord("Say {input} and {instruction}", "ctx {instruction}", "o", "t:1"))
    assert "### Instruction:\nSay {input} and {instruction}\n" in text
    assert "### Input:\nctx {instruction}\n" in text


def test_cot_prompts_differ_only_in_line_order():
    def fixed_lines(name):
        # every line but the bare {instruction} / {input} slots (the task line holds {choice_count})
        return [
            line for line in load_prompt(name).template.splitlines() if line.strip() not in ("{instruction}", "{input}")
        ]

    medpalm, alpaca_cot = fixed_lines("medpalm2_cot"), fixed_lines("alpaca_cot")
    assert sorted(medpalm) == sorted(alpaca_cot) and len(medpalm) >= 4
    assert medpalm != alpaca_cot


# --- 4. tokenization ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from medtune.modeling.tiny import tokenizer_corpus, train_tokenizer

    return train_tokenizer(tokenizer_corpus(), 4096)


@pytest.fixture(scope="module")
def alpaca():
    return load_prompt("alpaca")


def ids(tokenizer, text: str, special: bool = False) -> list[int]:
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def test_labels_mask_the_prompt(tokenizer, alpaca):
    record = InstructionRecord("Which is a symptom of flu?", "a. fever\nb. rash", "a. fever", "t:1")
    (example,), stats = encode_records([record], tokenizer, alpaca, 512, 64)
    n_prompt = len(ids(tokenizer, render_prompt(alpaca, record), special=True))
    input_ids, labels = example["input_ids"], example["labels"]
    assert input_ids[0] == tokenizer.bos_token_id and len(labels) == len(input_ids)
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert labels[n_prompt:] == input_ids[n_prompt:] == ids(tokenizer, "a. fever") + [tokenizer.eos_token_id]
    assert labels[-1] == tokenizer.eos_token_id
    assert (stats.kept, stats.prompt_tokens, stats.target_tokens) == (1, n_prompt, len(labels) - n_prompt)


def test_long_response_drops_the_example(tokenizer, alpaca):
    short = InstructionRecord("Q1", "", "yes", "t:1")
    long = InstructionRecord("Q2", "", "a very long answer " * 20, "t:2")
    examples, stats = encode_records([short, long], tokenizer, alpaca, 512, 16)
    assert len(examples) == 1 and stats.dropped_long_targets == 1 and stats.kept == 1
    assert examples[0]["input_ids"][-len(ids(tokenizer, "yes")) - 1 : -1] == ids(tokenizer, "yes")
    assert stats.longest_target == len(ids(tokenizer, long.output)) + 1 > 16


def test_long_prompt_truncated_from_the_left(tokenizer, alpaca):
    record = InstructionRecord("symptoms of fever and cough " * 40, "", "a. fever", "t:1")
    full = ids(tokenizer, render_prompt(alpaca, record), special=True)
    limit = 32
    assert len(full) > limit
    (example,), stats = encode_records([record], tokenizer, alpaca, limit, 64, OverlongPolicy.truncate_input)
    prompt_ids = example["input_ids"][:limit]
    assert prompt_ids == [tokenizer.bos_token_id] + full[-(limit - 1) :]
    assert example["labels"][:limit] == [IGNORE_INDEX] * limit
    assert example["input_ids"][limit:] == ids(tokenizer, "a. fever") + [tokenizer.eos_token_id]
    assert tokenizer.decode(prompt_ids[1:]).rstrip().endswith("### Response:")
    assert (stats.truncated_inputs, stats.dropped_long_inputs, stats.kept) == (1, 0, 1)


def test_long_prompt_dropped_with_drop_policy(tokenizer, alpaca):
    records = [InstructionRecord("fever " * 200, "", "a", "t:1"), InstructionRecord("Q", "", "b", "t:2")]
    examples, stats = encode_records(records, tokenizer, alpaca, 64, 16, OverlongPolicy.drop)
    assert len(examples) == 1 and (stats.dropped_long_inputs, stats.truncated_inputs) == (1, 0)


def test_every_example_too_long_is_an_error(tokenizer, alpaca):
    records = [InstructionRecord("Q", "", "a long long answer " * 10, f"t:{i}") for i in range(3)]
    with pytest.raises(DataError) as info:
        encode_records(records, tokenizer, alpaca, 512, 8)
    message = str(info.value)
    assert "every one of the 3 examples is too long" in message and "train.max_target_tokens=8" in message


def test_pad_collator(tokenizer):
    pad = tokenizer.pad_token_id
    batch = PadCollator(pad)(
        [{"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, pad, pad]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


# --- 5. train / eval split ----------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_complete():
    records = list(range(50))
    train, held = split_train_eval(records, 0.2, seed=7)
    assert (train, held) == split_train_eval(records, 0.2, seed=7)
    assert len(held) == 10 and not set(train) & set(held) and sorted(train + held) == records
    assert split_train_eval(records, 0.2, seed=8)[1] != held


def test_split_fraction_edges():
    records = list(range(5))
    assert len(split_train_eval(records, 0.01, seed=0)[1]) == 1
    assert split_train_eval(records, 0.0, seed=0) == (records, [])
    train, held = split_train_eval(records, 0.99, seed=0)
    assert len(train) >= 1 and len(held) == 4


def test_a_training_exam_record_with_thirty_choices_gets_numbered_labels(tmp_path):
    from medtune.data.readers import DatasetFormat, to_record

    choices = [f"option {i}" for i in range(1, 31)]
    item = {"problem_text": "Pick one.", "choices": choices, "answer": ["28"]}
    record = to_record(item, DatasetFormat.auto, "wide.jsonl:1")
    assert "28. option 28" in record.input and record.output == "28. option 28"
