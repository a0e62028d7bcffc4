#!/usr/bin/env bash
# Checks that every real peer the tests use is installed and can do what the tests ask of it
# (TLS in swaks and fetchmail, each server binary present). Exits non-zero naming each problem.
set -uo pipefail
problems=()
need_bin() {  # need_bin NAME PACKAGE
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || problems+=("$1 missing (Debian package $2)")
}
need_bin postfix postfix
need_bin dovecot dovecot-core
need_bin swaks swaks
need_bin fetchmail fetchmail
need_bin mbsync isync
need_bin named bind9
need_bin dig bind9-dnsutils
need_bin nsupdate bind9-dnsutils
need_bin slapd slapd
need_bin ldapsearch ldap-utils
need_bin rspamd rspamd
need_bin testssl testssl.sh
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || problems+=("PostgreSQL server missing (Debian package postgresql)")
id postgres >/dev/null 2>&1 || problems+=("no postgres system user (Debian package postgresql)")
for lib in imap lmtp pop3; do
    [ -e "/usr/lib/dovecot/$lib" ] || problems+=("dovecot's $lib service missing (Debian package dovecot-${lib}d)")
done
if command -v swaks >/dev/null 2>&1; then
    support=$(swaks --support 2>&1)
    grep -q "=== TLS supported" <<<"$support" \
        || problems+=("swaks cannot do STARTTLS (Debian packages libnet-ssleay-perl, libio-socket-ssl-perl)")
fi
if command -v fetchmail >/dev/null 2>&1; then
    version=$(fetchmail -V 2>&1)
    grep -q "+SSL" <<<"$version" || problems+=("fetchmail was built without TLS")
fi
if ((${#problems[@]})); then
    printf 'check-peers: %s\n' "${problems[@]}" >&2
    exit 1
fi
echo "==> every real peer is installed and can do TLS"
