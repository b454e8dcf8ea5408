# Everyday commands. `just --list` shows them.

# The server's address: every recipe that talks to it reads ORK_ADDR.
addr := env_var_or_default("ORK_ADDR", "127.0.0.1:4000")
export ORK_ADDR := addr

# Run a workflow end to end in this process (embedded SQLite, local processes)
run name="etl":
    cargo run -q -p ork-cli -- run workflows/{{name}}.yaml

# Check the toolchain, install cargo-lambda and just (PyPI), and start the database
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    need=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
    have=$(rustc --version | cut -d' ' -f2)
    if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
        echo "rustc $have is older than the workspace's rust-version $need: rustup update" >&2
        exit 1
    fi
    echo "rustc $have (>= $need), $(cargo --version)"
    command -v python3 >/dev/null || { echo "python3 is needed (python tasks, the tools below)" >&2; exit 1; }
    if ! command -v cargo-lambda >/dev/null || ! command -v just >/dev/null; then
        python3 -m pip install -q cargo-lambda rust-just
    fi
    bash scripts/local-pg.sh start

# Start PostgreSQL if none answers (.ork/pg, database `ork`), then serve on $ORK_ADDR
up:
    ORK_DATABASE_URL="$(bash scripts/local-pg.sh start)" cargo run -p ork-cli -- serve

# The same on the embedded SQLite file
up-sqlite:
    cargo run -p ork-cli -- serve

# Stop the PostgreSQL that `just up` started, if it did
down:
    bash scripts/local-pg.sh stop

# Apply an example workflow and trigger it over HTTP on the server started by `just up`
example-run name="simple":
    ORK_DATABASE_URL="$(bash scripts/local-pg.sh url)" cargo run -q -p ork-cli -- apply workflows/{{name}}.yaml
    just trigger {{name}}

# The same against `just up-sqlite`
example-run-sqlite name="simple":
    cargo run -q -p ork-cli -- apply workflows/{{name}}.yaml
    just trigger {{name}}

# Trigger a stored workflow over HTTP
trigger workflow:
    curl -sS --fail-with-body -X POST "http://$ORK_ADDR/trigger" -H "authorization: Bearer ${ORK_API_KEY:-}" -d '{"workflow": "{{workflow}}"}'
    @echo

# Recent runs, or one run with its tasks, from the server's read API
status run="":
    curl -sS --fail-with-body "http://$ORK_ADDR/api/runs{{ if run == "" { "" } else { "/" + run } }}" -H "authorization: Bearer ${ORK_API_KEY:-}"
    @echo

# Seed 000's load test: create and run N noop task instances here, print the throughput
test-load n="1000":
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p .ork
    file=.ork/load-{{n}}.yaml
    printf 'name: load-{{n}}\ntasks:\n  work:\n    executor: noop\n    task_count: {{n}}\n' > "$file"
    cargo build -q --release -p ork-cli
    start=$(date +%s.%N)
    "${CARGO_TARGET_DIR:-target}/release/ork" run "$file" --json > .ork/load-{{n}}.json
    end=$(date +%s.%N)
    python3 -c 'import sys; n, s = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f"{n} tasks in {s:.2f} s: {n / s:.0f} tasks/s")' {{n}} "$start" "$end"

# The Lambda functions under `cargo lambda watch` on :9000, on .ork/, swept every 5 s
lambda-watch:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -p ork-cli
    export ORK_DATABASE_URL="${ORK_DATABASE_URL:-${DATABASE_URL:-sqlite:{{justfile_directory()}}/.ork/ork.db}}"
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
    cargo build --release -p ork-cli
    cargo build --release -p ork-functions
    cargo bench -p ork-tests --bench cli
    cargo bench -p ork-tests --bench engine
    cargo bench -p ork-tests --bench http
    cargo bench -p ork-tests --bench limits

# Lay out the code a run executes together in release builds: rewrite the
# linker's symbol order files (needs valgrind and PostgreSQL at $DATABASE_URL)
symbol-order:
    python3 scripts/symbol_order.py

fmt:
    cargo fmt --all

lint:
    cargo clippy --workspace --all-targets -- -D warnings
