#!/usr/bin/env bash
# Entrypoint of devstack-local/redis:7-bookworm.
#
#  * `docker run IMAGE --appendonly yes` means `redis-server --appendonly yes`;
#  * `redis-server` without a config file gets container defaults for every option the
#    command line does not set itself: --bind 0.0.0.0 --protected-mode no --dir /data
#    (the official image's behaviour; Debian's redis.conf binding 127.0.0.1 is not read);
#  * as root: chown /data to `redis`, then re-exec as `redis` (setpriv, util-linux).
set -Eeo pipefail

# first arg is `-f` or `--some-option`, or a config file: run redis-server with them
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = redis-server ] || [ "$1" = redis-sentinel ]; then
    if [ "$(id -u)" = 0 ]; then
        find . \! -user redis -exec chown redis '{}' +
        exec setpriv --reuid=redis --regid=redis --init-groups -- "${BASH_SOURCE[0]}" "$@"
    fi

    # With a config file (`redis-server /path/redis.conf ...`) the file decides: no defaults.
    if [ "$1" = redis-server ] && { [ $# -eq 1 ] || [ "${2#-}" != "$2" ]; }; then
        given=" ${*:2} "
        for pair in "--bind 0.0.0.0" "--protected-mode no" "--dir /data"; do
            option=${pair%% *}
            if [[ $given != *" $option "* ]]; then
                # shellcheck disable=SC2086  # split "option value" into two words
                set -- "$@" $pair
            fi
        done
    fi
    umask 0077
fi

exec "$@"
