"""`@ork.task`: a typed function as a task program."""

from __future__ import annotations

import inspect
import logging
import os
import sys
import traceback
import typing
from typing import Any, Callable, Dict, Optional, Type

from pydantic import BaseModel, TypeAdapter, ValidationError

from . import _context, _io
from ._errors import TaskError

log = logging.getLogger("ork")

#: Set by `python -m ork schema`: importing a task file must not run it.
_LOADING_FOR_SCHEMA = False


_MISSING = object()


def resolve_source(doc: Dict[str, Any], source: str) -> Any:
    """The value an `inputs:` entry names (docs/tasks.md): `params.NAME`,
    `item[.path]`, or an upstream task (the longest name that matches) with
    an optional path into its output; `_MISSING` where the path leads
    nowhere. Path steps are keys, or indexes into lists."""
    upstream = doc.get("upstream") or {}
    if source.startswith("params."):
        root, rest = doc.get("params") or {}, source[len("params."):]
    elif source == "item" or source.startswith("item."):
        if "item" not in doc:
            return _MISSING
        root, rest = {"item": doc["item"]}, source
    else:
        parents = [p for p in upstream if source == p or source.startswith(p + ".")]
        if not parents:
            return _MISSING
        parent = max(parents, key=len)
        root, rest = upstream[parent], source[len(parent) + 1:]
    value = root
    for step in [s for s in rest.split(".") if s]:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return _MISSING
    return value


def build_input(model: Type[BaseModel], doc: Dict[str, Any]) -> BaseModel:
    """The task's input model from the input document (docs/tasks.md): a
    field the task's `inputs:` mapping names takes what it points at;
    otherwise, by the default rule, a field named after an upstream task
    takes that task's output (a list, by index, for a fanned-out task); a
    field named `item` takes this instance's foreach item; any other field
    comes from the run's params. Fields are matched by alias when they have
    one. Raises pydantic's `ValidationError` naming the fields that do not
    fit."""
    upstream = doc.get("upstream") or {}
    params = doc.get("params") or {}
    mapping = doc.get("inputs") or {}
    data: Dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key in mapping:
            value = resolve_source(doc, mapping[key])
            if value is not _MISSING:
                data[key] = value
        elif key in upstream:
            data[key] = upstream[key]
        elif key == "item" and "item" in doc:
            data[key] = doc["item"]
        elif key in params:
            data[key] = params[key]
    return model.model_validate(data)


def _format_validation(what: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {e.get('msg')}")
    return f"{what}: " + "; ".join(parts)


class Task:
    """A task function with its input and output models. Calling it calls
    the function (for tests); `main()` runs it under the worker contract."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.name = fn.__name__
        hints = typing.get_type_hints(fn)
        params = list(inspect.signature(fn).parameters)
        if len(params) != 1:
            raise TypeError(f"@ork.task {fn.__qualname__} must take exactly one parameter, its input model")
        self.input_model = hints.get(params[0])
        if not (isinstance(self.input_model, type) and issubclass(self.input_model, BaseModel)):
            raise TypeError(
                f"@ork.task {fn.__qualname__}: the parameter {params[0]!r} must be annotated with a pydantic model"
            )
        self.output_type = hints.get("return", Any)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, input: Any) -> Any:
        return self.fn(input)

    def __repr__(self) -> str:
        return f"<ork.task {self.fn.__module__}.{self.name}>"

    def schema(self) -> Dict[str, Any]:
        """The JSON Schema of the input and of the output."""
        return {
            "input": self.input_model.model_json_schema(),
            "output": TypeAdapter(self.output_type).json_schema(),
        }

    def _dump(self, result: Any) -> Any:
        if self.output_type is Any or self.output_type is None or self.output_type is type(None):
            value = result
        else:
            value = TypeAdapter(self.output_type).validate_python(result)
        return TypeAdapter(Any).dump_python(value, mode="json")

    def main(self, environ: Optional[Dict[str, str]] = None) -> int:
        """Reads the input, calls the function, writes the output (or the
        error) per the worker contract; returns the exit code."""
        env = os.environ if environ is None else environ
        _configure_logging()
        try:
            doc = _io.read_input(env)
        except Exception as e:  # a broken input is the platform's, retryable
            return self._failed(f"cannot read the task input: {e}", True, env)
        _context._set_doc(doc)
        try:
            value = build_input(self.input_model, doc)
        except ValidationError as e:
            return self._failed(_format_validation(f"invalid input for {self.input_model.__name__}", e), False, env)
        try:
            result = self.fn(value)
        except TaskError as e:
            return self._failed(e.message or type(e).__name__, e.retryable, env)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            return self._failed(f"{type(e).__name__}: {e}", True, env)
        try:
            output = self._dump(result)
        except ValidationError as e:
            return self._failed(_format_validation("invalid output", e), False, env)
        _io.write_output(output, env)
        return 0

    def _failed(self, message: str, retryable: bool, env: Dict[str, str]) -> int:
        log.error("%s%s", message, "" if retryable else " (not retryable)")
        _io.write_error(message, retryable, env)
        return 1


def _configure_logging() -> None:
    """Log records go to stderr, the task's log, unless the program set up
    logging itself. `ORK_LOG_LEVEL` (INFO) sets the level."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            stream=sys.stderr,
            level=os.environ.get("ORK_LOG_LEVEL", "INFO").upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


def task(fn: Optional[Callable[..., Any]] = None) -> Any:
    """Makes `fn(input: Input) -> Output` an Ork task. When its module is
    run as a program (`python3 tasks/extract.py`, as the `python` executor
    runs files), the task runs at once and the process exits with its code."""

    def wrap(f: Callable[..., Any]) -> Task:
        t = Task(f)
        if f.__module__ == "__main__" and not _LOADING_FOR_SCHEMA:
            sys.exit(t.main())
        return t

    return wrap(fn) if fn is not None else wrap
