#!/usr/bin/env bash
# A PostgreSQL for `just up`: prints the URL of the project database `ork`.
#
#   local-pg.sh url     the URL, starting nothing
#   local-pg.sh start   the same, after making sure a server answers: a
#                       server already on $ORK_PG_PORT (default 5432) is
#                       used; else one is initialized and started in a
#                       project-owned data directory (.ork/pg) with the
#                       pg_ctl of /usr/lib/postgresql/*/bin. The database
#                       `ork` is created when missing.
#   local-pg.sh stop    stops the server this script started, if any.
#
# $ORK_DATABASE_URL, when set, is used as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${ORK_PG_PORT:-5432}"
db=ork
data="${ORK_PG_DATA:-$PWD/.ork/pg}"

run_as_pg() {
  # PostgreSQL refuses to run as root: as root, its files belong to the
  # `postgres` user and its programs run as that user.
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

if [ "$(id -u)" = 0 ] && [ -z "${ORK_PG_DATA:-}" ] && ! (cd / && runuser -u postgres -- test -x "$(dirname "$data")") 2>/dev/null; then
  # The checkout is not reachable for the postgres user (a private /tmp
  # directory): keep the data next to it, under a name derived from it.
  data="${TMPDIR:-/tmp}/ork-pg-$(printf %s "$PWD" | cksum | cut -d' ' -f1)"
fi

answers() {
  python3 - "$1" <<'PY' 2>/dev/null
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
body = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
sys.exit(0 if s.recv(1) in (b"R", b"E") else 1)
PY
}

taken() {
  python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)' "$1" 2>/dev/null
}

bindir() {
  local pg_ctl
  pg_ctl=$(command -v pg_ctl || ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$pg_ctl" ]; then
    echo "no PostgreSQL found: install it (apt-get install postgresql, brew install postgresql) or set ORK_DATABASE_URL" >&2
    exit 1
  fi
  dirname "$pg_ctl"
}

# The port of a server started here before (it may have moved off a taken port).
if [ -f "$data/ork.port" ]; then port=$(cat "$data/ork.port"); fi
url="postgres://postgres@127.0.0.1:$port/$db"

case "${1:-url}" in
  url)
    echo "${ORK_DATABASE_URL:-$url}"
    ;;
  start)
    if [ -n "${ORK_DATABASE_URL:-}" ]; then echo "$ORK_DATABASE_URL"; exit 0; fi
    if ! answers "$port"; then
      while taken "$port"; do port=$((port + 1)); done
      bin=$(bindir)
      if [ ! -f "$data/PG_VERSION" ]; then
        echo "initializing a PostgreSQL cluster in $data" >&2
        mkdir -p "$data"
        [ "$(id -u)" = 0 ] && chown postgres: "$data"
        chmod 700 "$data"
        run_as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
      fi
      echo "$port" | run_as_pg tee "$data/ork.port" >/dev/null
      echo "starting PostgreSQL on 127.0.0.1:$port (log: $data/server.log)" >&2
      run_as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $data" start >/dev/null
      url="postgres://postgres@127.0.0.1:$port/$db"
    fi
    python3 - "$port" "$db" <<'PY'
import socket, struct, sys
# CREATE DATABASE through the simple query protocol (no psql needed).
port, db = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
body = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
def messages():
    buf = b""
    while True:
        while len(buf) >= 5:
            kind, n = buf[:1], struct.unpack("!I", buf[1:5])[0]
            if len(buf) < 1 + n:
                break
            yield kind, buf[5:1 + n]
            buf = buf[1 + n:]
        chunk = s.recv(65536)
        if not chunk:
            return
        buf += chunk
m = messages()
for kind, payload in m:
    if kind == b"E":
        sys.exit("PostgreSQL refused the connection: " + payload.decode(errors="replace"))
    if kind == b"Z":
        break
q = f'CREATE DATABASE "{db}"'.encode() + b"\0"
s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
for kind, payload in m:
    if kind == b"E" and b"42P04" not in payload:  # 42P04: it exists already
        sys.exit("CREATE DATABASE failed: " + payload.decode(errors="replace"))
    if kind == b"Z":
        break
PY
    echo "$url"
    ;;
  stop)
    if [ -f "$data/postmaster.pid" ]; then
      run_as_pg "$(bindir)/pg_ctl" -D "$data" -m fast stop >/dev/null
      echo "stopped the PostgreSQL of $data" >&2
    fi
    ;;
  *)
    echo "usage: $0 url|start|stop" >&2
    exit 2
    ;;
esac
