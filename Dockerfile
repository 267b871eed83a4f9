# The devstack API image. Two stages: `builder` installs the `service` extra into /opt/venv,
# `runtime` copies only that venv and the service code (no compiler, no CA bundle, no .env).
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS builder

# A compiler for any dependency without a wheel for this platform (skipped if present).
RUN if ! command -v gcc >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*; \
    fi

RUN python3 -m venv /opt/venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Dependencies first, from pyproject only: a change to service/ reuses this layer.
# certs/ may hold devstack-ca-bundle.pem (a TLS-intercepting proxy's CA); it is trusted by
# this RUN only and never leaves the builder stage.
COPY pyproject.toml /tmp/pyproject.toml
COPY certs/ /tmp/certs/
RUN python3 -c 'import tomllib; \
deps = tomllib.load(open("/tmp/pyproject.toml", "rb"))["project"]["optional-dependencies"]["service"]; \
print("\n".join(deps))' > /tmp/requirements.txt \
    && if [ -s /tmp/certs/devstack-ca-bundle.pem ]; then \
        export PIP_CERT=/tmp/certs/devstack-ca-bundle.pem \
               SSL_CERT_FILE=/tmp/certs/devstack-ca-bundle.pem; \
    fi \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

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

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY service/ /app/service/

# No bytecode writes: in dev mode ./service is bind-mounted over /app/service.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

EXPOSE 8000
USER 10001
CMD ["uvicorn", "service.main:app", "--host", "0.0.0.0", "--port", "8000"]
