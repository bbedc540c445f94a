"""The prompt is in the exam's language: a Japanese template around English questions (or the
reverse) is refused, unless the run says the pairing is meant (exam.allow_prompt_language_mismatch).

`check_prompt_language` takes a typed run config with `exam` and `prompt` (evaluate.py's
`EvalRunConfig`, train.py's `TrainRunConfig` for its exam check). It imports only `medtune.config`
and the standard library. evaluate.py's rules hold it (`medtune.rules.evaluate`).
"""

from __future__ import annotations

from typing import Any, Optional

from medtune.config.exam_schema import ExamConfig

# One bundled prompt per language, named in the refusal as the way out (a test checks each against
# conf/prompt/<name>.yaml).
PROMPT_FOR_LANGUAGE = {"ja": "medpalm2_cot", "en": "medpalm2_cot_en", "zh": "medpalm2_cot_zh", "vi": "vi_chat"}


def exam_language(exam: ExamConfig) -> Optional[str]:
    """The language the questions are asked in: English for IgakuQA's translation (exam.english)."""
    return "en" if exam.english else _normalised(exam.language)


def check_prompt_language(cfg: Any) -> list[str]:
    """The prompt's language (prompt.language) must be the exam's; either one unstated (null) is not checked."""
    if not _asks_the_exam(cfg):
        return []
    exam, prompt = cfg.exam, cfg.prompt
    questions, template = exam_language(exam), _normalised(prompt.language)
    if exam.allow_prompt_language_mismatch or questions is None or template is None or questions == template:
        return []
    source = "exam.english=true, IgakuQA's English translation" if exam.english else "exam.language"
    example = PROMPT_FOR_LANGUAGE.get(questions)
    pick = f", e.g. prompt={example}" if example else ""
    fix_exam = "" if exam.english else f"; if the questions are in fact in {template}, set exam.language={template}"
    return [
        f"prompt={prompt.name} is in {template} (prompt.language) but exam={exam.name} is in {questions} ({source}), "
        f"so its questions would be asked inside a template in another language. Pick a prompt in {questions}"
        f"{pick}{fix_exam}; or keep this pairing on purpose with exam.allow_prompt_language_mismatch=true."
    ]


def _asks_the_exam(cfg: Any) -> bool:
    """Whether the run puts the exam's questions in the prompt: not a replay of predictions (evaluate.py
    predictions=), not a training run whose exam check is off (exam_eval.enabled=false)."""
    if getattr(cfg, "predictions", None):
        return False
    exam_check = getattr(cfg, "exam_eval", None)
    return exam_check is None or bool(exam_check.enabled)


def _normalised(language: Optional[str]) -> Optional[str]:
    """ " JA" -> "ja"; null or blank -> None (not stated)."""
    return (language or "").strip().lower() or None
