# The devstack API image (also the worker's and the migrations job's). Stages:
#   toolchain  uv (in its own venv) and the CA bundle: what installing needs, never shipped
#   builder    the `service` extra resolved (uv pip compile) and synced into /opt/venv, exactly
#   base       python + curl + the app user + the venv's anchor layer (see builder)
#   runtime    base + the venv's delta + service/ + alembic/ (no compiler, no uv, no CA bundle,
#              no .env)
#   test-deps  the `service-test` extra synced into /opt/test-site, pinned to builder's versions
#   dev        the runtime's files + /opt/test-site: what dev mode runs, and `devstack test` runs
#              pytest in
# The legacy builder (docker-py) builds every stage up to its target in file order, so the
# dev-only stages come after `runtime`: a production build never installs test dependencies.
# Build with an explicit target (`runtime` or `dev`); without one you get `dev`.
ARG PYTHON_IMAGE=python:3.12-slim
# Where builder and test-deps start: this file's toolchain, or (devstack passes them) the
# builder and test-deps images of an earlier build of this Dockerfile with the same build args
# and CA bundle. `uv pip sync` makes each environment exactly its resolution either way (what
# is not in it is removed): an earlier one only spares downloading and installing again.
ARG DEPS_FROM=toolchain
ARG TEST_DEPS_FROM=toolchain

FROM ${PYTHON_IMAGE} AS toolchain

# A compiler for any dependency without a wheel for this platform (skipped if present).
RUN if ! command -v gcc >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# certs/ may hold devstack-ca-bundle.pem (a TLS-intercepting proxy's CA). It is trusted by the
# RUNs of the toolchain, builder and test-deps stages only (pip: PIP_CERT; uv reads
# SSL_CERT_FILE itself, no --native-tls needed) and never reaches the runtime or dev image.
COPY certs/ /tmp/certs/
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never

# uv (a wheel from PyPI) in its own venv. /opt/anchor and /opt/delta: the venv as the runtime
# copies it (image-build/venv_layers.py).
COPY image-build/venv_layers.py /opt/venv_layers.py
RUN if [ -s /tmp/certs/devstack-ca-bundle.pem ]; then \
        export PIP_CERT=/tmp/certs/devstack-ca-bundle.pem \
               SSL_CERT_FILE=/tmp/certs/devstack-ca-bundle.pem; \
    fi \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir uv \
    && python3 -m venv --without-pip /opt/venv \
    && mkdir /opt/anchor /opt/delta

FROM ${DEPS_FROM} AS builder

# Dependencies first, from pyproject only: a change to service/ or alembic/ reuses this layer.
# Bytecode is compiled here (only stale or missing .pyc files): the runtime never writes any.
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -c 'import tomllib; \
deps = tomllib.load(open("/tmp/pyproject.toml", "rb"))["project"]["optional-dependencies"]; \
open("/tmp/requirements.txt", "w").write("\n".join(deps["service"]) + "\n"); \
open("/tmp/requirements-test.txt", "w").write("\n".join(deps["service-test"]) + "\n")' \
    && if [ -s /tmp/certs/devstack-ca-bundle.pem ]; then \
        export SSL_CERT_FILE=/tmp/certs/devstack-ca-bundle.pem; \
    fi \
    && /opt/uv/bin/uv pip compile --quiet --python /opt/venv/bin/python \
        --output-file /tmp/requirements.lock /tmp/requirements.txt \
    && /opt/uv/bin/uv pip sync --python /opt/venv/bin/python /tmp/requirements.lock \
    && /opt/venv/bin/python /opt/venv_layers.py /opt/venv /opt/anchor /opt/delta

FROM ${PYTHON_IMAGE} AS base

# curl serves the container healthcheck that devstack configures (skipped if present).
RUN if ! command -v curl >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends curl \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin app

# No bytecode writes: in dev mode ./service, ./alembic and ./tests are bind-mounted read-only.
# ALEMBIC_CONFIG: `alembic upgrade head` works from any directory. COPY ignores USER: the files
# below are root's, read-only to the app.
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ALEMBIC_CONFIG=/app/alembic/alembic.ini
EXPOSE 8000
USER 10001
CMD ["uvicorn", "service.main:app", "--host", "0.0.0.0", "--port", "8000"]

# The venv is two layers that together are exactly the builder's /opt/venv: the anchor (a
# cached layer while it is unchanged) and the delta (what a dependency change adds; the
# runtime and dev stages copy it).
COPY --from=builder /opt/anchor /opt/venv

FROM base AS runtime

COPY --from=builder /opt/delta /opt/venv
COPY service/ /app/service/
COPY alembic/ /app/alembic/

FROM ${TEST_DEPS_FROM} AS test-deps

# The test extra goes to its own directory, pinned to the versions of the builder's resolution
# and synced exactly (an earlier test-deps image, which devstack passes, only spares work):
# the dev stage adds it behind the venv's site-packages (a .pth file), so the runtime's
# packages stay the ones that run.
COPY --from=builder /tmp/requirements.lock /tmp/requirements-test.txt /tmp/
RUN if [ -s /tmp/certs/devstack-ca-bundle.pem ]; then \
        export SSL_CERT_FILE=/tmp/certs/devstack-ca-bundle.pem; \
    fi \
    && purelib="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && /opt/uv/bin/uv pip compile --quiet --python /opt/venv/bin/python \
        --constraint /tmp/requirements.lock --output-file /tmp/requirements-test.lock \
        /tmp/requirements-test.txt \
    && /opt/uv/bin/uv pip sync --python /opt/venv/bin/python \
        --target /opt/dev-layer/opt/test-site /tmp/requirements-test.lock \
    && /opt/venv/bin/python -c 'import compileall; \
compileall.compile_dir("/opt/dev-layer/opt/test-site", quiet=2, workers=0)' \
    && mkdir -p "/opt/dev-layer$purelib" \
    && if [ ! -s "/opt/dev-layer$purelib/test-site.pth" ]; then \
        echo /opt/test-site > "/opt/dev-layer$purelib/test-site.pth"; \
    fi

# The runtime's layers with the test layer before the delta: a dependency change that leaves
# the test extra's resolution alone reuses it.
FROM base AS dev

COPY --from=test-deps /opt/dev-layer/ /
COPY --from=builder /opt/delta /opt/venv
COPY service/ /app/service/
COPY alembic/ /app/alembic/
