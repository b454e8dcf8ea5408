"""The worker contract's data side: where the input comes from, where the
output and the error go (docs/worker-contract.md). One function each, so
that a new transport changes this file only."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.request
from typing import Any, Dict, Optional

#: How long a presigned input URL may take to answer.
INPUT_URL_TIMEOUT = 60


def read_input(environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The attempt's input document, `{"params", "upstream", "item"?}`.

    It arrives in exactly one of `ORK_INPUT` (inline JSON), `ORK_INPUT_FILE`
    (a path to a JSON file) or `ORK_INPUT_URL` (an HTTPS GET URL); with none
    (a task run by hand) it is empty. `ORK_ITEM` fills `item` when the
    document has none.
    """
    env = os.environ if environ is None else environ
    if env.get("ORK_INPUT"):
        doc = json.loads(env["ORK_INPUT"])
    elif env.get("ORK_INPUT_FILE"):
        with open(env["ORK_INPUT_FILE"], encoding="utf-8") as f:
            doc = json.load(f)
    elif env.get("ORK_INPUT_URL"):
        with urllib.request.urlopen(env["ORK_INPUT_URL"], timeout=INPUT_URL_TIMEOUT) as r:
            doc = json.loads(r.read())
    else:
        doc = {}
    if not isinstance(doc, dict):
        raise ValueError(f"the task input is not a JSON object: {doc!r:.200}")
    doc.setdefault("params", {})
    doc.setdefault("upstream", {})
    if "item" not in doc and env.get("ORK_ITEM"):
        doc["item"] = json.loads(env["ORK_ITEM"])
    return doc


def write_output(value: Any, environ: Optional[Dict[str, str]] = None) -> None:
    """Writes the output JSON to `$ORK_OUTPUT` (atomically: a partial file is
    never read as output), or to stdout when it is unset."""
    env = os.environ if environ is None else environ
    path = env.get("ORK_OUTPUT")
    if not path:
        json.dump(value, sys.stdout)
        sys.stdout.write("\n")
        return
    _write_json(path, value)


def write_error(message: str, retryable: bool, environ: Optional[Dict[str, str]] = None) -> None:
    """Leaves `{"ork_error": {"message", "retryable"}}` at `$ORK_ERROR`, where
    the executor or `ork worker` reads why the attempt failed. Without
    `ORK_ERROR` nothing is written: the non-zero exit alone is the failure."""
    env = os.environ if environ is None else environ
    path = env.get("ORK_ERROR")
    if path:
        _write_json(path, {"ork_error": {"message": message, "retryable": retryable}})


def _write_json(path: str, value: Any) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ork-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
