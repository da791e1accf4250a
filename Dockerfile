# syntax=docker/dockerfile:1
#
# Shelf production image.
#
#   docker build -t shelf:0.1.0 .
#   docker run --rm shelf:0.1.0 --help
#
# Stage 1 builds a wheel of this checkout, with the gateway's request path compiled by Cython
# (hatch_build.py: about a fifth less CPU per proxied request), and installs it, with its
# dependencies, into a virtual environment at /opt/shelf. Stage 2 is a clean python:3.11-slim
# that only receives that virtual environment: no compilers, no pip cache, no sources. Every
# dependency of Shelf ships manylinux wheels; the builder's C compiler is for Shelf's own
# compiled modules.

ARG PYTHON_IMAGE=python:3.11-slim

############################################################################################
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv /opt/shelf \
    && /opt/shelf/bin/pip install --upgrade pip wheel

WORKDIR /src

# Only what the wheel is built from (see .dockerignore for what never reaches the context).
COPY pyproject.toml README.md hatch_build.py ./
COPY registry ./registry
COPY controller ./controller
COPY migrations ./migrations
COPY shelf ./shelf

# Build the wheel (compiled: HATCH_BUILD_HOOK_ENABLE_CUSTOM), install it with its dependencies,
# check the console script, the packages and that the gateway runs compiled, precompile (a
# read-only root filesystem never gets a __pycache__ write) and drop pip, which is not needed at
# run time.
RUN HATCH_BUILD_HOOK_ENABLE_CUSTOM=true /opt/shelf/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/shelf/bin/pip install /wheels/shelf-*.whl \
    && /opt/shelf/bin/shelf --version \
    && /opt/shelf/bin/python -c "import controller, migrations, registry, shelf.cli" \
    && /opt/shelf/bin/python -P -c "import controller.gateway.server as s; assert s.__file__.endswith('.so')" \
    && /opt/shelf/bin/python -m compileall -q /opt/shelf/lib \
    && /opt/shelf/bin/pip uninstall -y pip wheel

############################################################################################
FROM ${PYTHON_IMAGE} AS runtime

ARG SHELF_UID=10001
ARG SHELF_GID=10001

LABEL org.opencontainers.image.title="shelf" \
      org.opencontainers.image.description="Model registry with a canary/shadow rollout controller" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid "${SHELF_GID}" shelf \
    && useradd --system --uid "${SHELF_UID}" --gid shelf --home-dir /var/lib/shelf \
       --no-create-home --shell /usr/sbin/nologin shelf \
    && mkdir -p /var/lib/shelf \
    && chown shelf:shelf /var/lib/shelf

COPY --from=builder /opt/shelf /opt/shelf

# Containers must listen on all interfaces. Without SHELF_TOKENS/SHELF_TOKENS_FILE the API
# refuses to start on a non-loopback address: that is intended, configure tokens.
ENV PATH="/opt/shelf/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHELF_HOME=/var/lib/shelf \
    SHELF_HOST=0.0.0.0 \
    SHELF_PORT=8000 \
    SHELF_GATEWAY_HOST=0.0.0.0 \
    SHELF_GATEWAY_PORT=8080 \
    SHELF_RECONCILER_HOST=0.0.0.0 \
    SHELF_RECONCILER_PORT=8090

WORKDIR /var/lib/shelf

# Numeric uid so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# 8000 registry API, 8080 gateway (data plane), 8090 reconciler probes/metrics.
EXPOSE 8000 8080 8090

# For plain Docker only (Kubernetes ignores it and uses the chart's probes). Checks the port of
# the role that runs: set SHELF_HEALTHCHECK_PORT=8080 for `gateway`, 8090 for `reconciler`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SHELF_HEALTHCHECK_PORT', os.environ.get('SHELF_PORT', '8000')), timeout=4)"]

# The `shelf` console script; the command picks the role:
#   server (all-in-one) | api | gateway | reconciler | db upgrade
ENTRYPOINT ["shelf"]
CMD ["server"]
