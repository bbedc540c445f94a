"""What the command line says when an entry script cannot start its job: Hydra's composition and
run-dir errors as medtune messages, a job's trace without Hydra's frames, spellings that moved to a
script of their own, and each script's own `--help` (the resolver of hydra.help.template)."""

from __future__ import annotations

import sys
import traceback

from medtune.secrets import mask as mask_secrets

FULL_ERROR = "HYDRA_FULL_ERROR"


def register_help_resolver() -> None:
    """`${medtune_help:}`, the resolver of `hydra.help.template` (conf/hydra/default.yaml): each script's
    own `--help`, from `medtune.hydra_help`."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("medtune_help"):
        from medtune.hydra_help import help_placeholders_on_demand, script_help

        OmegaConf.register_new_resolver("medtune_help", script_help)
        help_placeholders_on_demand()


def before_the_job(error: Exception, argv: list[str], schema: type, script: str) -> str | None:
    """The message for an error Hydra raised while composing the config or making the run dir."""
    from hydra.errors import HydraException

    from medtune.hydra_messages import composition_problem, run_dir_problem

    problem = composition_problem(error, argv, schema, script)
    if problem is None and isinstance(error, OSError) and error.filename and not isinstance(error, HydraException):
        multirun = any(a in ("-m", "--multirun") or a == "hydra.mode=MULTIRUN" for a in argv)
        problem = run_dir_problem(error, argv, multirun)
    return problem


def print_trimmed_traceback(error: BaseException) -> None:
    """The trace from the job down, without Hydra's frames above it (what Hydra itself prints)."""
    tb = error.__traceback__
    start = tb
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "run_job":
            start = tb.tb_next or tb
        tb = tb.tb_next
    sys.stderr.write(mask_secrets("".join(traceback.format_exception(type(error), error, start))))
    sys.stderr.write(f"\nSet the environment variable {FULL_ERROR}=1 for a complete stack trace.\n")


# --- spellings that moved to a script of their own ---------------------------------------------------

MOVED = (  # (script, override, the job's own script, what it does)
    ("train.py", "task=generate_qa", "generate_qa.py", "QA generation"),
    ("evaluate.py", "eval=judge", "judge.py", "judging two systems"),
    ("evaluate.py", "eval.mode=judge", "judge.py", "judging two systems"),
)


def moved_spelling(argv: list[str], script: str) -> str | None:
    """The message for an override that now names a job of its own (`train.py task=generate_qa`)."""
    for old_script, override, new_script, what in MOVED:
        if script == old_script and override in (a.lstrip("+") for a in argv):
            rest = [a for a in argv if a.lstrip("+") != override and a not in ("-m", "--multirun")]
            rest = [a.replace("eval.output_dir=", "judge.output_dir=") for a in rest]
            return (
                f"{script} {override}: {what} is a job of its own now. Run it with python {new_script}"
                f"{' ' + ' '.join(rest) if rest else ''} (the same overrides, without {override}; "
                f"see python {new_script} --help)."
            )
    return None
