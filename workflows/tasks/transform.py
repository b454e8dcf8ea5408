"""Transform one shard: this instance takes every ORK_TASK_COUNT-th record from ORK_TASK_INDEX on."""
import json
import os

index, count = int(os.environ["ORK_TASK_INDEX"]), int(os.environ["ORK_TASK_COUNT"])
records = json.loads(os.environ["ORK_INPUT"])["upstream"]["extract"]["records"]
shard = records[index::count]
total = sum(r["amount"] for r in shard)
print(f"shard {index}/{count}: {len(shard)} records, total {total}")
with open(os.environ["ORK_OUTPUT"], "w") as out:
    json.dump({"shard": index, "records": len(shard), "total": total}, out)
