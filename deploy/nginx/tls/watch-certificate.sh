#!/bin/sh
# TLS_MODE=acme: reloads nginx when lego's certificate for the domain appears or is renewed.
# A reload is graceful: old workers finish their requests and keep-alive clients, new ones take
# the new certificate; nothing restarts, and no container needs the Docker socket.
# Arguments: domain, the certificate nginx serves now, the redirect port suffix.
set -u
. /etc/nginx/tls/lib.sh
domain=$1 serving=$2 redirect_port=$3
cert=/var/lib/acme/certificates/$domain.crt
key=/var/lib/acme/certificates/$domain.key
seen=$(cksum <"$serving" 2>/dev/null)
while sleep "${TLS_WATCH_SECONDS:-5}"; do
    now=$(cksum <"$cert" 2>/dev/null) || continue
    [ "$now" = "$seen" ] && continue
    # lego writes the certificate and the key one after the other: a pair that does not match
    # yet is a write in progress, looked at again next time.
    pair_problem "$cert" "$key" >/dev/null || continue
    render_server_conf "$cert" "$key" "$redirect_port"
    if nginx -s reload 2>/dev/null; then
        seen=$now
        echo "TLS: certificate for $domain changed ($(openssl x509 -in "$cert" -noout -enddate)), nginx reloaded" >&2
    fi
done
