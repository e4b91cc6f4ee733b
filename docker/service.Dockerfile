# syntax=docker/dockerfile:1
# Fast Loans service image, one per project under services/ (SERVICE): gateway, risk, approval, recorder.
# The gateway image also runs the outbox relay (the chart sets its command to fastloans-relay).
# Build from the repository root so that shared/ and constraints.txt are in the context; the
# service registry (shared/fastloans/services.py) gives each image's ports, and skaffold.yaml and
# `make images` pass them:
#   docker build -f docker/service.Dockerfile --build-arg SERVICE=risk --build-arg PORTS=8001 -t fastloans/risk .

# One pinned base for both stages: the venv built in the first stage is copied
# as-is into the second, so the Python paths must match.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# The project under services/ to install; its console script fastloans-${SERVICE} is the image's command.
ARG SERVICE
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<gateway|risk|approval|recorder>" >&2; exit 1; } \
 && python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from the package metadata and the exact pins only: this
# layer is rebuilt when constraints.txt or a pyproject.toml changes, not on
# every source edit.
COPY constraints.txt ./
COPY docker/requirements-from-pyproject.py docker/
COPY shared/pyproject.toml shared/
COPY services/${SERVICE}/pyproject.toml services/${SERVICE}/
RUN python docker/requirements-from-pyproject.py shared/pyproject.toml services/${SERVICE}/pyproject.toml \
        > /tmp/requirements.txt \
 && pip install --no-cache-dir --requirement /tmp/requirements.txt --constraint constraints.txt

# Then the project's own packages (the shared library and the service); their
# dependencies are already in the venv. A fixed name for the service's console script
# lets the CMD below stay in exec form (no shell between the container and the process).
COPY shared/ shared/
COPY services/${SERVICE}/ services/${SERVICE}/
RUN pip install --no-cache-dir --no-deps ./shared ./services/${SERVICE} \
 && test -x /opt/venv/bin/fastloans-${SERVICE} \
 && ln -s fastloans-${SERVICE} /opt/venv/bin/fastloans-service \
 && { cat services/${SERVICE}/debian-packages.txt 2>/dev/null || true; } > /opt/debian-packages.txt

FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
# The ports the image's processes listen on, space-separated (its own service's first).
ARG PORTS
LABEL org.opencontainers.image.title="fastloans-${SERVICE}" \
      org.opencontainers.image.description="Fast Loans ${SERVICE}"
# A fixed uid/gid so that the chart's runAsUser/fsGroup (10001) match the image.
RUN test -n "${PORTS}" || { echo "build with --build-arg PORTS=<the service's ports>" >&2; exit 1; } \
 && groupadd --system --gid 10001 fastloans \
 && useradd --system --uid 10001 --gid fastloans --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin fastloans
# The Debian libraries a service loads at run time, from services/<name>/debian-packages.txt when it has one
# (the gateway: Pango and a font, which WeasyPrint needs for PDF notices); none for the others. Fonts get their
# cache built here: the root file system is read-only at run time, where fontconfig could not write one.
COPY --from=builder /opt/debian-packages.txt /tmp/debian-packages.txt
# hadolint ignore=DL3008
RUN if [ -s /tmp/debian-packages.txt ]; then \
      apt-get update \
      && xargs -a /tmp/debian-packages.txt apt-get install -y --no-install-recommends \
      && rm -rf /var/lib/apt/lists/* \
      && if command -v fc-cache >/dev/null; then fc-cache --system-only; fi; \
    fi \
 && rm /tmp/debian-packages.txt
COPY --from=builder /opt/venv /opt/venv
# No .pyc writes at run time (the root filesystem is read-only in Kubernetes),
# unbuffered logs, and the venv first on PATH. Servers bind all interfaces in a
# container; the port defaults to the registry's (HTTP_PORT or PORT override it).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HTTP_HOST=0.0.0.0
WORKDIR /tmp
USER 10001:10001
EXPOSE ${PORTS}
# Kubernetes probes /healthz and /readyz itself (see charts/fast-loans), so no
# HEALTHCHECK is baked in.
CMD ["fastloans-service"]
