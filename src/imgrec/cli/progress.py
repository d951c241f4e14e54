"""The progress bar of the commands that go through many images."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

err = Console(stderr=True)


def progress_bar(what: str) -> Progress:
    """Done/total, images/s, failures and the time left, on a terminal only."""
    return Progress(
        TextColumn(f"{what} "), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} images/s"), TextColumn("[red]{task.fields[failed]} failed"),
        TimeRemainingColumn(), console=err, transient=False, disable=not err.is_terminal,
    )
