"""`python -m ork schema <task file> [--task NAME]`: prints the task's
input and output JSON Schema as `{"input": …, "output": …}`."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from typing import List, Optional

from . import _task


def load_tasks(path: str) -> List["_task.Task"]:
    """Imports a task file without running it, and returns its tasks."""
    path = os.path.abspath(path)
    sys.path.insert(0, os.path.dirname(path))  # as `python3 file` would
    spec = importlib.util.spec_from_file_location(
        "_ork_task_" + os.path.splitext(os.path.basename(path))[0], path
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    _task._LOADING_FOR_SCHEMA = True
    try:
        spec.loader.exec_module(module)
    finally:
        _task._LOADING_FOR_SCHEMA = False
    return [v for v in vars(module).values() if isinstance(v, _task.Task)]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ork")
    sub = parser.add_subparsers(dest="command", required=True)
    schema = sub.add_parser("schema", help="print a task file's input and output JSON Schema")
    schema.add_argument("file")
    schema.add_argument("--task", help="the task function, when the file has several")
    args = parser.parse_args(argv)

    tasks = load_tasks(args.file)
    if args.task:
        tasks = [t for t in tasks if t.name == args.task]
    if len(tasks) != 1:
        names = ", ".join(t.name for t in tasks) or "none"
        print(f"{args.file}: expected one @ork.task, found {names} (use --task)", file=sys.stderr)
        return 2
    json.dump(tasks[0].schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
