#!/usr/bin/env python3
"""Writes cli/symbol-order.txt and functions/symbol-order.txt: the
functions that `ork run` and a Lambda handler execute, for the linker to
lay out together.

Why: a process's resident set includes every page of the binary it
touches, and the kernel maps 64 KiB around each fault. Left in crate order,
the ~2.7 MB of code a run executes is spread over the 34 MB `.text`, and a
40-task `ork run` touched 11 MB of it. `cli/build.rs` hands this file to
LLD (`--symbol-ordering-file`) in release builds for x86_64 Linux, so that
code sits in a few megabytes at the start of `.text`. A stale entry (a
renamed function) is skipped by the linker; the cost of a stale file is
only memory, so regenerate it when the release RSS in `just bench` grows.
The names are those of each package built on its own (`cargo build
--release -p ork-cli`, as the Dockerfile does): built together with
`-p ork-functions`, shared crates get other features and other names.

    just symbol-order

Each workload runs a release binary under valgrind's callgrind, which
counts the instructions of every function executed. A file lists the
functions of its binary's first workload, hottest first, then those that
only the next one executed, and so on: the code of a 40-task run is
packed tightest. Needs valgrind (Debian: valgrind) and
PostgreSQL at $DATABASE_URL (the Lambda handler runs on it, as deployed).
"""

import collections
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
DATABASE = "ork_symbol_order"


