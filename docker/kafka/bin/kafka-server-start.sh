#!/bin/bash
# Starts a Kafka node (broker and/or KRaft controller) from a server.properties file.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 server.properties [--override property=value]*" >&2
  exit 1
fi
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}"
exec "$(dirname "${BASH_SOURCE[0]}")/kafka-run-class.sh" kafka.Kafka "$@"
