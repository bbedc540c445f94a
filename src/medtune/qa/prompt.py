"""The generation prompt: a JMedLoRA-style template (bundled per language, or the user's) filled per chunk.

JMedLoRA (Sukeda et al., 2024, Section 3.2) gave gpt-3.5-turbo each journal text after an
"### Instructions: You are a machine designed to generate various question and answer pairs ..."
template. The bundled `resources/qa/template_<language>.txt` follow that shape in medtune's own
words and ask for `{n}` pairs as JSON Lines `{"instruction": ..., "output": ...}`.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from medtune.config.qa_schema import QAGenerationConfig
from medtune.errors import ConfigError

PLACEHOLDER = re.compile(r"\{(document|n)\}")
BUNDLED_LANGUAGES = ("ja", "en")


def bundled_template_path(language: str) -> Path:
    return Path(str(resources.files("medtune") / "resources" / "qa" / f"template_{language}.txt"))


def load_template(qa: QAGenerationConfig) -> str:
    """qa.template (a file or the text itself), else the bundled template of qa.language."""
    if qa.template is None:
        if qa.language not in BUNDLED_LANGUAGES:
            problem = (
                f"qa.language={qa.language} has no bundled template (there are {', '.join(BUNDLED_LANGUAGES)}): "
                "set qa.language=ja or en, or give your own with qa.template=<file with {document} and {n}>."
            )
            raise ConfigError([problem])
        return bundled_template_path(qa.language).read_text(encoding="utf-8")
    candidate = Path(qa.template)
    looks_like_path = "\n" not in qa.template and len(qa.template) < 1024
    if looks_like_path and candidate.exists():  # a pipe or a device is refused without being opened
        from medtune.data.file_checks import data_file_problem

        problem = data_file_problem(candidate, "qa.template")
        if problem:
            raise ConfigError([problem])
    if looks_like_path and candidate.is_file():
        text = candidate.read_text(encoding="utf-8")
        where = f"qa.template={qa.template}"
    elif looks_like_path and "{document}" not in qa.template:
        problem = (
            f"qa.template={qa.template}: no such file, and not a template either (no {{document}} "
            "placeholder); point it at a template file or give the text itself."
        )
        raise ConfigError([problem])
    else:
        text, where = qa.template, "qa.template (given as text)"
    missing = [name for name in ("{document}", "{n}") if name not in text]
    if missing:
        problem = (
            f"{where} lacks {' and '.join(missing)}: the template needs {{document}} where the chunk "
            "goes and {n} where the number of pairs goes."
        )
        raise ConfigError([problem])
    return text


def render(template: str, document: str, n: int) -> str:
    """Fill {document} and {n} in one pass (braces in the document or in JSON examples stay as they are)."""
    values = {"document": document.strip(), "n": str(n)}
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
