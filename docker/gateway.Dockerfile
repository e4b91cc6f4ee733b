# syntax=docker/dockerfile:1
# Fast Loans gateway image: the HTTP API (fastloans-gateway, port 8000) and the outbox relay
# (fastloans-relay, port 8004), which the chart runs from this same image with
# command ["fastloans-relay"] and HTTP_PORT=8004.
# Build from the repository root so that shared/ and constraints.txt are in the context:
#   docker build -f docker/gateway.Dockerfile -t fastloans/gateway .
# The four service Dockerfiles differ only in the service name, port and command
# (tests/charts/test_dockerfiles.py keeps them in step).

# One pinned base for both stages: the venv built in the first stage is copied
# as-is into the second, so the Python paths must match.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from the package metadata and the exact pins only: this
# layer is rebuilt when constraints.txt or a pyproject.toml changes, not on
# every source edit.
COPY constraints.txt ./
COPY docker/requirements-from-pyproject.py docker/
COPY shared/pyproject.toml shared/
COPY services/gateway/pyproject.toml services/gateway/
RUN python docker/requirements-from-pyproject.py shared/pyproject.toml services/gateway/pyproject.toml \
        > /tmp/requirements.txt \
 && pip install --no-cache-dir --requirement /tmp/requirements.txt --constraint constraints.txt

# Then the project's own packages (the shared library and the service); their
# dependencies are already in the venv.
COPY shared/ shared/
COPY services/gateway/ services/gateway/
RUN pip install --no-cache-dir --no-deps ./shared ./services/gateway

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="fastloans-gateway" \
      org.opencontainers.image.description="Fast Loans gateway"
# A fixed uid/gid so that the chart's runAsUser/fsGroup (10001) match the image.
RUN groupadd --system --gid 10001 fastloans \
 && useradd --system --uid 10001 --gid fastloans --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin fastloans
COPY --from=builder /opt/venv /opt/venv
# No .pyc writes at run time (the root filesystem is read-only in Kubernetes),
# unbuffered logs, and the venv first on PATH. Servers bind all interfaces in a
# container; HTTP_PORT is the port the chart probes and scrapes.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8000
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000 8004 9180
# Kubernetes probes /healthz and /readyz itself (see charts/fast-loans), so no
# HEALTHCHECK is baked in.
CMD ["fastloans-gateway"]
