# Everyday commands. `just --list` shows them.

pg := env_var_or_default("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")

# Run a workflow end to end in this process (embedded SQLite, local processes)
run name="etl":
    cargo run -q -p ork-cli -- run workflows/{{name}}.yaml

# Serve the handlers, the web UI (http://127.0.0.1:4000) and the sweeper tick on PostgreSQL
up:
    ORK_DATABASE_URL={{pg}} cargo run -p ork-cli -- serve

# The same on the embedded SQLite file
up-sqlite:
    cargo run -p ork-cli -- serve

# Apply an example workflow and trigger it over HTTP on the server started by `just up`
example-run name="etl":
    ORK_DATABASE_URL={{pg}} cargo run -q -p ork-cli -- apply workflows/{{name}}.yaml
    curl -sf -X POST http://127.0.0.1:4000/trigger -H "authorization: Bearer ${ORK_API_KEY:-}" -d '{"workflow": "{{name}}"}'

# The same against `just up-sqlite`
example-run-sqlite name="etl":
    cargo run -q -p ork-cli -- apply workflows/{{name}}.yaml
    curl -sf -X POST http://127.0.0.1:4000/trigger -H "authorization: Bearer ${ORK_API_KEY:-}" -d '{"workflow": "{{name}}"}'

# The Lambda functions under `cargo lambda watch` on :9000 (pip install cargo-lambda), on this
# checkout's .ork/ state, with a sweep POSTed to `advance` every 5 s (EventBridge's schedule, locally)
lambda-watch:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -p ork-cli
    export ORK_DATABASE_URL="${ORK_DATABASE_URL:-sqlite:{{justfile_directory()}}/.ork/ork.db}"
    export ORK_LOG_DIR="${ORK_LOG_DIR:-{{justfile_directory()}}/.ork/logs}"
    export ORK_SIGNING_KEY="${ORK_SIGNING_KEY:-local-dev-signing-key-0123456789abcdef}"
    export ORK_API_KEY="${ORK_API_KEY:-dev}"
    export ORK_CALLBACK_URL=http://127.0.0.1:9000/lambda-url/on-task-complete/
    export ORK_WORKER_PROGRAM="${CARGO_TARGET_DIR:-{{justfile_directory()}}/target}/debug/ork"
    (while sleep 5; do
        curl -sS -o /dev/null -X POST http://127.0.0.1:9000/lambda-url/advance/ -H "authorization: Bearer $ORK_API_KEY" || true
    done) &
    trap 'kill $! 2>/dev/null' EXIT
    cd functions
    cargo lambda watch -A 127.0.0.1 -P 9000

# The whole test suite (starts PostgreSQL and moto if needed)
test:
    bash scripts/test.sh

# Throughput, latency percentiles and peak memory on both backends
bench:
    cargo build --release -p ork-functions
    cargo bench -p ork-tests --bench engine
    cargo bench -p ork-tests --bench http

fmt:
    cargo fmt --all

lint:
    cargo clippy --workspace --all-targets -- -D warnings
