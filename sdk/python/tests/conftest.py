import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def task_env(tmp_path):
    """A worker-contract environment: output and error files in tmp_path."""

    def make(input_doc=None, **extra):
        import json

        env = {
            "ORK_RUN_ID": "run-1",
            "ORK_WORKFLOW": "wf",
            "ORK_TASK": "t",
            "ORK_TASK_INDEX": "0",
            "ORK_TASK_COUNT": "1",
            "ORK_ATTEMPT": "1",
            "ORK_OUTPUT": str(tmp_path / "output.json"),
            "ORK_ERROR": str(tmp_path / "error.json"),
        }
        if input_doc is not None:
            env["ORK_INPUT"] = json.dumps(input_doc)
        env.update(extra)
        return env

    return make


def read_json(path):
    import json

    with open(path) as f:
        return json.load(f)


sys.path.insert(0, HERE)
