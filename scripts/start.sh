#!/usr/bin/env bash
# Starts mailstandby on its embedded default: SQLite under ./mailstandby-data,
# loopback ports, the sample configuration (./mailstandby.toml is created from
# it on first run, so you can edit it). Ctrl-C stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PY" -m venv .venv
fi
echo "==> installing mailstandby into .venv"
.venv/bin/python -m pip install -q -e .
[ -f mailstandby.toml ] || .venv/bin/mailstandby init mailstandby.toml
.venv/bin/mailstandby check-config -c mailstandby.toml
cat <<'TEXT'
==> mailstandby is starting with ./mailstandby.toml (data in ./mailstandby-data)
    Try it:  swaks --server 127.0.0.1:2525 --to alice@example.test --from you@example.org
    Queue:   .venv/bin/mailstandby queue -c mailstandby.toml
    With no primary on 127.0.0.1:25 the monitor declares an outage within about 20 s and
    mail is delivered into the standby mailboxes; read it over IMAP (127.0.0.1:1143) after
             .venv/bin/mailstandby passwd -c mailstandby.toml alice@example.test
    Admin:   .venv/bin/mailstandby admin -c mailstandby.toml admin      (once), then
             .venv/bin/mailstandby status -c mailstandby.toml
TEXT
exec .venv/bin/mailstandby serve -c mailstandby.toml
