"""Exam prompts: the question in {instruction}, lettered choices in {input}, after k worked examples.

A worked example is rendered with the same template as the question, followed by its
explanation and the prompt's answer marker (e.g. `答え: b. 血清フェリチン低値`), so the model sees
the chain-of-thought format and where the final answer goes.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from medtune.config.schema import PromptConfig
from medtune.data.readers import InstructionRecord, format_choices, iter_json_objects
from medtune.data.templates import fill_template, render_prompt
from medtune.errors import DataError
from medtune.evaluation.types import LETTERS, ExamQuestion


def answer_text(question: ExamQuestion) -> str:
    """The gold answer as a model should write it: `b. <choice>` (or `a. X, c. Y`; or the number)."""
    if question.is_numeric:
        return ",".join(question.answers)
    return ", ".join(f"{letter}. {question.choice_of(letter)}" for letter in question.answers)


def question_record(question: ExamQuestion, response: str = "") -> InstructionRecord:
    return InstructionRecord(question.question, format_choices(list(question.choices)), response, question.source)


def worked_answer(prompt: PromptConfig, example: ExamQuestion) -> str:
    reasoning = f"{example.explanation.strip()}\n" if example.explanation.strip() else ""
    return f"{reasoning}{prompt.answer_marker} {answer_text(example)}"


def worked_example(prompt: PromptConfig, example: ExamQuestion) -> str:
    return render_prompt(prompt, question_record(example)) + worked_answer(prompt, example) + "\n"


def build_prompt(prompt: PromptConfig, question: ExamQuestion, shots: list[ExamQuestion], tokenizer=None) -> str:
    """k worked examples (never the question itself), then the question, ending where the answer starts.

    With a chat prompt each worked example is an earlier user turn and its answer the assistant's."""
    shots = [shot for shot in shots if shot.qid != question.qid]
    if prompt.chat:
        history = [(fill_template(prompt, question_record(shot)), worked_answer(prompt, shot)) for shot in shots]
        return render_prompt(prompt, question_record(question), tokenizer, history)
    examples = [worked_example(prompt, shot) for shot in shots]
    return "\n".join([*examples, render_prompt(prompt, question_record(question))])


def bundled_fewshot_file(language: str) -> Path:
    name = "fewshot_ja.jsonl" if language == "ja" else "fewshot_en.jsonl"
    return Path(str(resources.files("medtune") / "resources" / name))


def read_fewshot(path: Path | None, language: str, english: bool = False) -> list[ExamQuestion]:
    """Worked examples with explanations: IgakuQA's few-shot file format (its *_en fields when english)."""
    source = Path(path) if path else bundled_fewshot_file("en" if english else language)
    suffix = "_en" if english and path else ""
    examples = []
    for where, item in iter_json_objects(source):
        try:
            choices = tuple(str(c) for c in item[f"choices{suffix}"])
            answers = item["answer"] if isinstance(item["answer"], list) else [item["answer"]]
            examples.append(
                ExamQuestion(
                    qid=str(item.get("problem_id", where)),
                    question=str(item[f"problem_text{suffix}"]),
                    choices=choices,
                    answers=tuple(str(a).strip().lower() for a in answers),
                    explanation=str(item.get(f"explanation{suffix}", "")),
                    source=where,
                )
            )
        except KeyError as missing:
            raise DataError(f"{where}: a worked example needs the field {missing}; see the IgakuQA few-shot format.")
        bad = [a for a in examples[-1].answers if choices and (a not in LETTERS[: len(choices)])]
        if bad:
            raise DataError(f"{where}: answer {bad[0]!r} is not one of the choices; fix the few-shot file.")
    if not examples:
        raise DataError(f"{source}: the few-shot file is empty.")
    return examples
