# syntax=docker/dockerfile:1
# PostgreSQL for the chart's in-cluster database where the official image cannot be
# pulled: Debian's PostgreSQL packages (the same packages the official image installs)
# and a small entrypoint honouring the part of the official image's contract that
# charts/fast-loans/templates/postgresql/ uses. Build context: docker/postgresql/.
#   docker build -f docker/postgresql.Dockerfile -t fastloans/postgresql:17-local docker/postgresql
ARG DEBIAN_IMAGE=debian:trixie-slim
FROM ${DEBIAN_IMAGE}
ARG PG_MAJOR=17
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The suite pins the version (trixie: PostgreSQL 17); no main cluster is created at
# install time, the data directory is made by the entrypoint on first start. The
# postgres user takes the chart's uid/gid (10001) so initdb finds its passwd entry.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-common \
 && sed -ri 's/^#?(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf \
 && apt-get install -y --no-install-recommends "postgresql-${PG_MAJOR}" \
 && rm -rf /var/lib/apt/lists/* \
 && groupmod --gid 10001 postgres \
 && usermod --uid 10001 --gid 10001 postgres \
 && sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "/usr/share/postgresql/${PG_MAJOR}/postgresql.conf.sample" \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
 && chown -R 10001:10001 /var/lib/postgresql /var/run/postgresql \
 && chmod 1777 /var/lib/postgresql/data \
 && chmod 3777 /var/run/postgresql
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER 10001:10001
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
