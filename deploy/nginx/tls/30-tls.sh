#!/bin/sh
# TLS at nginx (run by the image's /docker-entrypoint.sh after the templates are rendered).
#   TLS_MODE       off (default): plain HTTP on 8080 only, nothing below happens
#                  files: HTTPS on 8443 with TLS_CERT_FILE and TLS_KEY_FILE (mounted by the user)
#   HTTPS_PORT     the port clients use for HTTPS (the published one): HTTP redirects there
# Every bad input stops nginx before it starts, with one line naming it: the entrypoint runs
# this script under `set -e`, so exit 1 ends the container.
set -eu

fail() {
    echo "TLS: $*" >&2
    exit 1
}

mode=${TLS_MODE:-off}
out=/etc/nginx/conf.d
case "$mode" in
    off) exit 0 ;;
    files) ;;
    *) fail "TLS_MODE=$mode is not one of off, files" ;;
esac

cert=${TLS_CERT_FILE:-/etc/nginx/tls/files/fullchain.pem}
key=${TLS_KEY_FILE:-/etc/nginx/tls/files/privkey.pem}
port=${HTTPS_PORT:-443}
case "$port" in
    '' | *[!0-9]*) fail "HTTPS_PORT=$port is not a port number" ;;
esac

[ -r "$cert" ] || fail "TLS_CERT_FILE=$cert does not exist or is not readable by uid $(id -u)"
[ -r "$key" ] || fail "TLS_KEY_FILE=$key does not exist or is not readable by uid $(id -u)"
cert_key=$(openssl x509 -in "$cert" -noout -pubkey 2>/dev/null) ||
    fail "TLS_CERT_FILE=$cert is not a PEM certificate"
key_key=$(openssl pkey -in "$key" -pubout 2>/dev/null) ||
    fail "TLS_KEY_FILE=$key is not a PEM private key (or it is encrypted)"
[ "$cert_key" = "$key_key" ] ||
    fail "TLS_KEY_FILE=$key is not the key of the certificate in TLS_CERT_FILE=$cert"
openssl x509 -in "$cert" -noout -checkend 0 >/dev/null ||
    fail "TLS_CERT_FILE=$cert expired on $(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)"

# 443 is the default for https://, so the redirect names no port then.
if [ "$port" = 443 ]; then redirect_port=""; else redirect_port=":$port"; fi

cp /etc/nginx/tls/http.conf "$out/tls.conf"
mkdir -p "$out/tls"
TLS_CERT_FILE=$cert TLS_KEY_FILE=$key TLS_REDIRECT_PORT=$redirect_port \
    envsubst '${TLS_CERT_FILE} ${TLS_KEY_FILE} ${TLS_REDIRECT_PORT}' \
    </etc/nginx/tls/server.conf.template >"$out/tls/server.conf"
echo "TLS: $mode, HTTPS on 8443 (clients use port $port), certificate $cert" >&2
