"""Load: combine the shards' totals. With --fail it fails, to show retries and skips."""
import json
import os
import sys

if "--fail" in sys.argv:
    print("the warehouse refused the connection", file=sys.stderr)
    sys.exit(3)
shards = json.loads(os.environ["ORK_INPUT"])["upstream"]["transform"]
summary = {"records": sum(s["records"] for s in shards), "total": sum(s["total"] for s in shards)}
print(f"loaded {summary}")
with open(os.environ["ORK_OUTPUT"], "w") as out:
    json.dump(summary, out)
