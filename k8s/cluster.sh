#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, every process of it
# inside the network namespace $NETNS (k8s/versions.sh): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd (CRI, runc, bridge CNI),
# kubelet, kube-proxy (iptables, nft backend), kube-router's NetworkPolicy
# firewall and a hostPath volume provisioner; CoreDNS and metrics-server run as
# Deployments. The host reaches it only through the veth pair HOST_IP <-> NODE_IP.
#   k8s/cluster.sh up                  build what is missing, start, wait until Ready
#   k8s/cluster.sh down                stop everything, leave nothing behind (idempotent)
#   k8s/cluster.sh status              what runs
#   k8s/cluster.sh env                 the variables the tests use (eval "$(k8s/cluster.sh env)")
#   k8s/cluster.sh load-image ARCHIVE  import an OCI/docker archive into the node's containerd
#   k8s/cluster.sh tag-image REF NEW   give a loaded image a second name (e.g. another tag), no copy
#   k8s/cluster.sh smoke               prove DNS, Services, NetworkPolicy, PSA and metrics
#   k8s/cluster.sh leftovers           exit 1 if any process, mount, netns, link or rule remains
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source=k8s/versions.sh
source "$HERE/versions.sh"

STATE="${FASTLOANS_CLUSTER_DIR:-$REPO/.fastloans/cluster}"
PKI="$STATE/pki"
RUN="$STATE/run"
LOGS="$STATE/logs"
KUBECONFIG_ADMIN="$STATE/kubeconfig"
CONTAINERD_SOCK="$STATE/containerd/containerd.sock"
CGROUP_ROOT="fastloans-k8s"
PV_DIR="$STATE/volumes"
CRDS_DIR="${FASTLOANS_CRDS_DIR-}"
if [[ -z "${FASTLOANS_CRDS_DIR+set}" && -d "$REPO/../shared/schemas/crds-yaml" ]]; then
  CRDS_DIR="$REPO/../shared/schemas/crds-yaml"
fi
# The order in which the host processes start; they stop in reverse.
PROCESSES=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-router provisioner)

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
in_netns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }
kc() { "$K8S_BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# ---------------------------------------------------------------- packages
ensure_packages() {
  local missing=() p
  for p in "${NODE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
    || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; } \
    || die "apt-get install ${missing[*]} failed"
}

# ---------------------------------------------------------------- network
setup_network() {
  log "network namespace $NETNS: $NODE_IP (node) <-> $HOST_IP (host), pods $POD_CIDR, services $SERVICE_CIDR"
  ip netns add "$NETNS"
  ip link add "$VETH_HOST" type veth peer name "$VETH_NODE"
  ip link set "$VETH_NODE" netns "$NETNS"
  ip addr add "$HOST_IP/$VETH_PREFIX" dev "$VETH_HOST"
  ip link set "$VETH_HOST" up
  in_netns ip addr add "$NODE_IP/$VETH_PREFIX" dev "$VETH_NODE"
  in_netns ip link set "$VETH_NODE" up
  in_netns ip link set lo up
  # Nothing unmatched leaves: the service range is kept on the node (kube-proxy
  # DNATs it; what no Service matches is dropped, not routed), and no default route.
  in_netns ip route add blackhole "$SERVICE_CIDR"
  in_netns sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 \
    net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.conf.all.route_localnet=1
}

# ---------------------------------------------------------------- certificates
# issue NAME CN [O] [SAN]: an EC key and a certificate signed by the cluster CA.
issue() {
  local name="$1" org="${3-}" san="${4-}" subj="/CN=$2"
  [[ -n "$org" ]] && subj="/O=$org$subj"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  local ext="$PKI/$name.ext"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' > "$ext"
  [[ -n "$san" ]] && printf 'subjectAltName=%s\n' "$san" >> "$ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/${5:-ca}.crt" -CAkey "$PKI/${5:-ca}.key" \
    -CAcreateserial -days 30 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

make_ca() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 30 -out "$PKI/$1.crt" 2>/dev/null
}

# kubeconfig_for NAME FILE: a kubeconfig with NAME's client certificate, embedded.
kubeconfig_for() {
  local name="$1" file="$2"
  cat > "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: fastloans
    cluster:
      server: https://$NODE_IP:$APISERVER_PORT
      certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
  - name: $name
    user:
      client-certificate-data: $(base64 -w0 < "$PKI/$name.crt")
      client-key-data: $(base64 -w0 < "$PKI/$name.key")
contexts:
  - name: fastloans
    context: {cluster: fastloans, user: $name}
current-context: fastloans
EOF
  chmod 0600 "$file"
}

