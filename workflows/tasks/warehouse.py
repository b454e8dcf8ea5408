"""A load into a warehouse that may be down, for docs/failure_handling.md.

The run param `state` names a directory: the warehouse is up when
`<state>/warehouse-up` exists (else the load exits 3, which is worth a
retry); `--check` exits 2 when `<state>/schema-bad` exists (a mismatch no
retry can fix: the workflow declares exit code 2 not retryable).
"""
import json
import os
import sys

state = json.loads(os.environ["ORK_INPUT"])["params"]["state"]
if "--check" in sys.argv:
    if os.path.exists(os.path.join(state, "schema-bad")):
        print("the table's schema does not match the extract: retrying will not help", file=sys.stderr)
        sys.exit(2)
    print("schema ok")
    sys.exit(0)
if not os.path.exists(os.path.join(state, "warehouse-up")):
    print("the warehouse refused the connection", file=sys.stderr)
    sys.exit(3)
print("loaded")
