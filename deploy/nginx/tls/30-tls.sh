#!/bin/sh
# TLS at nginx (run by the image's /docker-entrypoint.sh after the templates are rendered).
#   TLS_MODE       off (default): plain HTTP on 8080 only, nothing below happens
#                  files: HTTPS on 8443 with TLS_CERT_FILE and TLS_KEY_FILE (mounted by the user)
#                  acme: HTTPS on 8443 with the certificate deploy/acme obtains for TLS_DOMAIN
#   HTTPS_PORT     the port clients use for HTTPS (the published one): HTTP redirects there
# Every bad input stops nginx before it starts, with one line naming it: the entrypoint runs
# this script under `set -e`, so exit 1 ends the container.
set -eu
. /etc/nginx/tls/lib.sh

fail() {
    echo "TLS: $*" >&2
    exit 1
}

mode=${TLS_MODE:-off}
case "$mode" in
    off) exit 0 ;;
    files | acme) ;;
    *) fail "TLS_MODE=$mode is not one of off, files, acme" ;;
esac
port=${HTTPS_PORT:-443}
case "$port" in
    '' | *[!0-9]*) fail "HTTPS_PORT=$port is not a port number" ;;
esac
# 443 is the default for https://, so the redirect names no port then.
if [ "$port" = 443 ]; then redirect_port=""; else redirect_port=":$port"; fi

if [ "$mode" = files ]; then
    cert=${TLS_CERT_FILE:-/etc/nginx/tls/files/fullchain.pem}
    key=${TLS_KEY_FILE:-/etc/nginx/tls/files/privkey.pem}
    problem=$(pair_problem "$cert" "$key") || fail "$problem"
else
    [ -n "${TLS_DOMAIN:-}" ] || fail "TLS_MODE=acme needs TLS_DOMAIN (the name to get a certificate for)"
    case "$TLS_DOMAIN" in
        *[!A-Za-z0-9.-]* | .* | *..*) fail "TLS_DOMAIN=$TLS_DOMAIN is not a host name" ;;
    esac
    cert=/var/lib/acme/certificates/$TLS_DOMAIN.crt
    key=/var/lib/acme/certificates/$TLS_DOMAIN.key
    if ! pair_problem "$cert" "$key" >/dev/null; then
        # No certificate yet (the first start) or a broken one: nginx must serve HTTP (the
        # challenge) meanwhile, so HTTPS starts with a throwaway self-signed one until the
        # watcher sees lego's and reloads.
        cert=/tmp/tls-placeholder.crt key=/tmp/tls-placeholder.key
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
            -subj "/CN=$TLS_DOMAIN" -keyout "$key" -out "$cert" 2>/dev/null
        echo "TLS: no certificate for $TLS_DOMAIN yet, serving a self-signed one until it comes" >&2
    fi
    # Runs beside nginx for the container's life (a child of nginx's master after the exec).
    /etc/nginx/tls/watch-certificate.sh "$TLS_DOMAIN" "$cert" "$redirect_port" &
fi

cp /etc/nginx/tls/http.conf /etc/nginx/conf.d/tls.conf
render_server_conf "$cert" "$key" "$redirect_port"
echo "TLS: $mode, HTTPS on 8443 (clients use port $port), certificate $cert" >&2
