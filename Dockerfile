# syntax=docker/dockerfile:1
#
# result-relay image.
#   docker build -t result-relay .                                          # API + PostgreSQL driver
#   docker build --build-arg EXTRAS=postgres,transcription -t result-relay:full .
#   docker run -p 8000:8000 -v relay-data:/data result-relay                # relay serve, SQLite in /data
#   docker run --rm -e RELAY_DATABASE_URL=postgresql+psycopg://... result-relay migrate
#
# Every dependency ships manylinux wheels, so the builder needs no compiler and no apt
# packages; the runtime stage gets only the finished virtualenv.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# Comma-separated extras of the result-relay package: "postgres", "transcription", or both
# ("postgres,transcription"); empty for the bare SQLite build.
ARG EXTRAS=postgres

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY schemas ./schemas
COPY delivery ./delivery
COPY transcription ./transcription
COPY store ./store

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# 1. wheels for the project and all its dependencies (with the chosen extras);
# 2. a self-contained virtualenv installed from those wheels only.
RUN spec="."; if [ -n "${EXTRAS}" ]; then spec=".[${EXTRAS}]"; fi \
 && pip wheel --no-cache-dir --wheel-dir /wheels "${spec}" \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels "${spec}" \
 && /opt/venv/bin/relay --help > /dev/null

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG EXTRAS=postgres

LABEL org.opencontainers.image.title="result-relay" \
      org.opencontainers.image.description="Stores workflow results and delivers them to Discord" \
      org.opencontainers.image.licenses="MIT" \
      io.result-relay.extras="${EXTRAS}"

# Fixed uid/gid, matching the Helm chart's securityContext (runAsUser/runAsGroup/fsGroup 10001).
RUN groupadd --system --gid 10001 relay \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /data \
            --shell /usr/sbin/nologin relay \
 && mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 0700 /data

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/data \
    RELAY_DATABASE_URL=sqlite:////data/relay.db \
    RELAY_LOG_FORMAT=json

WORKDIR /data
USER 10001:10001
EXPOSE 8000

# Liveness only (/readyz also needs the store and the workers); no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# SIGTERM (the default stop signal): the relay drains within RELAY_SHUTDOWN_GRACE (20 s) and
# exits 0 -- give `docker stop` more than that (docker stop -t 30).
ENTRYPOINT ["relay"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
