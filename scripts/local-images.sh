#!/usr/bin/env bash
# Build local stand-in base images from Debian packages, for hosts that cannot reach a
# container registry (air-gapped machines, CI without registry access).
#
#   devstack-local/debian:bookworm       debootstrap --variant=minbase bookworm, docker import
#   devstack-local/debian:trixie         debootstrap --variant=minbase trixie, docker import
#   devstack-local/postgres:17-trixie    images/postgres  (Debian postgresql-17)
#   devstack-local/redis:7-bookworm      images/redis     (Debian redis-server 7.0)
#   devstack-local/python:3.11-bookworm  images/python    (Debian python3 3.11 + venv + curl)
#   devstack-local/prometheus:2-bookworm         images/prometheus         (Debian prometheus)
#   devstack-local/postgres-exporter:0-bookworm  images/postgres-exporter  (Debian package)
#   devstack-local/redis-exporter:1-bookworm     images/redis-exporter     (Debian package)
#
# Idempotent: every image carries the label devstack.recipe-hash (sha256 of its images/<dir>,
# its base image's recipe hash and RECIPE_VERSION below). An image whose label matches is left
# alone, so a warm re-run takes seconds. --force rebuilds everything.
#
# Needs: a reachable Docker engine; for a (re)build of a Debian base image, root and
# debootstrap; for the package installs, plain-http access to a Debian mirror.
set -Eeuo pipefail

