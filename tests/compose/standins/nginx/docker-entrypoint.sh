#!/bin/sh
# The official nginx image's entry point, as documented: when the command is nginx, run each
# executable /docker-entrypoint.d/*.sh in order (and source *.envsh), then exec the command.
# NGINX_ENTRYPOINT_QUIET_LOGS silences its own messages.
set -e
entrypoint_log() {
    if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
        echo "$@"
    fi
}
if [ "$1" = "nginx" ] || [ "$1" = "nginx-debug" ]; then
    for f in $(find /docker-entrypoint.d/ -follow -type f -print | sort -V); do
        case "$f" in
            *.envsh)
                if [ -x "$f" ]; then entrypoint_log "$0: Sourcing $f"; . "$f"; fi ;;
            *.sh)
                if [ -x "$f" ]; then entrypoint_log "$0: Launching $f"; "$f"; else entrypoint_log "$0: Ignoring $f, not executable"; fi ;;
            *) entrypoint_log "$0: Ignoring $f" ;;
        esac
    done
    entrypoint_log "$0: Configuration complete; ready for start up"
fi
exec "$@"
