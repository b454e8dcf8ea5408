# Everyday commands. `just --list` shows them.

# Run the example workflow end to end on embedded SQLite
example-run name="etl":
    cargo run -q -p ork-cli -- run workflows/{{name}}.yaml

# The whole test suite (starts PostgreSQL if none is running)
test:
    bash scripts/test.sh

# Throughput, latency percentiles and peak memory on both backends
bench:
    cargo bench -p ork-shared --bench engine

fmt:
    cargo fmt --all

lint:
    cargo clippy --workspace --all-targets -- -D warnings
