#!/bin/bash
# Kafka's storage tool (format, info, random-uuid) for KRaft log directories.
set -euo pipefail

exec "$(dirname "${BASH_SOURCE[0]}")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
