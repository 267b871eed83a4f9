#!/usr/bin/env bash
# Install the Docker Compose v2 CLI plugin without a registry: download Debian trixie's
# `docker-compose` package with apt inside a local trixie container, extract it with dpkg-deb
# and copy the plugin binary to ~/.docker/cli-plugins/. Idempotent: does nothing when
# `docker compose version` already works. Used only as the benchmark's yardstick.
#
#   bash bench/install-compose.sh            # uses devstack-local/debian:trixie
#   TRIXIE_IMAGE=debian:trixie bash bench/install-compose.sh
set -euo pipefail

TRIXIE_IMAGE=${TRIXIE_IMAGE:-devstack-local/debian:trixie}
PLUGIN_DIR=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
PLUGIN_PATH=usr/libexec/docker/cli-plugins/docker-compose

if docker compose version >/dev/null 2>&1; then
    echo "docker compose is already installed: $(docker compose version)"
    exit 0
fi

if ! docker image inspect "$TRIXIE_IMAGE" >/dev/null 2>&1; then
    echo "error: image $TRIXIE_IMAGE is missing (scripts/local-images.sh builds it)" >&2
    exit 1
fi

work=$(mktemp -d)
container=""
cleanup() {
    if [ -n "$container" ]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

container=devstack-bench-compose-dl-$$
# apt inside containers works over plain http; only the .deb leaves the container.
docker run --name "$container" --label devstack.bench=install-compose \
    "$TRIXIE_IMAGE" sh -ec '
        mkdir -p /out && chmod 0777 /out && cd /out
        apt-get update -qq
        apt-get download -qq docker-compose
        ls /out/docker-compose_*.deb
    '
docker cp "$container:/out/." "$work/"
deb=$(ls "$work"/docker-compose_*.deb | head -n 1)
dpkg-deb -x "$deb" "$work/root"
mkdir -p "$PLUGIN_DIR"
install -m 0755 "$work/root/$PLUGIN_PATH" "$PLUGIN_DIR/docker-compose"
echo "installed $(basename "$deb") -> $PLUGIN_DIR/docker-compose"
docker compose version
