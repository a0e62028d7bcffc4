#!/usr/bin/env bash
# Installs everything the tests need, then runs the whole test suite.
#   - Debian packages for the real peers (Postfix, Dovecot, BIND 9, OpenLDAP, rspamd, clients), when missing
#   - a virtualenv in .venv with mailstandby and its test dependencies
# Extra arguments go to pytest, e.g. `scripts/test.sh -k smuggling`.
set -euo pipefail
cd "$(dirname "$0")/.."

# swaks needs the two Perl TLS modules for --tls; apt's Recommends are not installed, so they are named here
PACKAGES=(postfix dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd swaks libnet-ssleay-perl libio-socket-ssl-perl
          fetchmail isync bind9 bind9-dnsutils slapd ldap-utils rspamd postgresql testssl.sh)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "==> installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # the distribution's postfix/dovecot/slapd/postgresql services stay off: the tests run private instances
    # (policy-rc.d exit 101 tells the packages' scripts not to start services while installing)
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -z "$policy" ] || $SUDO rm -f "$policy"
fi

# Every real peer must be able to do what the tests ask of it: fail here, naming what is missing,
# rather than let a test find out.
scripts/check-peers.sh

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PY" -m venv .venv
fi
echo "==> installing mailstandby and test dependencies into .venv"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

echo "==> ruff, import contracts"
.venv/bin/ruff check src tests bench fuzz
.venv/bin/lint-imports
echo "==> pytest"
# one worker per core (the suite is written to pass in parallel; on the 2-core CI machine it halves the run)
exec .venv/bin/python -m pytest -n auto "$@"
