"""Every config key carries its own help: `help_field(default, "what it does")` is a dataclass field whose
metadata holds the help (`metadata={"help": ...}`), which `--help` (`medtune.hydra_help`) and the README's
key tables (`medtune.config.reference`) show. `tests/test_help_schema.py` fails on a key without help."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

NO_DEFAULT: Any = dataclasses.MISSING  # dataclasses' own marker, not omegaconf's MISSING ("???": set by an option)


def help_field(default: Any = NO_DEFAULT, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with `default` (or `factory()` for a list, a dict or a section) and its help."""
    if not help.strip():
        raise ValueError("help_field: every config key needs its help text (what it does, its values, its unit)")
    metadata = {"help": " ".join(help.split())}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(field: dataclasses.Field) -> str:
    """The help of a schema field ("" when it has none)."""
    return str(field.metadata.get("help", ""))
