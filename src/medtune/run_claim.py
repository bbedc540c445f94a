"""How far a job got with its directory, and what it leaves there when it fails or is refused.

`medtune.entry.execute` locks the job's directory and runs its task's `check_existing` before anything
is written there (`Claim.owned` turns true then); only then come `.hydra/` (written here, not by Hydra)
and the task. A refused command (the directory is busy, or holds finished results of other settings)
leaves nothing, not even failure.json; a job that failed after owning its directory leaves
failure.json there, masked of secrets.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from medtune.config.job import JobContext
from medtune.secrets import mask as mask_secrets


def write_failure_record(run_dir: Path, error: BaseException) -> Path:
    """Leave the error in the run dir so a sweep or a person can see why a job stopped."""
    from medtune.io import write_json_atomic

    path = run_dir / "failure.json"
    write_json_atomic(
        path,
        {
            "error_type": type(error).__name__,
            "message": mask_secrets(str(error)),
            "traceback": mask_secrets("".join(traceback.format_exception(error))),
        },
    )
    return path


@dataclass
class Claim:
    """How far `execute` got with the job's directory. `directory` is the workspace once known; `owned`
    turns true once it is locked and checked (the job may write there from then on); `hydra_files` are
    the .hydra/ files to write then (Hydra writes none itself: conf/hydra/default.yaml)."""

    hydra_files: dict[str, str] | None = None
    directory: Path | None = None
    owned: bool = False

    def tidy(self, run_dir: Path) -> None:
        """Hydra makes its run dir before the job starts; when the job wrote elsewhere (evaluate.py
        run=<dir>, eval.output_dir=...) and nothing came into it, it goes again."""
        if self.directory is None or Path(self.directory).resolve() == Path(run_dir).resolve():
            return
        try:
            Path(run_dir).rmdir()  # only an empty directory
        except OSError:
            pass


HYDRA_SUBDIR = ".hydra"
FINISHED_MARKERS = ("train_summary.json", "metrics.json")  # a finished training / evaluation / judgment


def write_hydra_files(directory: Path, files: dict[str, str] | None) -> dict[str, bytes | None]:
    """Write `files` into <directory>/.hydra/; returns what each was before (None: absent), to put back
    if the task turns out to be refused."""
    from medtune.io import write_text_atomic

    if not files:
        return {}
    folder = Path(directory) / HYDRA_SUBDIR
    before = {name: (folder / name).read_bytes() if (folder / name).is_file() else None for name in files}
    for name, text in files.items():
        write_text_atomic(folder / name, text)
    return before


def restore_hydra_files(directory: Path, before: dict[str, bytes | None]) -> None:
    from medtune.io import write_bytes_atomic

    folder = Path(directory) / HYDRA_SUBDIR
    for name, data in before.items():
        if data is None:
            (folder / name).unlink(missing_ok=True)
        else:
            write_bytes_atomic(folder / name, data)
    if before and all(data is None for data in before.values()):
        try:
            folder.rmdir()
        except OSError:
            pass


def refusal(error: BaseException) -> bool:
    """A command turned away before it could work (the dir is busy, or holds results of other settings):
    it leaves nothing in the dir, not even failure.json."""
    from medtune.errors import DirectoryRefused
    from medtune.jsonl_store import SettingsChangedError

    return isinstance(error, (DirectoryRefused, SettingsChangedError))


def record_failure(job: JobContext, claim: Claim, error: BaseException) -> Path | None:
    """failure.json for a job that failed: in its workspace once it owned it, else in Hydra's run dir,
    unless that holds a finished run (a later command's error is not that run's) or the job was
    refused. A full or read-only disk there is said in one line, not a second traceback."""
    if refusal(error):
        return None
    directory = Path(claim.directory) if claim.owned and claim.directory is not None else job.run_dir
    if not claim.owned and any((directory / name).is_file() for name in FINISHED_MARKERS):
        return None
    try:
        return write_failure_record(directory, error)
    except OSError as problem:
        print(f"\nmedtune: failure.json could not be written in {directory} ({problem}).", file=sys.stderr)
        return None
