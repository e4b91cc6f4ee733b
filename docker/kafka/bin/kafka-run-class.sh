#!/bin/bash
# Runs a main class of the Kafka jars in /opt/kafka/libs with Debian's Java, reading the
# environment variables of Kafka's own launcher: KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS,
# KAFKA_LOG4J_OPTS, KAFKA_OPTS and LOG_DIR (made when missing; the broker's own logs go
# to standard output).
set -euo pipefail

base="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: $0 <main class> [args…]" >&2
  exit 1
fi
log_dir="${LOG_DIR:-/tmp/kafka-logs}"
mkdir -p "$log_dir"
heap="${KAFKA_HEAP_OPTS:--Xmx256M}"
performance="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"
log4j="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$base/config/log4j2.properties}"
# shellcheck disable=SC2086 # each variable holds a list of JVM options
exec java $heap $performance $log4j "-Dkafka.logs.dir=$log_dir" ${KAFKA_OPTS:-} -cp "$base/libs/*" "$@"