def callgrind(argv, out, env, cwd):
    """Runs argv under callgrind, its profile written to `out`."""
    cmd = ["valgrind", "--tool=callgrind", "--demangle=no",
           f"--callgrind-out-file={out}", *argv]
    return subprocess.Popen(cmd, env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def self_costs(profile, binary):
    """Instructions executed in each function of `binary`, from a
    callgrind profile (names compressed as `fn=(id) name`, then `fn=(id)`)."""
    costs = collections.Counter()
    names = {"ob": {}, "fn": {}}
    current_ob = current_fn = None
    after_calls = False
    for line in open(profile, errors="replace"):
        m = re.match(r"(c?)(ob|fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            called, kind, ident, name = m.groups()
            if name:
                names[kind][ident] = name
            if not called and kind == "ob":
                current_ob = names["ob"].get(ident)
            elif not called:
                current_fn = names["fn"][ident] if current_ob == binary else None
                if current_fn:
                    costs[current_fn] += 0
        elif line.startswith("calls="):
            after_calls = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            # The line after `calls=` is the call's inclusive cost.
            if after_calls:
                after_calls = False
            elif current_fn:
                fields = line.split()
                if len(fields) >= 2:
                    costs[current_fn] += int(fields[1])
    # callgrind marks recursion levels as `name'2`.
    merged = collections.Counter()
    for name, cost in costs.items():
        merged[re.sub(r"'\d+$", "", name)] += cost
    return merged


def ordered(workloads):
    """Functions by first workload to run them, hottest first within one."""
    seen, names = set(), []
    for costs in workloads:
        for name, _ in costs.most_common():
            if name not in seen:
                seen.add(name)
                names.append(name)
    return names


# What the binaries are built from. Any change to it may rename the
# functions a file lists (a generic instance's hash, LLVM's `.llvm.N`
# suffixes, a closure's number), so the files record its fingerprint and
# `tests/tests/symbol_order.rs` fails when it no longer matches.
SOURCE_DIRS = ("shared", "api", "cli", "functions")
SOURCE_FILES = ("Cargo.toml", "Cargo.lock")


def sources_fingerprint():
    """SHA-256 over each source's path and bytes, sorted by path: every
    `*.rs` and `Cargo.toml` under SOURCE_DIRS, and SOURCE_FILES."""
    paths = [Path(f) for f in SOURCE_FILES]
    for top in SOURCE_DIRS:
        for path in (ROOT / top).rglob("*"):
            rel = path.relative_to(ROOT)
            if "target" in rel.parts or not path.is_file():
                continue
            if path.suffix == ".rs" or path.name == "Cargo.toml":
                paths.append(rel)
    digest = hashlib.sha256()
    for rel in sorted(paths, key=lambda p: p.as_posix()):
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update((ROOT / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def write(path, names, fingerprint):
    # LLD skips the lines of an ordering file that start with `#`.
    header = f"# sources {fingerprint} (just symbol-order)\n"
    path.write_text(header + "".join(f"{n}\n" for n in names))
    print(f"{path.relative_to(ROOT)}: {len(names)} functions", file=sys.stderr)


def chain(n, task):
    lines = ["name: chain", "tasks:"]
    for i in range(n):
        deps = f", depends_on: [t{i - 1}]" if i else ""
        lines.append(f"  t{i}: {{{task}{deps}}}")
    return "\n".join(lines) + "\n"


SH = "command: [sh, -c, 'echo hi']"
WORKFLOWS = {
    "chain-sh": chain(40, SH),
    "chain-noop": chain(40, "executor: noop"),
    "fan-sh": f"name: fan\ntasks:\n  start: {{{SH}}}\n"
              f"  work: {{{SH}, depends_on: [start], task_count: 200}}\n"
              f"  join: {{{SH}, depends_on: [work]}}\n",
    "fan-noop": "name: fan\ntasks:\n  start: {executor: noop}\n"
                "  work: {executor: noop, depends_on: [start], task_count: 2000}\n"
                "  join: {executor: noop, depends_on: [work]}\n",
}
LAMBDA_WORKFLOW = ("name: rss\ntasks:\n  a: {executor: noop}\n"
                   "  b: {executor: noop, depends_on: [a]}\n"
                   "  c: {executor: noop, depends_on: [b]}\n")


def psql(url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True,
                   env=dict(os.environ, PGOPTIONS="--client-min-messages=warning"))


def scratch_database():
    """A fresh database beside $DATABASE_URL's, and its URL."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("DATABASE_URL is not set: the Lambda handler's workload runs on PostgreSQL")
    psql(url, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    psql(url, f"CREATE DATABASE {DATABASE}")
    return urllib.parse.urlparse(url)._replace(path=f"/{DATABASE}").geturl()


def runtime_api(event):
    """A Lambda Runtime API serving `event` once; returns the server and an
    Event set when the function has answered."""
    answered = threading.Event()
    served = []

    class Api(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if served:
                answered.wait()
                return
            served.append(True)
            body = json.dumps(event).encode()
            self.send_response(200)
            self.send_header("lambda-runtime-aws-request-id", "req-1")
            self.send_header("lambda-runtime-deadline-ms", "99999999999999")
            self.send_header("lambda-runtime-invoked-function-arn",
                             "arn:aws:lambda:us-east-1:123456789012:function:trigger")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()
            answered.set()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, answered


def main():
    fingerprint = sources_fingerprint()
    # Each package on its own, as the Dockerfile and `just bench` build it:
    # built together, they unify features into different symbol names.
    for package in ("ork-cli", "ork-functions"):
        subprocess.run(["cargo", "build", "-q", "--release", "-p", package], check=True, cwd=ROOT)
    ork, trigger = TARGET / "ork", TARGET / "trigger"
    pg = scratch_database()
    ork_runs = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name, yaml in WORKFLOWS.items():
            work = scratch / name
            work.mkdir()
            (work / "wf.yaml").write_text(yaml)
            env = dict(os.environ, ORK_DATABASE_URL=f"sqlite:{work / 'ork.db'}",
                       ORK_LOG_DIR=str(work / "logs"))
            env.pop("DATABASE_URL", None)
            profile = work / "callgrind.out"
            if callgrind([ork, "run", "wf.yaml"], profile, env, work).wait() != 0:
                sys.exit(f"ork run of {name} failed")
            ork_runs.append(self_costs(profile, str(ork)))

        # The Lambda `trigger` handler answering a Function URL request on
        # PostgreSQL, its run advanced inline (as `just bench` measures it).
        work = scratch / "lambda"
        work.mkdir()
        (work / "wf.yaml").write_text(LAMBDA_WORKFLOW)
        env = dict(os.environ, ORK_DATABASE_URL=pg, ORK_API_KEY="order-key",
                   ORK_SIGNING_KEY="order-order-order-order-order-32", RUST_LOG="error")
        profile = work / "apply.out"
        if callgrind([ork, "apply", "wf.yaml"], profile, env, work).wait() != 0:
            sys.exit("ork apply on PostgreSQL failed")
        ork_runs.append(self_costs(profile, str(ork)))
        event = {
            "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
            "headers": {"authorization": "Bearer order-key", "content-type": "application/json"},
            "requestContext": {"http": {"method": "POST", "path": "/"}, "requestId": "r",
                               "timeEpoch": 0},
            "body": json.dumps({"workflow": "rss"}), "isBase64Encoded": False,
        }
        server, answered = runtime_api(event)
        env.update(AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
                   AWS_LAMBDA_FUNCTION_NAME="trigger", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024",
                   AWS_LAMBDA_FUNCTION_VERSION="$LATEST")
        profile = work / "trigger.out"
        handler = callgrind([trigger], profile, env, work)
        if not answered.wait(timeout=300):
            handler.kill()
            sys.exit("the trigger handler did not answer")
        handler.terminate()  # callgrind writes its profile on SIGTERM
        handler.wait()
        server.shutdown()
        handler_run = self_costs(profile, str(trigger))
    psql(os.environ["DATABASE_URL"], f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")

    write(ROOT / "cli" / "symbol-order.txt", ordered(ork_runs), fingerprint)
    write(ROOT / "functions" / "symbol-order.txt", ordered([handler_run]), fingerprint)


if __name__ == "__main__":
    main()
