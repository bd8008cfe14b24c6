#!/bin/sh
# Obtains the certificate for TLS_DOMAIN once, then renews it when it has fewer than
# ACME_RENEW_DAYS left, checking every ACME_CHECK_SECONDS. Account key, certificate and key live
# in /var/lib/acme (a named volume); nothing secret is printed (lego logs no key material).
set -eu

fail() {
    echo "ACME: $*" >&2
    exit 1
}

[ -n "${TLS_DOMAIN:-}" ] || fail "TLS_DOMAIN is not set (the name to get a certificate for)"
[ -n "${ACME_EMAIL:-}" ] || fail "ACME_EMAIL is not set (the CA's contact for expiry notices)"
server=${ACME_SERVER:-https://acme-v02.api.letsencrypt.org/directory}
renew_days=${ACME_RENEW_DAYS:-30}
check_seconds=${ACME_CHECK_SECONDS:-43200}
# The day count alone decides: Debian trixie's lego (4.9.1) has no ARI (RFC 9773, the CA saying
# when to renew). A CA that revokes a batch early says so by email (ACME_EMAIL).
renew_flags=""
# lego waits a random few minutes before a renewal so that everyone's timers do not hit the CA
# at once, as Let's Encrypt asks; false only for a test's CA.
case "${ACME_RANDOM_SLEEP:-true}" in
    true) ;;
    false) renew_flags="--no-random-sleep" ;;
    *) fail "ACME_RANDOM_SLEEP=$ACME_RANDOM_SLEEP is not true or false" ;;
esac
# lego's own files under /var/lib/acme; the HTTP-01 tokens in the webroot nginx serves.
set -- --accept-tos --email "$ACME_EMAIL" --domains "$TLS_DOMAIN" --server "$server" \
    --path /var/lib/acme --http --http.webroot /var/lib/acme-webroot

until [ -s "/var/lib/acme/certificates/$TLS_DOMAIN.crt" ]; do
    lego "$@" run && break
    # A first start races nginx (it must be up to answer the challenge); CAs rate-limit
    # failures, so wait a minute between tries.
    echo "ACME: could not obtain a certificate for $TLS_DOMAIN yet, retrying in 60 s" >&2
    sleep "${ACME_RETRY_SECONDS:-60}"
done
while sleep "$check_seconds"; do
    # shellcheck disable=SC2086 # $renew_flags: a flag or nothing, split on purpose
    lego "$@" renew --days "$renew_days" $renew_flags ||
        echo "ACME: renewal for $TLS_DOMAIN failed, the current certificate stays" >&2
done
