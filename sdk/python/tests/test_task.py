import json
import os
import subprocess
import sys
import textwrap
from typing import List, Optional

import pytest
from pydantic import BaseModel

import ork
from ork import _io
from conftest import read_json

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class User(BaseModel):
    id: int
    email: str


class Extracted(BaseModel):
    users: List[User]


class In(BaseModel):
    day: str
    extract: Extracted
    limit: int = 10


class Out(BaseModel):
    count: int
    first: Optional[str] = None


@ork.task
def summarize(input: In) -> Out:
    users = input.extract.users[: input.limit]
    return Out(count=len(users), first=users[0].email if users else None)


DOC = {"params": {"day": "2026-01-02", "limit": 1}, "upstream": {"extract": {"users": [
    {"id": 1, "email": "a@x"}, {"id": 2, "email": "b@x"}]}}}


def test_decorated_function_is_still_callable():
    out = summarize(In(day="d", extract=Extracted(users=[])))
    assert out == Out(count=0)


def test_input_from_params_and_upstream_output_written(task_env, tmp_path):
    env = task_env(DOC)
    assert summarize.main(env) == 0
    assert read_json(tmp_path / "output.json") == {"count": 1, "first": "a@x"}
    assert not (tmp_path / "error.json").exists()


def test_upstream_wins_over_params_and_item_fills_item():
    class M(BaseModel):
        extract: int
        item: str
        other: int = 0

    doc = {"params": {"extract": 1, "item": "p"}, "upstream": {"extract": 2}, "item": "it"}
    assert ork.build_input(M, doc) == M(extract=2, item="it")


def test_inputs_mapping_wins_and_follows_paths():
    class M(BaseModel):
        people: List[User]
        first_email: str
        when: str
        country: str = "?"
        missing: int = 7

    doc = {
        "params": {"day": "2026-01-02", "people": "ignored"},
        "upstream": {"extract": DOC["upstream"]["extract"], "ex": {"users": []}},
        "item": {"country": "FR"},
        "inputs": {
            "people": "extract.users",
            "first_email": "extract.users.0.email",
            "when": "params.day",
            "country": "item.country",
            "missing": "extract.nothing.here",
        },
    }
    m = ork.build_input(M, doc)
    assert [u.id for u in m.people] == [1, 2]
    assert (m.first_email, m.when, m.country, m.missing) == ("a@x", "2026-01-02", "FR", 7)


def test_inputs_mapping_to_nothing_names_the_field():
    class M(BaseModel):
        total: int

    with pytest.raises(Exception) as e:
        ork.build_input(M, {"upstream": {"a": {}}, "inputs": {"total": "a.total"}})
    assert "total" in str(e.value)


def test_fanned_out_upstream_is_a_list():
    class M(BaseModel):
        transform: List[int]

    assert ork.build_input(M, {"upstream": {"transform": [1, 2, 3]}}).transform == [1, 2, 3]


def test_validation_error_is_not_retryable_and_names_the_field(task_env, tmp_path):
    bad = json.loads(json.dumps(DOC))
    del bad["upstream"]["extract"]["users"][1]["email"]
    assert summarize.main(task_env(bad)) == 1
    err = read_json(tmp_path / "error.json")["ork_error"]
    assert err["retryable"] is False
    assert "extract.users.1.email" in err["message"]
    assert "Field required" in err["message"]
    assert not (tmp_path / "output.json").exists()


def test_missing_param_names_the_field(task_env, tmp_path):
    assert summarize.main(task_env({"params": {}, "upstream": DOC["upstream"]})) == 1
    assert "day: Field required" in read_json(tmp_path / "error.json")["ork_error"]["message"]


def test_retry_and_fail_choose_retryability(task_env, tmp_path):
    class I(BaseModel):
        mode: str

    @ork.task
    def flaky(input: I) -> Out:
        if input.mode == "retry":
            raise ork.Retry("the warehouse is busy")
        if input.mode == "fail":
            raise ork.Fail("the table does not exist")
        raise RuntimeError("boom")

    for mode, retryable, message in [
        ("retry", True, "the warehouse is busy"),
        ("fail", False, "the table does not exist"),
        ("crash", True, "RuntimeError: boom"),
    ]:
        assert flaky.main(task_env({"params": {"mode": mode}})) == 1
        assert read_json(tmp_path / "error.json")["ork_error"] == {"message": message, "retryable": retryable}


