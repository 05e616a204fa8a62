"""Errors caused by a user's input: reported as one line, exit code 2, no traceback."""

from __future__ import annotations

from os import PathLike


class UserError(Exception):
    """A problem with the user's files or options; the message names the file and the problem."""

    def __init__(self, where: str | PathLike[str] | None, problem: str) -> None:
        self.where = None if where is None else str(where)
        self.problem = problem
        super().__init__(problem if where is None else f"{where}: {problem}")


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), for one-line reports."""
    text = str(error).strip()
    return (text.splitlines()[0][:limit] if text else "") or type(error).__name__
