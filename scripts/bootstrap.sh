#!/usr/bin/env bash
# Prepare this machine for `python -m devstack up` (newcomers and CI run the same command).
#
#   1. a Docker engine that answers (installs docker.io / starts dockerd when root on Debian)
#   2. the Python package and its test extras (pip install -e '.[test]'; skipped when current)
#   3. .env (copied from .env.example when missing)
#   4. the base images named in .env; where none can be pulled (no registry), local stand-ins
#      built from Debian packages by scripts/local-images.sh, whose names go into .env
#   5. DEVSTACK_CA_BUNDLE in .env when PyPI is trusted inside the Python base image only
#      through the host's CA bundle (a TLS-intercepting proxy; pip in the API build needs it)
#   6. Debian's chromium + chromium-driver for the dashboard's browser tests (root on Debian;
#      skipped when both are present)
#
# Idempotent and quick on a warm machine. Options:
#   --local-images   use the local stand-in images even if a registry is reachable
#                    (the same as DEVSTACK_LOCAL_IMAGES=1 in the environment)
#   -h, --help       this text
# Environment: PYTHON (default python3) is the interpreter to install into.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

LOCAL_IMAGES=${DEVSTACK_LOCAL_IMAGES:-0}
for arg in "$@"; do
    case "$arg" in
        --local-images) LOCAL_IMAGES=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bootstrap: unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done
case "$LOCAL_IMAGES" in 1 | true | yes) LOCAL_IMAGES=1 ;; *) LOCAL_IMAGES=0 ;; esac

PYTHON=${PYTHON:-python3}
CACHE_DIR=$REPO_ROOT/.devstack-cache
DOCKERD_LOG=/var/log/dockerd.log
DOCKER_DEADLINE=30

