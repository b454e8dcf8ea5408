"""`ork.context()`: which attempt of which task this is."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from . import _io

_input_doc: Optional[Dict[str, Any]] = None


@dataclass(frozen=True)
class Context:
    run_id: str
    workflow: str
    task: str
    index: int
    count: int
    attempt: int
    params: Dict[str, Any] = field(default_factory=dict)


def _doc() -> Dict[str, Any]:
    global _input_doc
    if _input_doc is None:
        _input_doc = _io.read_input()
    return _input_doc


def _set_doc(doc: Optional[Dict[str, Any]]) -> None:
    global _input_doc
    _input_doc = doc


def context() -> Context:
    """The attempt's identity (from `ORK_RUN_ID`, `ORK_WORKFLOW`, `ORK_TASK`,
    `ORK_TASK_INDEX`, `ORK_TASK_COUNT`, `ORK_ATTEMPT`) and the run's params.
    Outside Ork (a task run by hand) the fields are empty, index 0 of 1,
    attempt 1."""
    env = os.environ
    return Context(
        run_id=env.get("ORK_RUN_ID", ""),
        workflow=env.get("ORK_WORKFLOW", ""),
        task=env.get("ORK_TASK", ""),
        index=int(env.get("ORK_TASK_INDEX") or 0),
        count=int(env.get("ORK_TASK_COUNT") or 1),
        attempt=int(env.get("ORK_ATTEMPT") or 1),
        params=dict(_doc().get("params") or {}),
    )
