# The devstack API image (also the worker's and the migrations job's). Stages:
#   toolchain  uv (in its own venv) and the CA bundle: what installing needs, never shipped
#   builder    the `service` extra resolved (uv pip compile) and synced into /opt/venv, exactly
#   runtime    that venv + service/ + alembic/ (no compiler, no uv, no CA bundle, no .env)
#   test-deps  installs the `service-test` extra into /opt/test-site (from builder)
#   dev        runtime + /opt/test-site: what dev mode runs, and `devstack test` runs pytest in
# The legacy builder (docker-py) builds every stage up to its target in file order, so the
# dev-only stages come after `runtime`: a production build never installs test dependencies.
# Build with an explicit target (`runtime` or `dev`); without one you get `dev`.
ARG PYTHON_IMAGE=python:3.12-slim
# Where the builder starts: this file's toolchain, or (devstack passes it) the builder image of
# an earlier build of this same Dockerfile, build args and CA bundle. `uv pip sync` makes the
# venv exactly the resolution either way (what is not in it is removed); starting from an
# earlier venv only spares downloading and installing what did not change.
ARG DEPS_FROM=toolchain

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

FROM ${PYTHON_IMAGE} AS runtime

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
# ALEMBIC_CONFIG: `alembic upgrade head` works from any directory. Everything up to here is
# the same for every build; COPY ignores USER (the files are root's, read-only to the app).
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ALEMBIC_CONFIG=/app/alembic/alembic.ini
EXPOSE 8000
USER 10001
CMD ["uvicorn", "service.main:app", "--host", "0.0.0.0", "--port", "8000"]

# The venv in two layers that together are exactly /opt/venv: the anchor (a cached layer while
# it is unchanged) and what differs from it (what a dependency change adds).
COPY --from=builder /opt/anchor /opt/venv
COPY --from=builder /opt/delta /opt/venv
COPY service/ /app/service/
COPY alembic/ /app/alembic/

FROM builder AS test-deps

# The test extra goes to its own directory, pinned to the versions already in /opt/venv:
# the dev stage adds it behind the venv's site-packages (a .pth file), so the runtime's
# packages stay the ones that run, and the dev image is the runtime image plus one layer.
RUN if [ -s /tmp/certs/devstack-ca-bundle.pem ]; then \
        export SSL_CERT_FILE=/tmp/certs/devstack-ca-bundle.pem; \
    fi \
    && purelib="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && /opt/uv/bin/uv pip install --python /opt/venv/bin/python --compile-bytecode \
        --target /opt/dev-layer/opt/test-site \
        --constraint /tmp/requirements.lock -r /tmp/requirements-test.txt \
    && rm -rf /opt/dev-layer/opt/test-site/bin \
    && mkdir -p "/opt/dev-layer$purelib" \
    && echo /opt/test-site > "/opt/dev-layer$purelib/test-site.pth"

FROM runtime AS dev

COPY --from=test-deps /opt/dev-layer/ /
