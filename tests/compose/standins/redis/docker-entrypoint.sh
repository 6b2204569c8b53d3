#!/bin/sh
# The official redis image's entry-point contract (stand-in: see the Dockerfile beside it).
set -eu
case "${1:-}" in -*|*.conf) set -- redis-server "$@" ;; esac
if [ "${1:-}" = "redis-server" ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "${1:-}" = "redis-server" ]; then
    shift
    config=""
    case "${1:-}" in *.conf) config=$1; shift ;; esac
    if [ -z "$config" ] || ! grep -q '^protected-mode' "$config"; then
        set -- "$@" --protected-mode no
    fi
    set -- redis-server ${config:+"$config"} "$@"
fi
exec "$@"
