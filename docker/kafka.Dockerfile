# syntax=docker/dockerfile:1
# Apache Kafka (KRaft) for the chart's in-cluster broker where the official image cannot
# be pulled: the broker's jars from Maven Central (the ones the local stack resolves,
# devtools/fastloans_dev/devstack/kafka-pom.xml) on Debian's Java 17, with launchers at
# the official image's paths (/opt/kafka/bin/kafka-storage.sh, kafka-server-start.sh)
# that charts/fast-loans/templates/kafka/ calls. Build context: docker/kafka/; the jars
# come from a second context named kafka-libs:
#   docker build -f docker/kafka.Dockerfile --build-context kafka-libs=<dir of the jars> \
#     -t fastloans/kafka:4.1.1-local docker/kafka
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
ARG JAVA_PACKAGE=openjdk-17-jre-headless
ARG KAFKA_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The suite pins the Java version (bookworm: 17). The man directory is made first
# because Java's package installs a man page link there and slim images have none.
# hadolint ignore=DL3008
RUN test -n "${KAFKA_VERSION}" || { echo "build with --build-arg KAFKA_VERSION=<the jars' version>" >&2; exit 1; } \
 && mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends "${JAVA_PACKAGE}" \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 kafka \
 && useradd --system --uid 10001 --gid kafka --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kafka \
 && mkdir -p /var/lib/kafka/data \
 && chown 10001:10001 /var/lib/kafka/data
LABEL org.opencontainers.image.title="fastloans-kafka" \
      org.opencontainers.image.description="Apache Kafka ${KAFKA_VERSION} (Maven Central jars) on Debian's Java" \
      org.opencontainers.image.version="${KAFKA_VERSION}"
# kafka-libs is a named build context (--build-context), not a stage.
# hadolint ignore=DL3022
COPY --from=kafka-libs *.jar /opt/kafka/libs/
COPY bin/ /opt/kafka/bin/
COPY config/ /opt/kafka/config/
ENV PATH=/opt/kafka/bin:$PATH \
    LOG_DIR=/tmp/kafka-logs
WORKDIR /tmp
USER 10001:10001
EXPOSE 9092 9093
# No default command: the chart (and any user) formats the storage and starts the broker
# with its own server.properties (kafka-storage.sh format, then kafka-server-start.sh).