START=$SECONDS
say() { printf '[bootstrap %3ds] %s\n' "$((SECONDS - START))" "$*"; }
warn() { printf '[bootstrap] WARNING: %s\n' "$*" >&2; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }
has_apt() { command -v apt-get >/dev/null 2>&1 && [ -f /etc/debian_version ]; }
APT_UPDATED=0
apt_install() { # packages...
    is_root && has_apt || return 1
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ------------------------------------------------------------------------------ 1. Docker
docker_answers() { docker info >/dev/null 2>&1; }
dockerd_running() { # without pgrep (procps may be absent): scan /proc
    local comm
    # a dockerd that is dying (killed, not yet reaped: state Z) does not count
    local stat pid comm state rest
    for stat in /proc/[0-9]*/stat; do
        read -r pid comm state rest <"$stat" 2>/dev/null || continue
        [ "$comm" = "(dockerd)" ] && [ "$state" != Z ] && return 0
    done
    return 1
}
start_dockerd() {
    if [ -e /var/run/docker.pid ]; then
        # a killed dockerd leaves its pid file behind, and the next one refuses to start
        say "docker: removing stale /var/run/docker.pid (no dockerd process runs)"
        rm -f /var/run/docker.pid
    fi
    say "docker: starting dockerd in the background (log: $DOCKERD_LOG)"
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
}

ensure_docker() {
    if command -v docker >/dev/null 2>&1 && docker_answers; then
        say "docker: engine answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        return
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        if is_root && has_apt; then
            say "docker: no engine installed; installing Debian's docker.io"
            apt_install docker.io || die "apt-get install docker.io failed"
        else
            die "no Docker engine is installed. Install Docker (Debian/Ubuntu: sudo apt-get install docker.io)
    and re-run this script."
        fi
    fi
    if ! is_root; then
        die "the Docker engine does not answer ('docker info' failed). Start it with
    sudo systemctl start docker
and make sure your user may use it (sudo usermod -aG docker \"\$USER\", then log in again)."
    fi

    if dockerd_running; then
        say "docker: dockerd is running but does not answer yet; waiting"
    elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        say "docker: systemctl start docker"
        if ! systemctl start docker; then
            warn "systemctl start docker failed (journalctl -u docker); starting dockerd directly"
            start_dockerd
        fi
    else
        start_dockerd
    fi

    local deadline=$((SECONDS + DOCKER_DEADLINE)) restarted=0
    until docker_answers; do
        if [ "$restarted" = 0 ] && ! dockerd_running; then
            # the dockerd we waited for went away (it was being killed): start a new one
            restarted=1
            start_dockerd
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "----- last lines of $DOCKERD_LOG -----" >&2
            tail -n 25 "$DOCKERD_LOG" >&2 2>/dev/null || :
            die "the Docker engine did not answer within ${DOCKER_DEADLINE}s"
        fi
        sleep 0.25
    done
    say "docker: engine answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

# ------------------------------------------------------------------------------ 2. Python
ensure_python() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=/path/to/python3.11+)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "devstack needs Python 3.11+; $PYTHON is $("$PYTHON" -V 2>&1)"
    local stamp=$CACHE_DIR/pip-install.stamp exe
    exe=$("$PYTHON" -c 'import sys; print(sys.executable)')
    # current = the stamp was written by this interpreter after the last pyproject.toml change,
    # and everything still imports (from outside the checkout, so not via the cwd)
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$(cat "$stamp")" = "$exe" ] &&
        (cd / && "$PYTHON" -c 'import devstack, docker, rich, tenacity, pytest, httpx, selenium') 2>/dev/null; then
        say "python: devstack and test dependencies already installed ($exe)"
        return
    fi
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
        die "$PYTHON has no pip. Use a virtual environment:
    python3 -m venv .venv && . .venv/bin/activate && bash scripts/bootstrap.sh"
    fi
    # compat mode: a plain path entry in a .pth file, not an import hook that every Python
    # start (every devstack command) would pay ~15 ms to load
    say "python: pip install -e '.[test]' into $exe"
    if ! PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q --disable-pip-version-check \
        --config-settings editable_mode=compat -e '.[test]'; then
        die "pip install failed. On a system Python (\"externally-managed-environment\") use a venv:
    python3 -m venv .venv && . .venv/bin/activate && bash scripts/bootstrap.sh"
    fi
    mkdir -p "$CACHE_DIR"
    printf '%s\n' "$exe" >"$stamp"
}

# ---------------------------------------------------------------------------------- 3. .env
ensure_env_file() {
    if [ -f .env ]; then
        say ".env: present (kept as is)"
    elif [ -f .env.example ]; then
        cp .env.example .env
        say ".env: created from .env.example"
    else
        warn ".env.example does not exist yet; no .env created (defaults apply)"
    fi
}

# ------------------------------------------------------------------------------- 4. images
# KEY -> default image, local stand-in
declare -A DEFAULT_IMAGE=(
    [DEVSTACK_POSTGRES_IMAGE]=postgres:17-alpine
    [DEVSTACK_REDIS_IMAGE]=redis:7-alpine
    [DEVSTACK_PYTHON_IMAGE]=python:3.12-slim
    [DEVSTACK_PROMETHEUS_IMAGE]=prom/prometheus:v2.55.1
    [DEVSTACK_POSTGRES_EXPORTER_IMAGE]=quay.io/prometheuscommunity/postgres-exporter:v0.16.0
    [DEVSTACK_REDIS_EXPORTER_IMAGE]=oliver006/redis_exporter:v1.67.0-alpine
)
declare -A LOCAL_IMAGE=(
    [DEVSTACK_POSTGRES_IMAGE]=devstack-local/postgres:17-trixie
    [DEVSTACK_REDIS_IMAGE]=devstack-local/redis:7-bookworm
    [DEVSTACK_PYTHON_IMAGE]=devstack-local/python:3.11-bookworm
    [DEVSTACK_PROMETHEUS_IMAGE]=devstack-local/prometheus:2-bookworm
    [DEVSTACK_POSTGRES_EXPORTER_IMAGE]=devstack-local/postgres-exporter:0-bookworm
    [DEVSTACK_REDIS_EXPORTER_IMAGE]=devstack-local/redis-exporter:1-bookworm
)
IMAGE_KEYS=(DEVSTACK_POSTGRES_IMAGE DEVSTACK_REDIS_IMAGE DEVSTACK_PYTHON_IMAGE)
# The monitoring group's (off by default): `up --with monitoring` pulls them when it needs
# them; they get stand-ins only where the stack's own images do (no registry, or asked for).
MONITORING_KEYS=(DEVSTACK_PROMETHEUS_IMAGE DEVSTACK_POSTGRES_EXPORTER_IMAGE DEVSTACK_REDIS_EXPORTER_IMAGE)

env_get() { # KEY: its value in .env (last assignment wins, quotes stripped), or nothing
    [ -f .env ] || return 0
    sed -n -E "s/^[[:space:]]*(export[[:space:]]+)?$1[[:space:]]*=[[:space:]]*(.*)$/\2/p" .env |
        tail -n 1 | sed -E -e 's/[[:space:]]+$//' -e "s/^\"(.*)\"$/\1/" -e "s/^'(.*)'$/\1/"
}

env_set() { # KEY VALUE: replace KEY's line(s) in .env, or append it
    local key=$1 value=$2 tmp
    if [ -f .env ] && grep -qE "^[[:space:]]*(export[[:space:]]+)?${key}[[:space:]]*=" .env; then
        tmp=$(mktemp .env.XXXXXX)
        awk -v key="$key" -v value="$value" '
            $0 ~ "^[[:space:]]*(export[[:space:]]+)?" key "[[:space:]]*=" {
                if (!done) print key "=" value; done = 1; next
            }
            { print }' .env >"$tmp"
        chmod --reference=.env "$tmp" 2>/dev/null || :
        mv "$tmp" .env
    else
        [ ! -s .env ] || [ -z "$(tail -c 1 .env)" ] || echo >>.env
        printf '%s=%s\n' "$key" "$value" >>.env
    fi
}

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

ensure_images() {
    local key image missing=() pulled
    for key in "${IMAGE_KEYS[@]}"; do
        image=${!key:-$(env_get "$key")}
        image=${image:-${DEFAULT_IMAGE[$key]}}
        if [ "$LOCAL_IMAGES" = 1 ]; then
            missing+=("$key")
        elif image_present "$image"; then
            say "images: $image present ($key)"
        elif [[ $image == devstack-local/* ]]; then
            say "images: local stand-in $image not built yet ($key)"
            missing+=("$key")
        else
            say "images: docker pull $image ($key)"
            pulled=0
            docker pull -q "$image" >/dev/null 2>&1 && pulled=1
            if [ "$pulled" = 1 ]; then
                say "images: pulled $image"
            else
                say "images: cannot pull $image (no registry reachable?)"
                missing+=("$key")
            fi
        fi
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    for key in "${MONITORING_KEYS[@]}"; do
        image=${!key:-$(env_get "$key")}
        image=${image:-${DEFAULT_IMAGE[$key]}}
        if [ "$LOCAL_IMAGES" = 1 ] || ! image_present "$image"; then missing+=("$key"); fi
    done

    if [ "$LOCAL_IMAGES" = 1 ]; then
        say "images: local stand-ins requested (DEVSTACK_LOCAL_IMAGES=1 / --local-images)"
    else
        say "images: building local stand-ins from Debian packages for: ${missing[*]}"
    fi
    if ! command -v debootstrap >/dev/null 2>&1 && is_root && has_apt; then
        # only needed when a Debian base image must be (re)built; cheap to have
        apt_install debootstrap || die "apt-get install debootstrap failed"
    fi
    bash "$REPO_ROOT/scripts/local-images.sh" ||
        die "building the local stand-in images failed (see above). scripts/local-images.sh needs
    root, debootstrap and plain-http access to a Debian mirror (DEVSTACK_DEBIAN_MIRROR)."

    for key in "${missing[@]}"; do
        image=${LOCAL_IMAGE[$key]}
        if [ -n "${!key:-}" ] && [ "${!key}" != "$image" ]; then
            warn "$key=${!key} is set in the environment and overrides .env; unset it to use $image"
        fi
        if [ "$(env_get "$key")" = "$image" ]; then
            say ".env: $key=$image (already set)"
        else
            env_set "$key" "$image"
            say ".env: wrote $key=$image (local stand-in; edit .env to change it back)"
        fi
    done
}

# ------------------------------------------------------------------ 5. TLS-intercepting proxy
# pip inside the API image build trusts only public CAs. Behind a proxy that re-signs TLS, it
# fails ("self-signed certificate in certificate chain") although the host, whose CA bundle
# carries the proxy's CA, reaches PyPI fine. Detect exactly that case, from inside the
# configured Python base image, and point DEVSTACK_CA_BUNDLE at the host bundle (devstack
# trusts it in the build stage only).
ensure_ca_bundle() {
    local current image out rc=0 bundle=/etc/ssl/certs/ca-certificates.crt ok_stamp
    current=${DEVSTACK_CA_BUNDLE:-$(env_get DEVSTACK_CA_BUNDLE)}
    if [ -n "$current" ]; then
        say "tls: DEVSTACK_CA_BUNDLE=$current (kept)"
        return
    fi
    image=${DEVSTACK_PYTHON_IMAGE:-$(env_get DEVSTACK_PYTHON_IMAGE)}
    image=${image:-${DEFAULT_IMAGE[DEVSTACK_PYTHON_IMAGE]}}
    ok_stamp=$CACHE_DIR/tls-ok.$(printf '%s' "$image" | tr -c 'A-Za-z0-9._-' _)
    if [ -f "$ok_stamp" ]; then
        say "tls: PyPI verified from $image earlier; no CA bundle needed"
        return
    fi
    image_present "$image" || return 0
    out=$(docker run --rm "$image" python3 -c '
import urllib.request
urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10).close()' 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then
        say "tls: $image reaches PyPI with its own CAs; no CA bundle needed"
        mkdir -p "$CACHE_DIR" && : >"$ok_stamp"
    elif [[ $out == *CERTIFICATE_VERIFY_FAILED* ]] && [ -f "$bundle" ] &&
        curl -fsS -o /dev/null --max-time 10 --cacert "$bundle" https://pypi.org/simple/pip/ 2>/dev/null; then
        say "tls: PyPI's certificate is not trusted inside $image but is with $bundle (TLS-intercepting proxy)"
        if [ -f .env ]; then
            env_set DEVSTACK_CA_BUNDLE "$bundle"
            say ".env: wrote DEVSTACK_CA_BUNDLE=$bundle (trusted by the API image build stage only)"
        else
            warn "no .env: export DEVSTACK_CA_BUNDLE=$bundle before devstack up"
        fi
    else
        warn "could not check TLS to PyPI from $image (offline?): ${out##*$'\n'}"
        warn "if the API image build fails with a certificate error, set DEVSTACK_CA_BUNDLE in .env"
    fi
}

# ------------------------------------------------------------------- 6. a headless browser
ensure_browser() { # the dashboard's end-to-end tests drive it (tests/integration/test_dashboard.py)
    if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
        say "browser: chromium and chromium-driver present"
        return
    fi
    apt_install chromium chromium-driver ||
        warn "browser: could not install chromium + chromium-driver (not root on Debian?): the dashboard's browser tests need them"
}

ensure_docker
ensure_python
ensure_env_file
ensure_images
ensure_ca_bundle
ensure_browser
say "ready: next, python -m devstack up"
