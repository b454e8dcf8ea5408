"""Extract: produce the records the transforms share out (stands in for an API or a database)."""
import json
import os

records = [{"id": i, "amount": (i * 37) % 101} for i in range(1, 101)]
print(f"extracted {len(records)} records (run {os.environ['ORK_RUN_ID']})")
with open(os.environ["ORK_OUTPUT"], "w") as out:
    json.dump({"records": records}, out)
