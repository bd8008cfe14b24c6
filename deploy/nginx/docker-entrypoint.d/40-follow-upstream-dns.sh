#!/bin/sh
# Keeps nginx pointed at the app's current containers. nginx resolves the name in APP_UPSTREAM
# once, when it loads its config; on compose the name's addresses change whenever the app is
# replaced (`docker compose up -d` recreates it with a new address) or scaled (`--scale app=3`),
# and nginx would go on sending requests to addresses that no longer exist. This loop
# re-resolves the name every UPSTREAM_DNS_INTERVAL seconds and, when the set of addresses
# changes, reloads nginx: a graceful reload (new workers, old ones finish their requests).
# nginx 1.27.3+ can do this itself (`server app:8000 resolve` with a `resolver`); the base
# here is 1.26. Run by the image's entrypoint before it starts nginx; exits at once when
# APP_UPSTREAM is an address (127.0.0.1:8000 in the Kubernetes pod) or a unix socket.
set -eu

interval=${UPSTREAM_DNS_INTERVAL:-1}
# Seconds, above zero (0 would poll DNS in a busy loop).
if ! awk -v seconds="$interval" 'BEGIN { exit !(seconds ~ /^[0-9]+(\.[0-9]*)?$/ && seconds + 0 > 0) }'; then
    echo "invalid configuration: UPSTREAM_DNS_INTERVAL='$interval': give seconds above 0, e.g. 1 or 0.5" >&2
    exit 2
fi

upstream=${APP_UPSTREAM:-app:8000}
case $upstream in
    unix:*) exit 0 ;;
esac
host=${upstream%:*}
case $host in
    \[*) exit 0 ;;        # [IPv6]:port
    *[!0-9.]*) ;;         # a name: follow it
    *) exit 0 ;;          # IPv4 address
esac

addresses() {
    getent ahosts "$host" 2>/dev/null | awk '{ print $1 }' | sort -u | tr '\n' ' '
}

(
    known=$(addresses)
    while sleep "$interval"; do
        current=$(addresses)
        # An empty answer (no replica running, DNS hiccup) would make the reload fail on
        # "host not found": keep the last good set until the name resolves again.
        if [ -n "$current" ] && [ "$current" != "$known" ]; then
            echo "follow-upstream-dns: $host is now [ $current] (was [ $known]); reloading nginx" >&2
            if nginx -s reload; then
                known=$current
            fi
        fi
    done
) &
