#!/bin/sh
# Who is the edge, rendered into /etc/nginx/conf.d/00-edge.conf (http level) before nginx starts.
# Run by the image's /docker-entrypoint.sh (every /docker-entrypoint.d/*.sh, in name order). It
# writes a file of its own, so it needs nothing from 20-envsubst-on-templates.sh and the order
# between the two does not matter (the local stand-in renders templates before this directory;
# the official image runs both as scripts of this directory).
#   EDGE=nginx    nginx is the edge (compose): the client is the TCP peer; any X-Forwarded-*
#                 a client sends is ignored and replaced.
#   EDGE=gateway  a proxy in front is the edge (Kubernetes Gateway): trust exactly the peers in
#                 GATEWAY_ADDRESSES, take the client address the gateway appended (the rightmost
#                 X-Forwarded-For entry, real_ip_recursive off: a chain the client sent can't
#                 inject one) and the X-Forwarded-Proto it sent. Any other peer is a client.
# Each bad value stops the container with one line naming it.
set -eu
out=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}/00-edge.conf
fail() { echo "nginx: $1" >&2; exit 1; }

case "${EDGE:-}" in
nginx)
    [ -z "${GATEWAY_ADDRESSES:-}" ] ||
        fail "GATEWAY_ADDRESSES is set but EDGE=nginx ignores it: set EDGE=gateway or unset it"
    {
        echo "# EDGE=nginx: the client is the peer."
        echo 'map "" $edge_proto { default $scheme; }'
    } >"$out"
    ;;
gateway)
    [ -n "${GATEWAY_ADDRESSES:-}" ] ||
        fail "EDGE=gateway needs GATEWAY_ADDRESSES, the gateway's address ranges (e.g. 10.0.0.0/8)"
    ranges=$(printf '%s' "$GATEWAY_ADDRESSES" | tr ',' ' ')
    for r in $ranges; do
        # An IPv4 or IPv6 address with an optional prefix length; nginx checks the numbers.
        printf '%s' "$r" | grep -Eq '^([0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(/[0-9]{1,3})?)$' ||
            fail "GATEWAY_ADDRESSES: '$r' is not an address or CIDR range (comma-separated list)"
        case "$r" in 0.0.0.0/0 | ::/0) fail "GATEWAY_ADDRESSES: '$r' trusts every peer, forged headers included" ;; esac
    done
    {
        echo "# EDGE=gateway: GATEWAY_ADDRESSES=$GATEWAY_ADDRESSES"
        for r in $ranges; do echo "set_real_ip_from $r;"; done
        echo "real_ip_header X-Forwarded-For;"
        echo "real_ip_recursive off;"
        echo 'geo $realip_remote_addr $from_gateway {'
        echo "    default 0;"
        for r in $ranges; do echo "    $r 1;"; done
        echo "}"
        # Only http or https, and only from the gateway; anything else is the scheme nginx saw.
        echo 'map "$from_gateway:$http_x_forwarded_proto" $edge_proto {'
        echo '    default $scheme;'
        echo '    "1:http" http;'
        echo '    "1:https" https;'
        echo "}"
    } >"$out"
    ;;
*)
    fail "EDGE='${EDGE:-}' is not nginx (nginx is the edge, compose) or gateway (a proxy in front, Kubernetes)"
    ;;
esac
