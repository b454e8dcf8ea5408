#!/usr/bin/env python3
"""Runs every shell command the README and docs show, literally as written.

Each ```bash (or ```sh) block of a Markdown file is one step, run with
`bash -euo pipefail` from the root of a scratch copy of the repository (one
copy per file, so that the files' state does not mix), in the order the file
shows them. A block may be preceded by an HTML comment that says how to run
it; the comment is invisible when the Markdown is rendered:

  <!-- docs: background; ready: http://127.0.0.1:4000/health -->
      a server: started in the background, waited for until the URL answers
      (or `ready: tcp 127.0.0.1:9000`), stopped when the file is done;
  <!-- docs: retry: 60s; expect: "success" -->
      run again until its output contains the text (or the time is up);
  <!-- docs: exit: 1 -->
      must exit with this code;
  <!-- docs: timeout: 40m -->
      may run this long (default 15m), for a long build;
  <!-- docs: cloud -->
      needs a cloud account, so it cannot run here: checked with `bash -n`
      only, and listed as such in the summary;
  <!-- docs: self -->
      the test command itself (this script runs inside it): listed, not run.

Usage: run_docs.py [FILE.md ...]   (default: README.md, docs/, infra/, workflows/)
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*docs:\s*(.*?)\s*-->\s*$")
STEP_TIMEOUT = 900


def blocks(path):
    """(line, language, directive, text) of each fenced block in a file."""
    lines = path.read_text().splitlines()
    out, i, directive = [], 0, ""
    while i < len(lines):
        d = DIRECTIVE.match(lines[i])
        if d:
            directive = d.group(1)
            i += 1
            continue
        m = FENCE.match(lines[i])
        if m:
            start, lang, body = i + 1, m.group(1), []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append((start, lang, directive, "\n".join(body) + "\n"))
            directive = ""
        elif lines[i].strip():
            directive = ""
        i += 1
    return out


def options(directive):
    opts = {}
    for part in filter(None, (p.strip() for p in directive.split(";"))):
        key, _, value = part.partition(":")
        opts[key.strip()] = value.strip().strip('"')
    return opts


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", text)
    n = int(m.group(1))
    return {"ms": n / 1000, "s": n, "m": 60 * n, None: n}[m.group(2)]


def ready(spec, deadline):
    while time.time() < deadline:
        try:
            if spec.startswith("tcp "):
                host, port = spec[4:].rsplit(":", 1)
                socket.create_connection((host, int(port)), timeout=1).close()
            else:
                urllib.request.urlopen(spec, timeout=1).read()
            return True
        except Exception:
            time.sleep(0.5)
    return False


def scratch_copy():
    """A copy of the checkout without build output or local state."""
    dest = Path(tempfile.mkdtemp(prefix="ork-docs-")) / "ork"
    ignore = shutil.ignore_patterns("target", ".ork", ".git", "__pycache__", ".venv*", "node_modules")
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def run_file(md, env):
    results = []
    steps = [b for b in blocks(md) if b[1] in ("bash", "sh", "shell")]
    if not steps:
        return results
    work = scratch_copy()
    servers = []
    try:
        for line, _, directive, text in steps:
            where = f"{md.relative_to(ROOT)}:{line}"
            opts = options(directive)
            if "self" in opts:
                results.append((where, "the test command itself: it is what is running", True))
                continue
            if "cloud" in opts:
                check = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
                ok = check.returncode == 0
                results.append((where, "syntax only (needs a cloud account)" if ok else "SYNTAX ERROR", ok))
                if not ok:
                    print(check.stderr, file=sys.stderr)
                continue
            print(f"\n--- {where}\n{text}", file=sys.stderr, flush=True)
            if "background" in opts:
                proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", text], cwd=work, env=env,
                                        start_new_session=True)
                servers.append(proc)
                ok = ready(opts.get("ready", ""), time.time() + STEP_TIMEOUT) if "ready" in opts else True
                ok = ok and proc.poll() is None
                results.append((where, "started in the background" if ok else "DID NOT START", ok))
                if not ok:
                    return results
                continue
            deadline = time.time() + (seconds(opts["retry"]) if "retry" in opts else 0)
            while True:
                try:
                    r = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=work, env=env,
                                       capture_output=True, text=True,
                                       timeout=seconds(opts["timeout"]) if "timeout" in opts else STEP_TIMEOUT)
                    code, output = r.returncode, r.stdout + r.stderr
                except subprocess.TimeoutExpired:
                    code, output = None, "timed out"
                ok = code == int(opts.get("exit", "0")) and opts.get("expect", "") in output
                if ok or time.time() >= deadline:
                    break
                time.sleep(1)
            sys.stderr.write(output[-4000:])
            results.append((where, f"exit {code}", ok))
            if not ok:
                return results
    finally:
        for proc in servers:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(work.parent, ignore_errors=True)
    return results


def main():
    files = [Path(f).resolve() for f in sys.argv[1:]] or sorted(
        [ROOT / "README.md"]
        + list((ROOT / "docs").rglob("*.md"))
        + list((ROOT / "infra").rglob("*.md"))
        + list((ROOT / "workflows").rglob("*.md"))
    )
    env = dict(os.environ)
    # One build directory for every copy: the commands are the same, the
    # compilation is not redone per file.
    env.setdefault("CARGO_TARGET_DIR", str(ROOT / "target"))
    results = []
    for md in files:
        results += run_file(md, env)
    failed = [r for r in results if not r[2]]
    for where, what, ok in results:
        print(f"{'ok  ' if ok else 'FAIL'} {where}: {what}")
    print(f"docs: {len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