make_pki() {
  log "certificates (openssl, EC P-256) in $PKI"
  mkdir -p "$PKI"
  make_ca ca fastloans-ca
  make_ca front-proxy-ca fastloans-front-proxy-ca
  local svc="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
  issue apiserver kube-apiserver "" "IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:localhost,$svc"
  issue apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  issue front-proxy-client front-proxy-client "" "" front-proxy-ca
  issue admin fastloans-admin system:masters
  issue controller-manager system:kube-controller-manager
  issue scheduler system:kube-scheduler
  issue kubelet "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME"
  issue kube-proxy system:kube-proxy
  issue kube-router system:kube-router
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  kubeconfig_for admin "$KUBECONFIG_ADMIN"
  local c
  for c in controller-manager scheduler kubelet kube-proxy kube-router; do
    kubeconfig_for "$c" "$PKI/$c.kubeconfig"
  done
}

# ---------------------------------------------------------------- configuration files
write_configs() {
  mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/kubelet" "$PV_DIR" "$RUN" "$LOGS"
  cat > "$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$STATE/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
EOF
  # Pods: no default route, no masquerade; routes to the services and the node only.
  cat > "$STATE/cni/net.d/10-fastloans.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "fastloans",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "isDefaultGateway": false,
      "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "$SERVICE_CIDR", "gw": "$POD_GATEWAY"}, {"dst": "$NODE_IP/32", "gw": "$POD_GATEWAY"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  cat > "$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI/kubelet.crt"
tlsPrivateKeyFile: "$PKI/kubelet.key"
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
cgroupsPerQOS: true
oomScoreAdj: 0
failSwapOn: false
containerRuntimeEndpoint: "unix://$CONTAINERD_SOCK"
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: ["$DNS_SERVICE_IP"]
resolvConf: ""
maxPods: $MAX_PODS
podLogsDir: "$STATE/pod-logs"
serializeImagePulls: false
# The images cannot be pulled again: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%"}
rotateCertificates: false
serverTLSBootstrap: false
EOF
  cat > "$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
clientConnection: {kubeconfig: "$PKI/kube-proxy.kubeconfig"}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# ---------------------------------------------------------------- processes
# start NAME CMD...: run inside the netns, detached, logged, its PID recorded.
start() {
  local name="$1"; shift
  log "starting $name"
  nsenter --net="/run/netns/$NETNS" -- setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}

alive() { local p; p="$(cat "$RUN/$1.pid" 2>/dev/null)" && [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

# wait_for WHAT SECONDS CMD...: poll until CMD succeeds; show the log of WHAT on failure.
wait_for() {
  local what="$1" limit="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      [[ -f "$LOGS/$what.log" ]] && tail -n 30 "$LOGS/$what.log" >&2
      die "$what not ready after ${limit}s (log: $LOGS/$what.log)"
    fi
    if [[ -f "$RUN/$what.pid" ]] && ! alive "$what"; then
      tail -n 30 "$LOGS/$what.log" >&2
      die "$what exited (log: $LOGS/$what.log)"
    fi
    sleep 0.5
  done
}

https_ok() { in_netns curl -sfk --max-time 2 "$@"; }

start_control_plane() {
  local b="$K8S_BIN_DIR"
  start containerd /usr/bin/containerd --config "$STATE/containerd/config.toml"
  start etcd "$b/etcd" --name fastloans --data-dir "$STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster fastloans=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --unsafe-no-fsync --quota-backend-bytes 2147483648
  wait_for etcd 30 in_netns curl -sf --max-time 2 http://127.0.0.1:2381/health
  start kube-apiserver "$b/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
    --bind-address 0.0.0.0 --secure-port "$APISERVER_PORT" --advertise-address "$NODE_IP" \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range "$NODEPORT_RANGE" \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --enable-aggregator-routing --profiling=false --shutdown-delay-duration 0s
  wait_for kube-apiserver 90 https_ok "https://127.0.0.1:$APISERVER_PORT/readyz" \
    --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key"
  start kube-controller-manager "$b/kube-controller-manager" --kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --allocate-node-cidrs --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" --horizontal-pod-autoscaler-sync-period 10s
  start kube-scheduler "$b/kube-scheduler" --kubeconfig "$PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig "$PKI/scheduler.kubeconfig" --authorization-kubeconfig "$PKI/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false
  wait_for containerd 30 test -S "$CONTAINERD_SOCK"
}

import_images() {
  local name
  for name in pause coredns metrics-server probe traefik; do
    ctr_import "$K8S_IMAGE_DIR/$name.oci.tar" >/dev/null
  done
}

ctr_import() { ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$1"; }

start_node() {
  local b="$K8S_BIN_DIR"
  make_cgroups
  start kubelet "$b/kubelet" --config "$STATE/kubelet/config.yaml" --kubeconfig "$PKI/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet/pki" --hostname-override "$NODE_NAME" \
    --node-ip "$NODE_IP" --v 1
  start kube-proxy "$b/kube-proxy" --config "$STATE/kube-proxy.yaml"
  wait_for kubelet 90 node_ready
  start kube-router "$b/kube-router" --kubeconfig "$PKI/kube-router.kubeconfig" --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --enable-ibgp=false --enable-overlay=false --health-port 20244 --metrics-port 0 \
    --service-cluster-ip-range "$SERVICE_CIDR"
  start provisioner "$HERE/provisioner.sh" "$KUBECONFIG_ADMIN" "$PV_DIR" "$STORAGE_CLASS"
}

# The kubelet's cgroupRoot must exist in every v1 hierarchy (cpuset with the parent's CPUs and memory nodes).
make_cgroups() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -f "$h/cgroup.procs" && "$h" != */unified/ ]] || continue
    mkdir -p "$h$CGROUP_ROOT"
    if [[ -f "$h/cpuset.cpus" ]]; then
      cat "$h/cpuset.cpus" > "$h$CGROUP_ROOT/cpuset.cpus"
      cat "$h/cpuset.mems" > "$h$CGROUP_ROOT/cpuset.mems"
    fi
  done
}

node_ready() {
  [[ "$(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

apply_addons() {
  log "add-ons: RBAC for the node agents, StorageClass, CoreDNS, metrics-server, Traefik"
  local f
  for f in "$HERE"/manifests/*.yaml; do
    sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@METRICS_SERVER_IMAGE@|$METRICS_SERVER_IMAGE|g" \
      -e "s|@DNS_SERVICE_IP@|$DNS_SERVICE_IP|g" -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" \
      -e "s|@STORAGE_CLASS@|$STORAGE_CLASS|g" -e "s|@TRAEFIK_IMAGE@|$TRAEFIK_IMAGE|g" \
      -e "s|@INGRESS_NAMESPACE@|$INGRESS_NAMESPACE|g" -e "s|@INGRESS_CLASS@|$INGRESS_CLASS|g" \
      -e "s|@INGRESS_NODEPORT@|$INGRESS_NODEPORT|g" "$f"
    printf -- '---\n'
  done | kc apply -f - >/dev/null
  if [[ -n "$CRDS_DIR" ]]; then
    [[ -d "$CRDS_DIR" ]] || die "FASTLOANS_CRDS_DIR=$CRDS_DIR is not a directory"
    log "CRDs from $CRDS_DIR"
    kc apply --server-side -f "$CRDS_DIR" >/dev/null
  fi
  wait_for kubelet 120 kc -n kube-system rollout status deploy/coredns --timeout 5s
  wait_for kubelet 120 kc -n kube-system rollout status deploy/metrics-server --timeout 5s
  wait_for kubelet 120 kc -n "$INGRESS_NAMESPACE" rollout status deploy/traefik --timeout 5s
  wait_for kubelet 120 kc get --raw /apis/metrics.k8s.io/v1beta1/nodes
}

cmd_up() {
  [[ $EUID -eq 0 ]] || die "run as root (network namespace, cgroups, mounts)"
  ensure_packages
  "$HERE/build.sh"
  if [[ -d "$STATE" || -e "/run/netns/$NETNS" ]] || ip link show "$VETH_HOST" >/dev/null 2>&1; then
    log "a previous cluster (or its remains) exists: tearing it down first"
    cmd_down
  fi
  local start_s=$SECONDS
  mkdir -p "$STATE"
  setup_network
  make_pki
  write_configs
  start_control_plane
  import_images
  start_node
  apply_addons
  log "cluster Ready in $((SECONDS - start_s)) s; $(cmd_env | head -n1)"
}

# ---------------------------------------------------------------- tear-down
# stop NAME SECONDS: SIGTERM, then SIGKILL after SECONDS.
stop() {
  local name="$1" grace="$2" pid
  pid="$(cat "$RUN/$name.pid" 2>/dev/null)" || return 0
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

# The PIDs of processes that belong to this cluster: in its pod cgroups, or whose
# command line names its state directory (containerd shims, a crashed run's daemons).
our_pids() {
  local f pid
  for f in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
    [[ -d "$f" ]] && find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
  for f in /proc/[0-9]*/cmdline; do
    pid="${f#/proc/}"; pid="${pid%/cmdline}"
    [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
    tr '\0' ' ' 2>/dev/null < "$f" | grep -qF -- "$STATE/" && echo "$pid"
  done
  if [[ -e "/run/netns/$NETNS" ]]; then
    ip netns pids "$NETNS" 2>/dev/null
  fi
  true
}

kill_ours() {
  local pids
  pids="$(our_pids | sort -u | grep -v -x -e "$$" || true)"
  [[ -z "$pids" ]] && return 0
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  sleep 0.5
}

# Pods are deleted through the API first, so the kubelet tears their sandboxes
# down with CNI (veths, IPAM, netns mounts) as it would on a real node.
drain_pods() {
  alive kube-apiserver && alive kubelet || return 0
  log "deleting every pod through the API"
  stop kube-controller-manager 10
  kc delete pods --all --all-namespaces --grace-period 0 --force --wait=false >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    [[ -z "$(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null)" ]] && break
    sleep 0.5
  done
}

unmount_state() {
  local m
  # Deepest first; lazily if something still holds it.
  awk -v s="$STATE/" 'index($5, s) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

remove_cgroups() {
  local root
  for root in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
    [[ -d "$root" ]] && find "$root" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  true
}

# IDs of the containers and sandboxes this cluster's containerd knew.
container_ids() {
  local d
  for d in "$STATE/containerd/state/io.containerd.runtime.v2.task/k8s.io" \
    "$STATE/containerd/root/io.containerd.grpc.v1.cri/sandboxes" \
    "$STATE/containerd/root/io.containerd.grpc.v1.cri/containers"; do
    [[ -d "$d" ]] && ls "$d"
  done
  true
}

# What containerd 1.6, libcni and the kubelet keep at fixed host paths: shim
# sockets (/run/containerd/s/sha256(address/namespace/id)), CNI result caches
# (/var/lib/cni/results/<network>-<id>-<if>), the device-plugin directory. Normally
# gone after a clean stop; a crashed run leaves them. Only our IDs are touched.
remove_host_files() {
  local id
  while read -r id; do
    [[ -n "$id" ]] || continue
    rm -f "/run/containerd/s/$(printf '%s' "$CONTAINERD_SOCK/k8s.io/$id" | sha256sum | cut -d' ' -f1)"
    rm -f /var/lib/cni/results/*-"$id"-*
  done < <(container_ids | sort -u)
  rm -f /var/lib/cni/results/fastloans-* /var/lib/kubelet/device-plugins/kubelet.sock
  rmdir /run/containerd/s /run/containerd /var/lib/cni/results /var/lib/cni \
    /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null || true
}

cmd_down() {
  local start_s=$SECONDS
  if [[ -d "$RUN" ]]; then
    drain_pods
    stop provisioner 5
    stop kube-router 10
    stop kube-proxy 10
    stop kubelet 15
    stop kube-scheduler 10
    stop kube-controller-manager 10
    # The apiserver takes about a minute to finish on SIGTERM; its state is in etcd.
    stop kube-apiserver 5
    stop etcd 10
    stop containerd 10
  fi
  for _ in 1 2 3; do
    kill_ours
    [[ -z "$(our_pids)" ]] && break
  done
  unmount_state
  remove_cgroups
  ip netns del "$NETNS" 2>/dev/null || true
  ip link del "$VETH_HOST" 2>/dev/null || true
  remove_host_files
  rm -rf "$STATE"
  cmd_leftovers >/dev/null || cmd_leftovers
  log "cluster down in $((SECONDS - start_s)) s"
}

# Prints whatever remains and exits 1 if anything does.
cmd_leftovers() {
  local found=0 out
  out="$(our_pids | sort -u)"; [[ -n "$out" ]] && { echo "processes: $out"; found=1; }
  out="$(awk -v s="$STATE/" 'index($5, s) == 1 { print $5 }' /proc/self/mountinfo)"
  [[ -n "$out" ]] && { echo "mounts: $out"; found=1; }
  ip netns list | grep -qw "$NETNS" && { echo "netns: $NETNS"; found=1; }
  out="$(ip -o link show | grep -E "$VETH_HOST|$VETH_NODE|$BRIDGE" || true)"
  [[ -n "$out" ]] && { echo "links: $out"; found=1; }
  out="$(iptables-save 2>/dev/null | grep -E 'KUBE-|KUBE-ROUTER|flk8s|10\.23[123]\.' || true)"
  [[ -n "$out" ]] && { echo "host iptables: $out"; found=1; }
  out="$(ls /var/lib/cni/results/fastloans-* 2>/dev/null || true)"
  [[ -n "$out" ]] && { echo "CNI results: $out"; found=1; }
  out="$(ls -d /var/lib/kubelet /run/containerd/s 2>/dev/null || true)"
  [[ -n "$out" ]] && { echo "host directories of a kubelet or containerd: $out"; found=1; }
  out="$(ls -d /sys/fs/cgroup/*/"$CGROUP_ROOT" 2>/dev/null || true)"
  [[ -n "$out" ]] && { echo "cgroups: $out"; found=1; }
  ((found == 0)) && echo "no leftovers"
  return "$found"
}

# ---------------------------------------------------------------- queries
cmd_env() {
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_ADMIN"
  printf 'export FASTLOANS_K8S_NODE_IP=%q\n' "$NODE_IP"
  # The addresses a NodePort connection from the host comes from, seen by a pod: the host's end of the
  # veth, or the node's bridge address once kube-proxy has masqueraded it (for a NetworkPolicy's ipBlock).
  printf 'export FASTLOANS_K8S_HOST_IP=%q\n' "$HOST_IP"
  printf 'export FASTLOANS_K8S_POD_GATEWAY=%q\n' "$POD_GATEWAY"
  printf 'export FASTLOANS_K8S_NETNS=%q\n' "$NETNS"
  printf 'export FASTLOANS_K8S_STORAGE_CLASS=%q\n' "$STORAGE_CLASS"
  printf 'export FASTLOANS_K8S_CLUSTER_DOMAIN=%q\n' "$CLUSTER_DOMAIN"
  printf 'export FASTLOANS_K8S_NODEPORT_RANGE=%q\n' "$NODEPORT_RANGE"
  # The ingress controller: its IngressClass and namespace (for a NetworkPolicy's namespaceSelector), the
  # URL pods reach it at, and the one the host reaches it at (the NodePort of its web entry point).
  printf 'export FASTLOANS_K8S_INGRESS_CLASS=%q\n' "$INGRESS_CLASS"
  printf 'export FASTLOANS_K8S_INGRESS_NAMESPACE=%q\n' "$INGRESS_NAMESPACE"
  printf 'export FASTLOANS_K8S_INGRESS_URL=%q\n' "http://traefik.$INGRESS_NAMESPACE.svc.$CLUSTER_DOMAIN"
  printf 'export FASTLOANS_K8S_INGRESS_NODE_URL=%q\n' "http://$NODE_IP:$INGRESS_NODEPORT"
  # shellcheck disable=SC2016 # $PATH is for the shell that evaluates this
  printf 'export PATH=%q:%q:"$PATH"\n' "$K8S_BIN_DIR" "$TOOLS_BIN_DIR"
}

cmd_status() {
  local p
  for p in "${PROCESSES[@]}"; do
    if alive "$p"; then
      printf '%-24s running (pid %s, %s MiB)\n' "$p" "$(cat "$RUN/$p.pid")" \
        "$(( $(ps -o rss= -p "$(cat "$RUN/$p.pid")") / 1024 ))"
    else
      printf '%-24s stopped\n' "$p"
    fi
  done
  if alive kube-apiserver; then kc get nodes -o wide; kc get pods -A -o wide; fi
}

cmd_load_image() {
  local archive="${1:?usage: cluster.sh load-image ARCHIVE}"
  [[ -f "$archive" ]] || die "no such archive: $archive"
  alive containerd || die "the cluster is not running (k8s/cluster.sh up)"
  log "importing $archive"
  ctr_import "$archive"
}

cmd_tag_image() {
  local source="${1:?usage: cluster.sh tag-image REF NEW_REF}" target="${2:?usage: cluster.sh tag-image REF NEW_REF}"
  alive containerd || die "the cluster is not running (k8s/cluster.sh up)"
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images tag --force "$source" "$target" >/dev/null \
    || die "cannot tag $source as $target (is $source loaded?)"
  log "tagged $source as $target"
}

main() {
  local cmd="${1:-}"; shift || true
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    load-image) cmd_load_image "$@" ;;
    tag-image) cmd_tag_image "$@" ;;
    smoke) exec "$HERE/smoke.sh" ;;
    leftovers) cmd_leftovers ;;
    *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
