"""Errors a user can act on: each message names the input, the problem and the fix."""

from __future__ import annotations

import sys
from pathlib import Path


class MedtuneError(Exception):
    """Base class; entry scripts print these as a message, not a stack trace."""


class ConfigError(MedtuneError):
    """One or more configuration problems, reported together."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"The configuration has {len(self.problems)} {noun}:\n{lines}")

    def __reduce__(self):  # rebuilt from its problems in another process (joblib, submitit)
        if type(self).__init__ is ConfigError.__init__:
            return (type(self), (self.problems,))
        return super().__reduce__()  # a subclass with its own arguments defines its own


class DirectoryRefused(ConfigError):
    """A run directory turns this command away (another process holds it, or it holds results of other
    settings): the refused command leaves nothing in it, not even failure.json."""

    def __init__(self, directory: Path | str, problem: str):
        self.directory = Path(directory)
        super().__init__([problem])

    def __reduce__(self):  # pickled by process launchers (joblib, submitit): rebuilt from its own arguments
        return type(self), (self.directory, self.problems[0])


class DataError(MedtuneError):
    """A data file that cannot be read as asked: the message names file:line."""


class ModelUnavailableError(MedtuneError):
    """A model whose weights or architecture cannot be loaded here."""


class TrainingDivergedError(MedtuneError):
    """The loss became NaN or infinite: training stopped, with a checkpoint to inspect."""


PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: a temporary failure, run the job again


class Preempted(MedtuneError):
    """Training stopped on SIGTERM / SIGUSR1 after saving a checkpoint; the job should be run again."""

    def __init__(self, message: str, signum: int, previous_handler=None):
        super().__init__(message)
        self.signum = signum
        self.previous_handler = previous_handler  # the handler medtune replaced (submitit's requeue)


def warn(message: str) -> None:
    """A problem that does not stop the run, said once on stderr: `medtune: warning: <message>`."""
    print(f"medtune: warning: {message}", file=sys.stderr, flush=True)