def test_bad_return_value_is_an_output_error(task_env, tmp_path):
    class I(BaseModel):
        pass

    @ork.task
    def wrong(input: I) -> Out:
        return {"count": "many"}

    assert wrong.main(task_env({})) == 1
    err = read_json(tmp_path / "error.json")["ork_error"]
    assert err["retryable"] is False and "count" in err["message"]


def test_dict_return_is_validated_and_dumped(task_env, tmp_path):
    class I(BaseModel):
        pass

    @ork.task
    def ok(input: I) -> Out:
        return {"count": "3"}

    assert ok.main(task_env({})) == 0
    assert read_json(tmp_path / "output.json") == {"count": 3, "first": None}


def test_input_file_and_item_env(tmp_path):
    f = tmp_path / "in.json"
    f.write_text(json.dumps({"params": {"a": 1}, "upstream": {}}))
    doc = _io.read_input({"ORK_INPUT_FILE": str(f), "ORK_ITEM": '{"k": 2}'})
    assert doc == {"params": {"a": 1}, "upstream": {}, "item": {"k": 2}}


def test_input_url(tmp_path):
    import http.server
    import threading

    body = json.dumps({"params": {"u": True}, "upstream": {}}).encode()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/input?sig=x"
        assert _io.read_input({"ORK_INPUT_URL": url})["params"] == {"u": True}
    finally:
        server.shutdown()


def test_no_input_is_empty():
    assert _io.read_input({}) == {"params": {}, "upstream": {}}


def test_output_without_ork_output_goes_to_stdout(capsys):
    _io.write_output({"a": 1}, {})
    assert json.loads(capsys.readouterr().out) == {"a": 1}


def test_context(monkeypatch, task_env):
    for k, v in task_env({"params": {"day": "d"}}, ORK_TASK_INDEX="2", ORK_TASK_COUNT="4", ORK_ATTEMPT="3").items():
        monkeypatch.setenv(k, v)
    ork._context._set_doc(None)
    c = ork.context()
    assert (c.run_id, c.workflow, c.task, c.index, c.count, c.attempt) == ("run-1", "wf", "t", 2, 4, 3)
    assert c.params == {"day": "d"}
    ork._context._set_doc(None)


TASK_FILE = textwrap.dedent(
    '''
    import logging
    from pydantic import BaseModel
    import ork

    class Input(BaseModel):
        n: int

    class Output(BaseModel):
        doubled: int

    @ork.task
    def main(input: Input) -> Output:
        logging.getLogger("double").info("doubling %d", input.n)
        return Output(doubled=2 * input.n)
    '''
)


def run_file(path, env):
    full = dict(os.environ, PYTHONPATH=SDK, **env)
    return subprocess.run([sys.executable, str(path)], env=full, capture_output=True, text=True)


def test_file_run_as_main_runs_the_task(tmp_path, task_env):
    path = tmp_path / "double.py"
    path.write_text(TASK_FILE)
    r = run_file(path, task_env({"params": {"n": 21}}))
    assert r.returncode == 0, r.stderr
    assert read_json(tmp_path / "output.json") == {"doubled": 42}
    assert "INFO double: doubling 21" in r.stderr

    r = run_file(path, task_env({"params": {"n": "x"}}))
    assert r.returncode == 1
    assert read_json(tmp_path / "error.json")["ork_error"]["retryable"] is False
    assert "n: Input should be a valid integer" in r.stderr


def test_schema_command(tmp_path):
    path = tmp_path / "double.py"
    path.write_text(TASK_FILE)
    r = subprocess.run(
        [sys.executable, "-m", "ork", "schema", str(path)],
        env=dict(os.environ, PYTHONPATH=SDK), capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert schema["input"]["properties"]["n"]["type"] == "integer"
    assert schema["input"]["required"] == ["n"]
    assert schema["output"]["properties"]["doubled"]["type"] == "integer"


def test_task_needs_a_model_parameter():
    with pytest.raises(TypeError):
        @ork.task
        def bad(x: int) -> Out:
            return Out(count=x)
