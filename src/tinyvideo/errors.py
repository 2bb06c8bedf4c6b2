"""The project's error for bad input."""

from __future__ import annotations


class InputError(ValueError):
    """Input the user must fix: a flag, a data file or row, a video, a checkpoint folder, a prompt.

    The message is one line naming the problem and, where there is one, the file (and line or row).
    `tinyvideo` commands print it and exit with status 2; `--debug` shows the traceback instead.
    """
