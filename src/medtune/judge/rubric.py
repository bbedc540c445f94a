"""The judge's instructions: the Vietnamese chatbot paper's system prompt and pairwise rubric.

The rubric text is the paper's (section V). After it we ask for the two scores on the first line
and the explanation after them, the convention of Vicuna's GPT-4 review, which the paper follows:
a fixed place for the scores is what makes the judgments parse reliably.
"""

from __future__ import annotations

SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."

RUBRIC = (
    "We would like to request your feedback on the performance of two AI assistants in response to the "
    "user question displayed above.\n"
    "Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant "
    "receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance."
)

OUTPUT_FORMAT = (
    "Put the two scores alone on the first line, Assistant 1's first, separated by a space (for example: 8 6). "
    "From the second line on, explain your scores. Rate each answer on its merits: the order in which the "
    "answers are shown must not change your judgment."
)


def judge_prompt(question: str, answer_1: str, answer_2: str, reference: str | None = None) -> str:
    """The user message for one judgment: the question, (optionally) a reference, both answers, the rubric."""
    parts = ["###Question", question.strip()]
    if reference:
        parts += ["###Reference Answer", reference.strip()]
    parts += [
        "###The Start of Assistant 1's Answer",
        answer_1.strip(),
        "###The End of Assistant 1's Answer",
        "###The Start of Assistant 2's Answer",
        answer_2.strip(),
        "###The End of Assistant 2's Answer",
        RUBRIC,
        OUTPUT_FORMAT,
    ]
    return "\n".join(parts)
