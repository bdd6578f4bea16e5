"""Running a plan or a sync from the terminal: progress bars on a terminal, Ctrl-C and SIGTERM as a request
to stop between batches."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from accoil_sync.cli_output import err
from accoil_sync.config.settings import Settings
from accoil_sync.sync.runner import EXIT_INTERRUPTED, RunResult, execute


class _Bar:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def add_total(self, n: int) -> None:
        task = self._progress.tasks[self._progress.task_ids.index(self._task)]
        self._progress.update(self._task, total=(task.total or 0) + n)


class _Rate(ProgressColumn):
    """Items a second (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")


class _Bars:
    """``sync.progress.Progress`` drawn by rich: count, total, rate and elapsed time per phase."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )

    def task(self, description: str, total: int | None) -> _Bar:
        return _Bar(self.progress, self.progress.add_task(description, total=total))


def progress_bars(log_format: str, settings: Settings) -> _Bars | None:
    """Bars on a terminal only, and never beside JSON logs (a collector would get the escape codes)."""
    fmt = log_format if log_format != "auto" else settings.log.format
    if not sys.stderr.isatty() or fmt == "json":
        return None
    return _Bars()


def run(settings: Settings, log_format: str = "auto", **kwargs: Any) -> RunResult:
    bars = progress_bars(log_format, settings)
    try:
        if bars is None:
            return asyncio.run(_interruptible(settings, **kwargs))
        with bars.progress:
            return asyncio.run(_interruptible(settings, progress=bars, **kwargs))
    except (asyncio.CancelledError, KeyboardInterrupt):
        err.print("stopped at once: acknowledged writes are kept, the next run sends the rest")
        raise typer.Exit(EXIT_INTERRUPTED) from None


async def _interruptible(settings: Settings, **kwargs: Any) -> RunResult:
    """The run, with Ctrl-C and SIGTERM asking it to stop between batches: acknowledged writes are
    committed, the run is recorded as interrupted (exit 130) and the result still printed. A second
    signal stops at once."""
    halt = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def stop(signum: int) -> None:
        if halt.is_set():
            if task is not None:
                task.cancel()
            return
        err.print(f"{signal.Signals(signum).name}: stopping after the batches in flight (again to stop now)")
        halt.set()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no such signal
            pass
    try:
        result = await execute(settings, halt=halt, **kwargs)
        result.halted = result.halted or halt.is_set()
        return result
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
