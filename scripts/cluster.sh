#!/usr/bin/env bash
# Three mailstandby nodes sharing one PostgreSQL store, all on 127.0.0.1 (ephemeral ports), in one command:
# a private PostgreSQL cluster is made with initdb on a free port under a temporary directory (the
# distribution's own cluster is never touched), then three nodes n1, n2, n3 start on it; one of them
# leads (docs/cluster.md). Where to connect is printed; Ctrl-C stops the nodes and the database.
#   scripts/cluster.sh                  # PYTHON=/path/to/venv/python to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || { echo "no $PY: run scripts/start.sh once (it makes .venv) or set PYTHON" >&2; exit 2; }
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$BIN" ] || { echo "PostgreSQL server binaries not found: apt-get install postgresql" >&2; exit 2; }
WORK=$(mktemp -d /tmp/msb-cluster-XXXXXX)
chmod 755 "$WORK"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AS=()
if [ "$(id -u)" = 0 ]; then  # PostgreSQL refuses to run as root: the package's postgres user runs it
    AS=(runuser -u postgres --)
    mkdir "$WORK/pg" && chown postgres "$WORK/pg"
fi
"${AS[@]}" "$BIN/initdb" -D "$WORK/pg/data" -U mailstandby -A trust -E UTF8 --locale C.UTF-8 >/dev/null
printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" "$PORT" "$WORK/pg" \
    >> "$WORK/pg/data/postgresql.conf"
"${AS[@]}" "$BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/postgres.log" -w start >/dev/null
"$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U mailstandby mailstandby
URL="postgresql://mailstandby@127.0.0.1:$PORT/mailstandby"

PIDS=()
cleanup() {
    trap - INT TERM EXIT
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    "${AS[@]}" "$BIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null || true
    echo "==> stopped; logs and data are in $WORK"
}
trap cleanup INT TERM EXIT

for n in 1 2 3; do
    mkdir -p "$WORK/n$n"
    cat > "$WORK/n$n/mailstandby.toml" <<TOML
[node]
id = "n$n"
hostname = "standby.example.test"
data_dir = "data"

[store]
url = "$URL"

[smtp]
listen = ["127.0.0.1:0"]

[imap]
listen = ["127.0.0.1:0"]
allow_plaintext_auth_on_loopback = true

[admin]
listen = ["127.0.0.1:0"]

[directory]
domains = ["example.test"]

[[directory.users]]
address = "alice@example.test"
TOML
    (cd "$WORK/n$n" && PYTHONPATH="$REPO/src" exec "$PY" -m mailstandby serve -c mailstandby.toml >log 2>&1) &
    PIDS+=($!)
done

echo "==> PostgreSQL: $URL"
for n in 1 2 3; do
    for _ in $(seq 200); do grep -q "admin listening" "$WORK/n$n/log" 2>/dev/null && break; sleep 0.1; done
    echo "==> node n$n ($WORK/n$n/mailstandby.toml, log $WORK/n$n/log):"
    grep "listening on" "$WORK/n$n/log" | sed 's/^mailstandby: /      /' || echo "      (not listening: see its log)"
done
cat <<TEXT
==> which node leads:  psql "$URL" -c 'SELECT term, node, lease_until FROM cluster_leader'
    any node takes mail: swaks --server 127.0.0.1:<smtp port> --to alice@example.test --from you@example.org
    stop the leader (kill -9 its process) and watch another take over in its log.  Ctrl-C stops everything.
TEXT
wait
