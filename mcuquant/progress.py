"""Progress bars for long work (training, conversion, interpreter runs), on stderr via rich."""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, *, enabled: bool = True):
    """Yield `advance(n=1, **fields)`; draws a bar on a terminal, stays silent when disabled.

    On a non-terminal stderr (CI logs) rich prints the final state only.
    """
    if not enabled:
        yield lambda n=1, **fields: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}")]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=total, status="")

        def advance(n: int = 1, **fields):
            status = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            bar.update(task, advance=n, status=status)

        yield advance
