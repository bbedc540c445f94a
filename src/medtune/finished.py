"""A run dir holds one run's results: a later command with other settings is refused, not mixed in.

Each task checks its locked directory before anything is written (`check_existing` in its task
module, called by `medtune.entry.execute`): when it holds results (finished, or an interrupted run's
partial files) made with other settings than this command's, the command is refused with a
`ResultsOfOtherSettings` naming the directory, what it holds, what changed and the two ways out:
write elsewhere, or `overwrite=true`, which deletes those results first and starts again. The same
settings carry on as before (training continues from its last checkpoint, an interrupted evaluation
from its last answered question, a finished one is run again).
"""

from __future__ import annotations

import datetime
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from medtune.errors import DirectoryRefused
from medtune.jsonl_store import describe_changes
from medtune.reporting.console import console

OVERWRITE_KEY = "overwrite"


class ResultsOfOtherSettings(DirectoryRefused):
    """The directory holds results of other settings: the refused command wrote nothing into it."""


@dataclass(frozen=True)
class HeldResults:
    """What a directory holds and how this command's settings differ from the ones that made it."""

    directory: Path
    holds: str  # "a finished evaluation of tiny on exam=sample (metrics.json from 2025-05-01 12:00:03)"
    changed: list[str]  # `key: old -> new`; [] when the settings are the same
    files: list[str] = field(default_factory=list)  # what overwrite=true deletes, relative to `directory`


def written_at(path: Path) -> str:
    """`path`'s modification time, local, to the second."""
    stamp = datetime.datetime.fromtimestamp(Path(path).stat().st_mtime)
    return stamp.isoformat(sep=" ", timespec="seconds")


def settle(
    held: HeldResults | None, overwrite: bool, setting: str, elsewhere: str | None = None, also: str = ""
) -> bool:
    """Refuse (ResultsOfOtherSettings) when `held` was made with other settings and `overwrite` is off;
    with overwrite on, delete its files and say so. Returns whether anything was deleted.

    `setting` is the key that picks the directory (eval.output_dir, hydra.run.dir); `elsewhere` how to
    write elsewhere when that key alone does not say it; `also` a last sentence (another way out)."""
    if held is None or not held.changed:
        return False
    if not overwrite:
        listed = ", ".join(held.files) if held.files else "them"
        raise ResultsOfOtherSettings(
            held.directory,
            f"{held.directory} holds {held.holds}, made with other settings (changed: "
            f"{describe_changes(held.changed)}). A directory holds one run's results, so this command was "
            f"refused and nothing there was changed. To keep them, {elsewhere or f'write elsewhere ({setting}=<another dir>)'}; "
            f"to replace them on purpose, add {OVERWRITE_KEY}=true (it deletes {listed} there first)."
            + (f" {also}" if also else ""),
        )
    remove(held.directory, held.files)
    console.print(
        f"[yellow]{OVERWRITE_KEY}=true: deleted {held.holds} in {held.directory} ({', '.join(held.files)}); "
        "starting again.[/yellow]",
        soft_wrap=True,
    )
    return True


def remove(directory: Path, names: list[str]) -> None:
    for name in names:
        path = Path(directory) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def present(directory: Path, names: list[str] | tuple[str, ...]) -> list[str]:
    """The names of `names` that exist in `directory` (files or folders)."""
    return [name for name in names if (Path(directory) / name).exists()]
