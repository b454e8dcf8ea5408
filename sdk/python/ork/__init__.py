"""Ork's task SDK: typed task functions that speak the worker contract.

    @ork.task
    def main(input: Input) -> Output: ...

builds `Input` from the run's params, the upstream outputs and the foreach
item, calls the function and writes its `Output` to `$ORK_OUTPUT`
(docs/tasks.md). `ork.context()` describes the attempt; `raise ork.Retry(...)`
and `raise ork.Fail(...)` choose how a failure is treated.
"""

from ._context import Context, context
from ._errors import Fail, Retry
from ._task import Task, build_input, task

__all__ = ["Context", "Fail", "Retry", "Task", "build_input", "context", "task"]
__version__ = "0.1.0"
