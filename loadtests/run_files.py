"""Where a load-test run's files go: locust's CSV files and the order ids its users note.

In ``--csv DIR``, or a folder of its own in /tmp. Made ready before anything starts: a folder
that cannot be written is said then (not after the server started), and an earlier run's
statistics there are removed, so that a run whose locust never started cannot report them as its own.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

# what locust writes with ``--csv PREFIX``: PREFIX + each of these
LOCUST_FILES = ("_stats.csv", "_stats_history.csv", "_failures.csv", "_exceptions.csv")


class FolderError(Exception):
    """The run's folder cannot be made or written (one line saying why)."""


@dataclass
class RunFiles:
    """A run's files: ``prefix`` (``FOLDER/run``, locust's ``--csv``) and ``orders``."""

    prefix: Path
    own_folder: bool  # a folder in /tmp made for this run (removed by :meth:`discard`)

    @property
    def orders(self) -> Path:
        """The order ids the users note, from every worker process."""
        return Path(f"{self.prefix}_orders.txt")

    def locust_file(self, suffix: str) -> Path:
        """One of locust's files (``_stats.csv``, ...)."""
        return Path(f"{self.prefix}{suffix}")

    def discard(self) -> None:
        """Remove the folder, if it was made for this run."""
        if self.own_folder:
            shutil.rmtree(self.prefix.parent, ignore_errors=True)


def prepare(folder: str | None) -> RunFiles:
    """The files of a run in ``folder`` (made if need be; None: a new folder in /tmp), without an
    earlier run's: locust's files removed and the order list empty. FolderError when it cannot."""
    try:
        where = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="tracker-locust-"))
        files = RunFiles(where / "run", own_folder=not folder)
        where.mkdir(parents=True, exist_ok=True)
        for suffix in LOCUST_FILES:
            files.locust_file(suffix).unlink(missing_ok=True)
        files.orders.write_text("")
    except OSError as exc:
        where = f"--csv {folder}" if folder else f"the temporary folder {tempfile.gettempdir()}"
        raise FolderError(f"{where}: cannot write there ({exc.strerror or exc})") from None
    return files
