#!/usr/bin/env bash
# Entrypoint of devstack-local/postgres:17-trixie.
#
# Follows the official postgres image's entrypoint contract on Debian's postgresql-17:
#  * as root: make $PGDATA and the socket dir belong to `postgres`, then re-exec this
#    script as `postgres` (setpriv from util-linux stands in for gosu);
#  * on an empty $PGDATA: initdb with POSTGRES_USER / POSTGRES_PASSWORD
#    (scram-sha-256 over TCP, `host all all all <POSTGRES_HOST_AUTH_METHOD>` in pg_hba.conf),
#    then a temporary server that listens on the unix socket ONLY creates POSTGRES_DB and
#    runs /docker-entrypoint-initdb.d/*, and is stopped again;
#  * with an existing cluster ($PGDATA/PG_VERSION): no initialisation at all;
#  * finally exec the server as PID 1, so SIGINT (the image's STOPSIGNAL) is a fast shutdown.
set -Eeo pipefail
shopt -s nullglob

log() { printf '%s devstack-entrypoint: %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# file_env VAR [DEFAULT]: VAR, or the contents of the file named by VAR_FILE (docker secrets).
file_env() {
    local var=$1 file_var="${1}_FILE" default=${2:-} value
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        die "both $var and $file_var are set (but are exclusive)"
    fi
    value=$default
    if [ -n "${!var:-}" ]; then
        value=${!var}
    elif [ -n "${!file_var:-}" ]; then
        value=$(<"${!file_var}")
    fi
    export "$var=$value"
    unset "$file_var"
}

# `docker run image -c shared_buffers=256MB` means `postgres -c ...`
if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi

# `postgres --version`, `--help`, `-C setting`, `--describe-config`: no setup, no initdb
wants_help=0
for arg in "${@:2}"; do
    case "$arg" in
        -'?' | --help | --describe-config | -V | --version | -C | -C*) wants_help=1 ;;
    esac
done
if [ "$1" = postgres ] && [ "$wants_help" = 1 ]; then
    exec "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    : "${PGDATA:?PGDATA must be set}"
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA" || :
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    mkdir -p /var/run/postgresql
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
    export HOME=/var/lib/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = postgres ]; then
    : "${PGDATA:?PGDATA must be set}"
    mkdir -p "$PGDATA" || die "cannot create PGDATA=$PGDATA as $(id -un)"
    chmod 00700 "$PGDATA" 2>/dev/null || :

    if [ -s "$PGDATA/PG_VERSION" ]; then
        log "PostgreSQL data directory $PGDATA already holds a cluster (PG_VERSION $(<"$PGDATA/PG_VERSION")); skipping initialization"
    else
        file_env POSTGRES_PASSWORD
        file_env POSTGRES_USER postgres
        file_env POSTGRES_DB "$POSTGRES_USER"
        file_env POSTGRES_INITDB_ARGS
        auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

        if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
            die "database is uninitialized and superuser password is not specified.
       You must set POSTGRES_PASSWORD to a non-empty value for the superuser
       (for example \"-e POSTGRES_PASSWORD=password\" on \"docker run\").
       POSTGRES_HOST_AUTH_METHOD=trust allows all connections without a password
       (NOT recommended)."
        fi
        if [ -n "$(ls -A "$PGDATA")" ]; then
            die "$PGDATA is not empty but holds no cluster (no PG_VERSION); refusing to initialize it"
        fi

        log "initializing a PostgreSQL $PG_MAJOR cluster in $PGDATA for user \"$POSTGRES_USER\""
        # syncfs: one sync of the file system instead of an fsync per file (PostgreSQL 17+).
        # POSTGRES_INITDB_ARGS is word-split on purpose, as upstream does.
        # shellcheck disable=SC2206
        initdb_args=(--username="$POSTGRES_USER" --auth-local=trust --auth-host="$auth"
            --sync-method=syncfs -D "$PGDATA" $POSTGRES_INITDB_ARGS)
        if [ -n "$POSTGRES_PASSWORD" ]; then
            # the password reaches initdb through a pipe, never through a file on disk
            initdb "${initdb_args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") >/dev/null
        else
            initdb "${initdb_args[@]}" >/dev/null
        fi

        if [ "$auth" = md5 ]; then
            printf "\npassword_encryption = md5\n" >>"$PGDATA/postgresql.conf"
        fi
        printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

        init_scripts=(/docker-entrypoint-initdb.d/*)
        if [ ! -e "${init_scripts[0]}" ]; then
            # No init scripts: create the database in single-user mode. Nothing listens at
            # all until the real server starts, and first start is ~0.4 s faster than with
            # a temporary server.
            if [ "$POSTGRES_DB" != postgres ]; then
                printf 'CREATE DATABASE "%s"\n' "${POSTGRES_DB//\"/\"\"}" \
                    | postgres --single -D "$PGDATA" postgres >/dev/null
            fi
            log "initialization complete; database \"$POSTGRES_DB\" is ready for start up"
            exec "$@"
        fi

        # Temporary server: unix socket only (listen_addresses=''), so that no TCP client can
        # reach the cluster before the database exists and the init scripts have run.
        export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
        PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -s -w \
            -o "-c listen_addresses='' -p ${PGPORT:-5432}" start

        psql_init=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --quiet
            --username "$POSTGRES_USER")
        "${psql_init[@]}" --dbname postgres --set db="$POSTGRES_DB" <<'EOSQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
EOSQL
        for f in /docker-entrypoint-initdb.d/*; do
            case "$f" in
                *.sh)
                    if [ -x "$f" ]; then
                        log "running $f"; "$f"
                    else
                        log "sourcing $f"
                        # shellcheck disable=SC1090
                        . "$f"
                    fi
                    ;;
                *.sql) log "running $f"; "${psql_init[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
                *.sql.gz) log "running $f"; gzip -dc "$f" | "${psql_init[@]}" --dbname "$POSTGRES_DB" ;;
                *) log "ignoring $f" ;;
            esac
        done

        PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -s -w -m fast stop
        unset PGPASSWORD
        log "initialization complete; database \"$POSTGRES_DB\" is ready for start up"
    fi
fi

exec "$@"
