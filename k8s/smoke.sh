#!/usr/bin/env bash
# Smoke proof of the running local cluster (k8s/cluster.sh up): in a namespace
# enforcing Pod Security "restricted", a Deployment of the probe image behind a
# Service is reached by its DNS name from another pod and by its NodePort from
# the host; a deny-all NetworkPolicy blocks the connection and removing it lets
# it through again; a privileged pod is refused; names outside the cluster do
# not resolve; a PersistentVolumeClaim of the default class is bound and
# writable; kubectl top nodes answers and an HPA reads the pods' CPU. Exits non-zero on the first failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=k8s/versions.sh
source "$HERE/versions.sh"
eval "$("$HERE/cluster.sh" env)"
NS="fastloans-smoke"

log() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
kc() { kubectl "$@"; }

# eventually SECONDS DESCRIPTION CMD...: CMD succeeds within SECONDS.
eventually() {
  local limit="$1" what="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what (not within ${limit}s)"
    sleep 0.5
  done
  log "ok: $what"
}
fails() { ! "$@"; }
probe_from_client() { kc -n "$NS" exec deploy/client -- /probe "$@"; }

# pod_spec VOLUME: the probe pod (restricted security context) with VOLUME at /data.
pod_spec() {
  cat <<EOF
      securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: probe
          image: $PROBE_IMAGE
          imagePullPolicy: Never
          args: [serve, ":8080"]
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
          resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 32Mi}}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, $1}]
EOF
}

workloads() {
  kc apply -f - <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
  labels: {pod-security.kubernetes.io/enforce: restricted, pod-security.kubernetes.io/warn: restricted}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: server, namespace: $NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: server}}
  template:
    metadata: {labels: {app: server}}
    spec:
$(pod_spec "emptyDir: {}")
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: $NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
$(pod_spec "persistentVolumeClaim: {claimName: data}")
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: $NS}
spec:
  type: NodePort
  selector: {app: server}
  ports: [{port: 8080, targetPort: 8080}]
EOF
  kc -n "$NS" rollout status deploy/server --timeout 120s
  kc -n "$NS" rollout status deploy/client --timeout 120s
}

deny_policy() {
  kc apply -f - <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-server, namespace: $NS}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
EOF
}

main() {
  local start=$SECONDS url pod_ip node_port
  kc delete namespace "$NS" --ignore-not-found --wait >/dev/null
  workloads
  log "ok: restricted namespace, Deployments Available, PVC of class $STORAGE_CLASS bound"
  [[ "$(kc -n "$NS" get pvc data -o jsonpath='{.spec.storageClassName}/{.status.phase}')" == "$STORAGE_CLASS/Bound" ]] \
    || die "the claim is not Bound in $STORAGE_CLASS"
  probe_from_client touch /data/written || die "the volume is not writable by uid 65534"
  log "ok: the hostPath volume is writable by a non-root pod"

  url="http://server.$NS.svc.$CLUSTER_DOMAIN:8080/"
  eventually 30 "pod -> Service by DNS name ($url)" probe_from_client get "$url"
  eventually 10 "pod -> Service by short name (search path)" probe_from_client get "http://server:8080/"
  eventually 5 "no upstream DNS: example.com does not resolve" fails probe_from_client lookup example.com
  pod_ip="$(kc -n "$NS" get pod -l app=server -o jsonpath='{.items[0].status.podIP}')"

  node_port="$(kc -n "$NS" get svc server -o jsonpath='{.spec.ports[0].nodePort}')"
  eventually 10 "host -> NodePort http://$NODE_IP:$node_port/" curl -sf --max-time 2 "http://$NODE_IP:$node_port/"

  deny_policy >/dev/null
  eventually 30 "NetworkPolicy deny-all blocks pod -> Service" fails probe_from_client get "$url"
  eventually 5 "NetworkPolicy deny-all blocks pod -> pod IP $pod_ip" fails probe_from_client get "http://$pod_ip:8080/"
  kc -n "$NS" delete networkpolicy deny-server >/dev/null
  eventually 30 "without the policy pod -> Service passes again" probe_from_client get "$url"

  if kc -n "$NS" run privileged --image "$PROBE_IMAGE" --restart Never \
      --overrides '{"spec":{"containers":[{"name":"privileged","image":"'"$PROBE_IMAGE"'","securityContext":{"privileged":true}}]}}' \
      >/dev/null 2>&1; then
    die "Pod Security restricted admitted a privileged pod"
  fi
  log "ok: Pod Security restricted refuses a privileged pod"

  eventually 90 "kubectl top nodes" kc top nodes
  kc top nodes >&2
  kc -n "$NS" autoscale deploy/server --cpu-percent 80 --min 2 --max 3 >/dev/null
  eventually 90 "the HorizontalPodAutoscaler reads the pods' CPU from metrics-server" \
    bash -c "[[ -n \"\$(kubectl -n $NS get hpa server -o jsonpath='{.status.currentMetrics[0].resource.current.averageUtilization}')\" ]]"

  kc delete namespace "$NS" --wait --timeout 120s >/dev/null
  eventually 30 "the released volume is deleted by the provisioner" \
    bash -c "[[ -z \"\$(kubectl get pv -o name)\" ]]"
  log "all smoke checks passed in $((SECONDS - start)) s"
}

main "$@"
