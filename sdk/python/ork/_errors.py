"""How a task says it failed."""

from __future__ import annotations


class TaskError(Exception):
    """A failure the task chose; `retryable` says whether retries may help."""

    retryable = True

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class Retry(TaskError):
    """An ordinary failure: the attempt is retried per the task's `retries`."""

    retryable = True


class Fail(TaskError):
    """A failure retries cannot fix: the task fails at once, its retries unspent."""

    retryable = False