# Bump when this script changes how images are made (invalidates every recipe hash).
RECIPE_VERSION=1

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGES_DIR=$REPO_ROOT/images
MIRROR=${DEVSTACK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEVSTACK_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
HASH_LABEL=devstack.recipe-hash
DESC_LABEL=org.opencontainers.image.description
export DOCKER_BUILDKIT=0 # engine 20.10 + docker-py use the legacy builder: build with it too

FORCE=0
usage() {
    sed -n '2,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    echo "Usage: $0 [--force]"
}
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "local-images: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

START=$SECONDS
say() { printf '[local-images %3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { printf '[local-images] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------- preconditions
command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed (Debian: apt-get install docker.io)"
if ! docker info >/dev/null 2>&1; then
    die "the Docker engine does not answer ('docker info' failed). Start it first:
    scripts/bootstrap.sh   (or: sudo systemctl start docker / dockerd >/var/log/dockerd.log 2>&1 &)"
fi

# name -> directory under images/, base image, description (for imported images)
declare -A DIR=(
    [devstack-local/debian:bookworm]=debian
    [devstack-local/debian:trixie]=debian
    [devstack-local/postgres:17-trixie]=postgres
    [devstack-local/redis:7-bookworm]=redis
    [devstack-local/python:3.11-bookworm]=python
    [devstack-local/prometheus:2-bookworm]=prometheus
    [devstack-local/postgres-exporter:0-bookworm]=postgres-exporter
    [devstack-local/redis-exporter:1-bookworm]=redis-exporter
)
declare -A BASE=(
    [devstack-local/postgres:17-trixie]=devstack-local/debian:trixie
    [devstack-local/redis:7-bookworm]=devstack-local/debian:bookworm
    [devstack-local/python:3.11-bookworm]=devstack-local/debian:bookworm
    [devstack-local/prometheus:2-bookworm]=devstack-local/debian:bookworm
    [devstack-local/postgres-exporter:0-bookworm]=devstack-local/debian:bookworm
    [devstack-local/redis-exporter:1-bookworm]=devstack-local/debian:bookworm
)
ORDER=(
    devstack-local/debian:bookworm
    devstack-local/debian:trixie
    devstack-local/postgres:17-trixie
    devstack-local/redis:7-bookworm
    devstack-local/python:3.11-bookworm
    devstack-local/prometheus:2-bookworm
    devstack-local/postgres-exporter:0-bookworm
    devstack-local/redis-exporter:1-bookworm
)

# sha256 of a directory: every file's relative path, mode and content, in a stable order.
dir_hash() {
    (
        cd "$1"
        find . -type f -printf '%p %m\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    ) | sha256sum | cut -d' ' -f1
}

declare -A HASH
for name in "${ORDER[@]}"; do
    dir=$IMAGES_DIR/${DIR[$name]}
    [ -d "$dir" ] || die "missing recipe directory $dir"
    if [ -n "${BASE[$name]:-}" ]; then
        extra="base=${HASH[${BASE[$name]}]}"
    else
        extra="debootstrap minbase suite=${name##*:} mirror=$MIRROR security=$SECURITY_MIRROR"
    fi
    HASH[$name]=$(printf 'recipe-version=%s\n%s\n%s\n' "$RECIPE_VERSION" "$(dir_hash "$dir")" "$extra" |
        sha256sum | cut -d' ' -f1)
done

current_hash() { docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null || true; }

# ------------------------------------------------------------------------------------ plan
declare -A TODO
todo_count=0
for name in "${ORDER[@]}"; do
    have=$(current_hash "$name")
    if [ "$FORCE" = 1 ]; then
        TODO[$name]=1; say "rebuild $name (--force)"
    elif [ -z "$have" ]; then
        TODO[$name]=1; say "build   $name (not present)"
    elif [ "$have" != "${HASH[$name]}" ]; then
        TODO[$name]=1; say "rebuild $name (recipe changed: ${have:0:12} -> ${HASH[$name]:0:12})"
    else
        say "ok      $name (up to date, recipe ${have:0:12})"
    fi
    [ -z "${TODO[$name]:-}" ] || todo_count=$((todo_count + 1))
done

if [ "$todo_count" = 0 ]; then
    say "all images are up to date; nothing to do (--force rebuilds)"
    docker image ls --filter 'reference=devstack-local/*' \
        --format 'table {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}'
    exit 0
fi

if [ -n "${TODO[devstack-local/debian:bookworm]:-}${TODO[devstack-local/debian:trixie]:-}" ]; then
    [ "$(id -u)" = 0 ] || die "building the Debian base images needs root (debootstrap): run  sudo $0 $*"
    command -v debootstrap >/dev/null 2>&1 ||
        die "debootstrap is not installed (Debian/Ubuntu: apt-get install -y debootstrap)"
fi

# One run at a time: a second caller waits for the first and then finds the images built.
LOCK_FILE=${DEVSTACK_LOCK_DIR:-/tmp}/devstack-local-images.lock
exec 9>"$LOCK_FILE"
if ! flock -n 9; then
    say "another local-images run holds $LOCK_FILE; waiting for it (up to 30 min)"
    flock -w 1800 9 || die "timed out waiting for $LOCK_FILE"
    say "lock acquired; planning again (the other run may have built what we need)"
    exec 9>&-
    exec bash "${BASH_SOURCE[0]}" "$@"
fi

WORK=$(mktemp -d "${DEVSTACK_WORKDIR:-/var/tmp}/devstack-local-images.XXXXXX")
LOGS=$WORK/logs
mkdir -p "$LOGS"
cleanup() {
    local rc=$?
    set +e
    # debootstrap mounts proc/sys inside the target; never rm -rf across a mount point
    if [ -d "$WORK/rootfs" ]; then
        findmnt -rn -o TARGET | grep -F "$WORK/rootfs/" | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || :
        done
    fi
    if [ "$rc" = 0 ]; then
        rm -rf --one-file-system "$WORK"
    else
        rm -rf --one-file-system "$WORK/rootfs"
        echo "[local-images] FAILED; build logs kept in $LOGS" >&2
    fi
}
trap cleanup EXIT

show_log_tail() { # one write, so that the two chains' reports do not interleave
    local text
    text=$(printf -- '----- last lines of %s -----\n%s\n-----' "$1" "$(tail -n 30 "$1" 2>&1)")
    printf '%s\n' "$text" >&2
}

# ------------------------------------------------------------------------------- builders
build_debian() { # name
    local name=$1 suite=${1##*:} root log t0=$SECONDS
    root=$WORK/rootfs/$suite
    log=$LOGS/debootstrap-$suite.log
    mkdir -p "$root"
    say "debootstrap --variant=minbase $suite ($MIRROR) -> $name (log: $log)"
    if ! debootstrap --variant=minbase "$suite" "$root" "$MIRROR" >"$log" 2>&1; then
        show_log_tail "$log"
        [ -f "$root/debootstrap/debootstrap.log" ] && show_log_tail "$root/debootstrap/debootstrap.log"
        die "debootstrap $suite failed"
    fi
    sh "$IMAGES_DIR/debian/prepare-rootfs.sh" "$root" "$suite" "$MIRROR" "$SECURITY_MIRROR" >>"$log" 2>&1 ||
        { show_log_tail "$log"; die "preparing the $suite tree failed"; }
    say "importing $name ($(du -sh --one-file-system "$root" | cut -f1) tree)"
    tar --numeric-owner -C "$root" -c . |
        docker import \
            --change "LABEL $DESC_LABEL=\"Local stand-in for debian:$suite: debootstrap --variant=minbase $suite from $MIRROR, not the official Docker image\"" \
            --change "LABEL $HASH_LABEL=${HASH[$name]}" \
            --change "LABEL org.opencontainers.image.title=$name" \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' \
            - "$name" >>"$log" ||
        { show_log_tail "$log"; die "docker import of $name failed"; }
    rm -rf --one-file-system "$root"
    say "built $name in $((SECONDS - t0))s"
}

build_dockerfile() { # name
    local name=$1 dir=$IMAGES_DIR/${DIR[$1]} log t0=$SECONDS
    log=$LOGS/build-${DIR[$name]}.log
    say "docker build $name from images/${DIR[$name]} (log: $log)"
    if ! docker build --rm --force-rm \
        --label "$HASH_LABEL=${HASH[$name]}" \
        --tag "$name" "$dir" >"$log" 2>&1; then
        show_log_tail "$log"
        die "docker build of $name failed"
    fi
    say "built $name in $((SECONDS - t0))s"
}

build() { # name: build it if planned
    [ -n "${TODO[$1]:-}" ] || return 0
    if [ -n "${BASE[$1]:-}" ]; then build_dockerfile "$1"; else build_debian "$1"; fi
}

# Two independent chains, run side by side (downloads and dpkg overlap well on 2 cores):
# trixie -> postgres, and bookworm -> redis, python, prometheus and the exporters.
chain_trixie() {
    trap - EXIT
    build devstack-local/debian:trixie
    build devstack-local/postgres:17-trixie
}
chain_bookworm() {
    trap - EXIT
    build devstack-local/debian:bookworm
    build devstack-local/redis:7-bookworm
    build devstack-local/python:3.11-bookworm
    build devstack-local/prometheus:2-bookworm
    build devstack-local/postgres-exporter:0-bookworm
    build devstack-local/redis-exporter:1-bookworm
}
chain_trixie &
pid_trixie=$!
chain_bookworm &
pid_bookworm=$!
failed=0
wait "$pid_trixie" || failed=1
wait "$pid_bookworm" || failed=1
[ "$failed" = 0 ] || die "some images failed to build (see above)"

# Drop the dangling layers that rebuilt tags left behind (only ours: by label).
docker image prune -f --filter "label=$HASH_LABEL" >/dev/null 2>&1 || :

say "done: $todo_count image(s) built"
docker image ls --filter 'reference=devstack-local/*' \
    --format 'table {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}'
