#!/usr/bin/env bash
# The cluster's volume provisioner for the StorageClass given as $3: for every
# claim of that class the scheduler has placed (WaitForFirstConsumer), it makes a
# world-writable directory under $2 and a hostPath PersistentVolume bound to the
# claim; a Released volume of its own is deleted with its directory.
#   provisioner.sh KUBECONFIG VOLUME_DIR STORAGE_CLASS
set -euo pipefail

KUBECONFIG_FILE="$1" VOLUME_DIR="$2" CLASS="$3"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=k8s/versions.sh
source "$HERE/versions.sh"
PROVISIONER="fastloans.local/hostpath"

kc() { "$K8S_BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
log() { printf '[provisioner %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

provision() {
  local ns="$1" name="$2" uid="$3" size="$4" modes="$5" pv="pvc-$3" mode list=""
  for mode in $modes; do list+="\"$mode\","; done
  mkdir -p "$VOLUME_DIR/$pv"
  chmod 0777 "$VOLUME_DIR/$pv"
  kc apply -f - >/dev/null <<YAML
{"apiVersion": "v1", "kind": "PersistentVolume",
 "metadata": {"name": "$pv", "annotations": {"pv.kubernetes.io/provisioned-by": "$PROVISIONER"}},
 "spec": {"capacity": {"storage": "$size"}, "accessModes": [${list%,}],
          "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "$CLASS",
          "claimRef": {"namespace": "$ns", "name": "$name", "uid": "$uid"},
          "hostPath": {"path": "$VOLUME_DIR/$pv", "type": "Directory"}}}
YAML
  log "provisioned $pv for $ns/$name ($size)"
}

sweep() {
  local ns name uid class size node modes pv by
  while read -r ns name uid class size node modes; do
    node="${node%-}"
    [[ "$class" == "$CLASS" && -n "$node" ]] || continue
    kc get pv "pvc-$uid" >/dev/null 2>&1 || provision "$ns" "$name" "$uid" "$size" "$modes"
  done < <(kc get pvc -A -o jsonpath='{range .items[?(@.status.phase=="Pending")]}{.metadata.namespace} {.metadata.name} {.metadata.uid} {.spec.storageClassName} {.spec.resources.requests.storage} {.metadata.annotations.volume\.kubernetes\.io/selected-node}- {.spec.accessModes[*]}{"\n"}{end}')
  while read -r pv by; do
    [[ "$by" == "$PROVISIONER" ]] || continue
    kc delete pv "$pv" --wait=false >/dev/null && rm -rf "${VOLUME_DIR:?}/$pv" && log "deleted $pv"
  done < <(kc get pv -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name} {.metadata.annotations.pv\.kubernetes\.io/provisioned-by}{"\n"}{end}')
}

trap 'exit 0' TERM INT
while true; do
  sweep || log "sweep failed; retrying"
  sleep 1 &
  wait $!
done
