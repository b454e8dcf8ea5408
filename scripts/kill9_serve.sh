#!/usr/bin/env bash
# The "kill -9 + restart" scenario of the reliability issue: RUNS runs of a
# 200-task workflow under `ork serve` on PostgreSQL; the server is killed
# with -9 KILLS times and restarted; then we wait for the runs to end and
# count runs finished and attempts left in flight. Run once per key mode:
#   scripts/kill9_serve.sh            # no ORK_SIGNING_KEY (.ork/signing.key)
#   KEYED=1 scripts/kill9_serve.sh    # a configured ORK_SIGNING_KEY
# Needs target/debug/ork (cargo build -p ork-cli) and psql.
set -euo pipefail
ORK=${ORK:-$(cd "$(dirname "$0")/.." && pwd)/target/debug/ork}
RUNS=${RUNS:-2}; KILLS=${KILLS:-5}; PORT=${PORT:-4917}
HB=${ORK_HEARTBEAT_TIMEOUT:-20s}
DB=ork_kill9_$$
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" >/dev/null
export ORK_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
export ORK_HEARTBEAT_TIMEOUT=$HB ORK_HEARTBEAT_SECS=2
unset DATABASE_URL
[ -n "${KEYED:-}" ] && export ORK_SIGNING_KEY=kill9-scenario-signing-key-of-32-bytes
work=$(mktemp -d); cd "$work"; mkdir .ork
cat > wide.yaml <<'YAML'
name: wide
tasks:
  t:
    command: sh
    args: [-c, 'sleep 1']
    task_count: 200
    retries: {count: 3, backoff: 1s}
YAML
"$ORK" apply wide.yaml >/dev/null
start() { "$ORK" serve --addr 127.0.0.1:$PORT --tick 2s >serve.log 2>&1 & echo $!; }
pid=$(start); sleep 1
for _ in $(seq "$RUNS"); do "$ORK" trigger wide >/dev/null; done
for _ in $(seq "$KILLS"); do
  sleep 3; kill -9 "$pid"; wait "$pid" 2>/dev/null || true; sleep 1; pid=$(start)
done
q() { psql -tA -h 127.0.0.1 -U postgres -d "$DB" -c "$1"; }
deadline=$((SECONDS + 300))
while [ "$(q "SELECT count(*) FROM runs WHERE status IN ('pending','running')")" != 0 ] && [ $SECONDS -lt $deadline ]; do sleep 2; done
mode=.ork/signing.key; [ -n "${KEYED:-}" ] && mode=ORK_SIGNING_KEY
echo "key: $mode; runs finished: $(q "SELECT count(*) FROM runs WHERE status IN ('success','failed')")/$RUNS ($(q "SELECT string_agg(status, ',') FROM runs"));" \
  "attempts still in flight: $(q "SELECT count(*) FROM tasks WHERE status IN ('dispatched','running')");" \
  "attempts failed by an expired lease: $(q "SELECT count(*) FROM events WHERE detail LIKE 'no heartbeat%'");" \
  "claims requeued: $(q "SELECT count(*) FROM events WHERE detail LIKE 'claim lease expired%'"); took ${SECONDS}s"
kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
sleep 1; psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE $DB WITH (FORCE)" >/dev/null
rm -rf "$work"
