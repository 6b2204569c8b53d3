"""Progress bars for long commands: tqdm on stderr (the summary stays alone on stdout)."""

import sys

from tqdm import tqdm


def progress_bar(*, total: int | None, unit: str, description: str, enabled: bool | None = None) -> tqdm:
    """A tqdm bar on stderr; by default only on a terminal (a log or a cron mail gets no control characters).

    A disabled bar takes every call and draws nothing, so callers never test for it.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(
        total=total,
        unit=unit,
        desc=description,
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not enabled,
        # Without a terminal (--progress into a file) a line every few seconds, not a redraw per update.
        mininterval=0.1 if sys.stderr.isatty() else 5.0,
    )


def progress_enabled(*, progress: bool = False, no_progress: bool = False) -> bool:
    """--progress forces the bar, --no-progress hides it; neither: on a terminal only."""
    if no_progress:
        return False
    return progress or sys.stderr.isatty()
