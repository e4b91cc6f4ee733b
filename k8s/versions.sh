# shellcheck shell=bash disable=SC2034
# Every pin and name of the local Kubernetes cluster, in one place. Sourced by
# k8s/build.sh and k8s/cluster.sh (and read by the tests through `cluster.sh env`).

# Kubernetes components (kube-apiserver, -controller-manager, -scheduler, kubelet,
# kube-proxy, kubectl) built from k8s.io/kubernetes through the Go module proxy.
# 1.34 is the newest minor whose kubelet runs on cgroup v1 without opting in
# (1.35+ refuse it unless failCgroupV1: false); this machine mounts cgroup v1.
KUBERNETES_VERSION="v1.34.4"
# The staging modules (k8s.io/api, client-go, ...) carry the same patch as v0.x.
KUBERNETES_STAGING_VERSION="v0.${KUBERNETES_VERSION#v1.}"
# etcd: the version k8s.io/kubernetes v1.34.4 itself requires (client and server).
ETCD_VERSION="v3.6.4"
# CoreDNS: its client-go (v0.34.0) matches the Kubernetes minor, so it builds in
# the same wrapper module and shares the build cache.
COREDNS_VERSION="v1.12.4"
# metrics-server and the NetworkPolicy agent are built with go install (their
# go.mod have no replace lines).
METRICS_SERVER_VERSION="v0.8.0"
# NetworkPolicy agent: kube-router's firewall controller (iptables + ipset).
# sigs.k8s.io/kube-network-policies (what kind runs) needs the nftables "queue"
# expression, which this kernel lacks (CONFIG_NFT_QUEUE is not set).
KUBE_ROUTER_VERSION="v2.1.0"
# Ingress controller: Traefik, built from the wrapper module k8s/traefik (Traefik's
# go.mod has replace lines). v3.6.12: every module it needs is served by the Go
# module proxy here; v3.7's ACME DNS providers need versions the proxy refuses.
TRAEFIK_VERSION="v3.6.12"

# Debian packages the node needs (apt-get installs the missing ones).
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables nftables conntrack ipset iproute2 openssl procps curl util-linux)

# Local images (imported into containerd; never pulled). The tag records what built them.
PAUSE_IMAGE="localhost/fastloans/pause:3.10-local"
COREDNS_IMAGE="localhost/fastloans/coredns:${COREDNS_VERSION}"
METRICS_SERVER_IMAGE="localhost/fastloans/metrics-server:${METRICS_SERVER_VERSION}"
TRAEFIK_IMAGE="localhost/fastloans/traefik:${TRAEFIK_VERSION}"
# The smoke test's workload (k8s/gomod/probe): an HTTP server and client checks.
PROBE_IMAGE="localhost/fastloans/probe:local"

# Network: everything lives in this namespace; the host reaches it only through
# the veth pair (HOST_IP on the host side, NODE_IP inside).
NETNS="fastloans-k8s"
VETH_HOST="flk8s-host"
VETH_NODE="flk8s-node"
VETH_PREFIX="30"
HOST_IP="10.231.0.1"
NODE_IP="10.231.0.2"
NODE_NAME="fastloans-node"
BRIDGE="flk8s-br0"
POD_CIDR="10.232.0.0/16"
# The controller-manager gives the node the first /24 of POD_CIDR; the bridge CNI uses it.
NODE_POD_CIDR="10.232.0.0/24"
POD_GATEWAY="10.232.0.1"
SERVICE_CIDR="10.233.0.0/16"
KUBERNETES_SERVICE_IP="10.233.0.1"
DNS_SERVICE_IP="10.233.0.10"
CLUSTER_DOMAIN="cluster.local"
APISERVER_PORT="6443"
NODEPORT_RANGE="30000-32767"
MAX_PODS="110"
STORAGE_CLASS="fastloans-hostpath"
# The ingress controller: its namespace, IngressClass and the NodePort of its
# web entry point (the host reaches the Ingress at http://NODE_IP:INGRESS_NODEPORT).
INGRESS_NAMESPACE="fastloans-ingress"
INGRESS_CLASS="traefik"
INGRESS_NODEPORT="30080"

# Where things go.
FASTLOANS_CACHE="${FASTLOANS_CACHE:-$HOME/.cache/fastloans}"
K8S_BIN_DIR="$FASTLOANS_CACHE/k8s/${KUBERNETES_VERSION}/bin"
K8S_IMAGE_DIR="$FASTLOANS_CACHE/k8s/${KUBERNETES_VERSION}/images"
TOOLS_BIN_DIR="$FASTLOANS_CACHE/bin"
