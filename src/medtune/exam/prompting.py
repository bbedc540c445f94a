"""Exam prompts: the question in {instruction}, lettered choices in {input}, after k worked examples.

A worked example is rendered with the same template as the question, followed by its
explanation and the prompt's answer marker (e.g. `答え: b. 血清フェリチン低値`), so the model sees
the chain-of-thought format and where the final answer goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from medtune.config.schema import PromptConfig
from medtune.data.json_files import iter_json_objects
from medtune.data.readers import InstructionRecord, format_choices
from medtune.data.templates import (
    apply_chat_template,
    chat_messages,
    fill_template,
    render_prompt,
    require_chat_template,
)
from medtune.errors import DataError
from medtune.vocabulary import ExamQuestion, choice_labels


def answer_text(question: ExamQuestion) -> str:
    """The gold answer as a model should write it: `b. <choice>` (or `a. X, c. Y`; or the number)."""
    if question.is_numeric:
        return ",".join(question.answers)
    return ", ".join(f"{letter}. {question.choice_of(letter)}" for letter in question.answers)


def question_record(question: ExamQuestion, response: str = "") -> InstructionRecord:
    """The question as a prompt record: its passage (if any) then the question as the instruction, the
    lettered choices as the input."""
    instruction = f"{question.context}\n\n{question.question}" if question.context else question.question
    return InstructionRecord(instruction, format_choices(list(question.choices)), response, question.source)


def worked_answer(prompt: PromptConfig, example: ExamQuestion) -> str:
    reasoning = f"{example.explanation.strip()}\n" if example.explanation.strip() else ""
    return f"{reasoning}{prompt.answer_marker} {answer_text(example)}"


def worked_example(prompt: PromptConfig, example: ExamQuestion) -> str:
    return render_prompt(prompt, question_record(example)) + worked_answer(prompt, example) + "\n"


@dataclass(frozen=True)
class ExamPrompt:
    """One exam prompt in the two forms a backend may need.

    `messages` are the chat turns (system, worked examples as earlier turns, the question) that a
    chat API or a tokenizer's chat template renders; `text` is the finished prompt of a plain
    (non-chat) template, or None for a chat prompt, which only a tokenizer can render."""

    messages: tuple[dict[str, str], ...]
    text: str | None

    def render(self, tokenizer: Any = None) -> str:
        """The text the model reads: `text`, or the messages through `tokenizer`'s chat template."""
        if self.text is not None:
            return self.text
        return apply_chat_template(tokenizer, list(self.messages))


def exam_prompt(prompt: PromptConfig, question: ExamQuestion, shots: list[ExamQuestion]) -> ExamPrompt:
    """k worked examples (never the question itself), then the question, ending where the answer starts.

    With a chat prompt each worked example is an earlier user turn and its answer the assistant's;
    otherwise the examples are written out before the question in the prompt's own template."""
    shots = [shot for shot in shots if shot.qid != question.qid]
    if prompt.chat:
        turns = [(fill_template(prompt, question_record(shot)), worked_answer(prompt, shot)) for shot in shots]
        turns.append((fill_template(prompt, question_record(question)), None))
        return ExamPrompt(tuple(chat_messages(prompt, turns)), None)
    examples = [worked_example(prompt, shot) for shot in shots]
    text = "\n".join([*examples, render_prompt(prompt, question_record(question))])
    return ExamPrompt(({"role": "user", "content": text},), text)


def build_prompt(prompt: PromptConfig, question: ExamQuestion, shots: list[ExamQuestion], tokenizer=None) -> str:
    """`exam_prompt` rendered for `tokenizer` (needed with a chat prompt)."""
    if prompt.chat:
        require_chat_template(prompt, tokenizer)
    return exam_prompt(prompt, question, shots).render(tokenizer)


# Bundled worked examples per language; any other language gets the English ones.
FEWSHOT_LANGUAGES = ("ja", "en", "zh")


def bundled_fewshot_file(language: str) -> Path:
    name = f"fewshot_{language if language in FEWSHOT_LANGUAGES else 'en'}.jsonl"
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
            raise DataError(
                f"{where}: a worked example needs the field {missing}; see the IgakuQA few-shot format."
            ) from missing
        bad = [a for a in examples[-1].answers if choices and (a not in choice_labels(len(choices)))]
        if bad:
            raise DataError(f"{where}: answer {bad[0]!r} is not one of the choices; fix the few-shot file.")
    if not examples:
        raise DataError(f"{source}: the few-shot file is empty.")
    return examples
