#!/usr/bin/env bash
# Builds the local cluster's programs from the Go module proxy at the pins in
# k8s/versions.sh, into $FASTLOANS_CACHE/k8s/<version>/bin: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl, CoreDNS
# and pause (all from the wrapper module k8s/gomod), metrics-server and
# kube-router (go install), Traefik (the wrapper module k8s/traefik). Then it
# writes the OCI archives of the images the cluster runs (pause, CoreDNS,
# metrics-server, Traefik) into $FASTLOANS_CACHE/k8s/<version>/images.
# Each binary is recorded with what built it; a second run builds nothing.
#   k8s/build.sh              build what is missing
#   k8s/build.sh update-gomod rewrite k8s/gomod/go.mod from the pins (then go mod tidy)
#   k8s/build.sh update-traefik rewrite k8s/traefik/go.mod from TRAEFIK_VERSION (then go mod tidy)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=k8s/versions.sh
source "$HERE/versions.sh"
GOMOD_DIR="$HERE/gomod"
TRAEFIK_DIR="$HERE/traefik"

log() { printf '[k8s-build] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

require_go() {
  command -v go >/dev/null 2>&1 || die "the Go toolchain (go) is required"
}

# The wrapper module: k8s.io/kubernetes replaces its ~31 staging modules with
# local paths, which a dependent cannot use; pin each to the published v0.x.
update_gomod() {
  local staging
  log "writing $GOMOD_DIR/go.mod for kubernetes $KUBERNETES_VERSION"
  staging="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
    | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$staging" ]] || die "could not download k8s.io/kubernetes@$KUBERNETES_VERSION"
  {
    printf 'module fastloans.local/k8s\n\ngo 1.24.0\n\nrequire (\n'
    printf '\tgithub.com/coredns/coredns %s\n' "$COREDNS_VERSION"
    printf '\tgo.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION"
    printf '\tk8s.io/kubernetes %s\n)\n\nreplace (\n' "$KUBERNETES_VERSION"
    sed -n 's|^\s*\(k8s.io/[a-z-]*\) => ./staging/src/.*|\1|p' "$staging" | sort -u \
      | while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$KUBERNETES_STAGING_VERSION"; done
    printf ')\n'
  } > "$GOMOD_DIR/go.mod"
  rm -f "$GOMOD_DIR/go.sum"
  (cd "$GOMOD_DIR" && GOFLAGS=-mod=mod go mod tidy)
}

check_gomod() {
  local pin
  for pin in "k8s.io/kubernetes $KUBERNETES_VERSION" "go.etcd.io/etcd/server/v3 $ETCD_VERSION" \
    "github.com/coredns/coredns $COREDNS_VERSION"; do
    grep -q "^\s*$pin\$" "$GOMOD_DIR/go.mod" 2>/dev/null \
      || die "k8s/gomod/go.mod does not require $pin (k8s/versions.sh): run k8s/build.sh update-gomod"
  done
}

# Traefik's wrapper module: its go.mod's replace and exclude lines, which only
# apply in the main module, repeated here. A replace to a local path (one of its
# own directories) cannot be served by the proxy: refuse it rather than guess.
update_traefik() {
  local upstream
  log "writing $TRAEFIK_DIR/go.mod for traefik $TRAEFIK_VERSION"
  upstream="$(GOFLAGS=-mod=mod go mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" \
    | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$upstream" ]] || die "could not download github.com/traefik/traefik/v3@$TRAEFIK_VERSION"
  if grep -Eq '=>\s*\.{1,2}/' "$upstream"; then
    die "traefik $TRAEFIK_VERSION replaces a module with a directory of its repository: $(grep -E '=>\s*\.{1,2}/' "$upstream")"
  fi
  {
    printf 'module fastloans.local/traefik\n\n%s\n\nrequire github.com/traefik/traefik/v3 %s\n\n' \
      "$(grep -m1 '^go ' "$upstream")" "$TRAEFIK_VERSION"
    printf '// Repeated from Traefik %s'"'"'s go.mod (k8s/build.sh update-traefik).\n' "$TRAEFIK_VERSION"
    awk '/^replace \(/ {block=1} block {print} block && /^\)/ {block=0} /^replace [^(]/ {print}' "$upstream"
    grep '^exclude ' "$upstream" || true
  } > "$TRAEFIK_DIR/go.mod"
  rm -f "$TRAEFIK_DIR/go.sum"
  (cd "$TRAEFIK_DIR" && GOFLAGS=-mod=mod go mod tidy)
}

# "<name> <what built it>" is kept beside the binary; a change of pin rebuilds.
stamp_of() { printf '%s %s\n' "$1" "$2"; }
is_built() {
  local name="$1" stamp="$2"
  [[ -x "$K8S_BIN_DIR/$name" && "$(cat "$K8S_BIN_DIR/.$name.build" 2>/dev/null)" == "$(stamp_of "$name" "$stamp")" ]]
}
record() { stamp_of "$1" "$2" > "$K8S_BIN_DIR/.$1.build"; }

k8s_ldflags() {
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local v
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean ' \
      "$v" "$KUBERNETES_VERSION" "$v" "$v" "$minor" "$v"
  done
  printf -- '-s -w'
}

# Programs of the wrapper module, built in one go build so they share its work.
build_wrapper() {
  local -A pkgs=(
    [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
    [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
    [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
    [kubelet]=k8s.io/kubernetes/cmd/kubelet
    [kube-proxy]=k8s.io/kubernetes/cmd/kube-proxy
    [kubectl]=k8s.io/kubernetes/cmd/kubectl
    [etcd]=go.etcd.io/etcd/server/v3
    [coredns]=./coredns
    [pause]=./pause
    [probe]=./probe
  )
  local -A stamps=(
    [etcd]="etcd $ETCD_VERSION" [coredns]="coredns $COREDNS_VERSION kubernetes $KUBERNETES_STAGING_VERSION"
    [pause]="pause $(sha256sum "$GOMOD_DIR/pause/main.go" | cut -c1-16)"
    [probe]="probe $(sha256sum "$GOMOD_DIR/probe/main.go" | cut -c1-16)"
  )
  local name todo=() out
  for name in "${!pkgs[@]}"; do
    [[ -n "${stamps[$name]:-}" ]] || stamps[$name]="kubernetes $KUBERNETES_VERSION"
    if is_built "$name" "${stamps[$name]}"; then
      log "$name: ${stamps[$name]} already built"
    else
      todo+=("$name")
    fi
  done
  ((${#todo[@]})) || return 0
  check_gomod
  out="$(mktemp -d "$FASTLOANS_CACHE/k8s/build.XXXXXX")"
  log "building ${todo[*]}: from nothing this takes 10 to 30 minutes on 2 cores (about 3 GB of Go build cache)"
  for name in "${todo[@]}"; do
    log "building $name (${stamps[$name]})"
    # One package per go build keeps the output name ours (etcd's package is .../server/v3).
    (cd "$GOMOD_DIR" && CGO_ENABLED=0 go build -trimpath -ldflags "$(k8s_ldflags)" \
      -o "$out/$name" "${pkgs[$name]}") || die "go build of $name failed"
    mv "$out/$name" "$K8S_BIN_DIR/$name"
    record "$name" "${stamps[$name]}"
  done
  rmdir "$out"
}

# Programs whose own go.mod resolves as is (no replace lines): go install.
build_installed() {
  local name="$1" pkg="$2" version="$3" ldflags="$4" stamp
  stamp="$name $version"
  if is_built "$name" "$stamp"; then
    log "$name: $stamp already built"
    return 0
  fi
  log "building $name $version (go install $pkg@$version)"
  GOBIN="$K8S_BIN_DIR" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w $ldflags" "$pkg@$version" \
    || die "go install of $pkg@$version failed"
  record "$name" "$stamp"
}

build_traefik() {
  local stamp="traefik $TRAEFIK_VERSION" out
  if is_built traefik "$stamp"; then
    log "traefik: $stamp already built"
    return 0
  fi
  grep -q "^require github.com/traefik/traefik/v3 $TRAEFIK_VERSION\$" "$TRAEFIK_DIR/go.mod" \
    || die "k8s/traefik/go.mod does not require traefik $TRAEFIK_VERSION (k8s/versions.sh): run k8s/build.sh update-traefik"
  out="$(mktemp -d "$FASTLOANS_CACHE/k8s/build.XXXXXX")"
  log "building traefik $TRAEFIK_VERSION (wrapper module k8s/traefik): from nothing about 10 minutes on 2 cores"
  (cd "$TRAEFIK_DIR" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
    -o "$out/traefik" github.com/traefik/traefik/v3/cmd/traefik) || die "go build of traefik failed"
  mv "$out/traefik" "$K8S_BIN_DIR/traefik"
  rmdir "$out"
  record traefik "$stamp"
}

# An OCI archive holding one static binary FROM scratch; rebuilt when the binary changes.
build_image() {
  local name="$1" ref="$2" binary="$3"; shift 3
  local archive="$K8S_IMAGE_DIR/$name.oci.tar" stamp
  stamp="$ref $(sha256sum "$K8S_BIN_DIR/$binary" | cut -d' ' -f1)"
  if [[ -f "$archive" && "$(cat "$archive.build" 2>/dev/null)" == "$stamp" ]]; then
    log "image $ref already written"
    return 0
  fi
  log "writing image $ref"
  python3 "$HERE/oci_image.py" --ref "$ref" --out "$archive" \
    --file "$K8S_BIN_DIR/$binary:/$binary" "$@"
  printf '%s\n' "$stamp" > "$archive.build"
}

main() {
  require_go
  case "${1:-}" in
    update-gomod) update_gomod; return 0 ;;
    update-traefik) update_traefik; return 0 ;;
    "") ;;
    *) die "unknown command ${1}: k8s/build.sh [update-gomod|update-traefik]" ;;
  esac
  mkdir -p "$K8S_BIN_DIR" "$K8S_IMAGE_DIR"
  local start=$SECONDS
  build_wrapper
  build_installed metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server "$METRICS_SERVER_VERSION" \
    "-X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION"
  build_installed kube-router github.com/cloudnativelabs/kube-router/v2/cmd/kube-router "$KUBE_ROUTER_VERSION" \
    "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION"
  build_traefik
  build_image pause "$PAUSE_IMAGE" pause --entrypoint /pause --user 65535:65535
  build_image coredns "$COREDNS_IMAGE" coredns --entrypoint /coredns --user 65532:65532
  build_image probe "$PROBE_IMAGE" probe --entrypoint /probe --user 65534:65534
  build_image metrics-server "$METRICS_SERVER_IMAGE" metrics-server --entrypoint /metrics-server --user 65534:65534
  build_image traefik "$TRAEFIK_IMAGE" traefik --entrypoint /traefik --user 65532:65532
  log "binaries in $K8S_BIN_DIR, images in $K8S_IMAGE_DIR ($((SECONDS - start)) s)"
}

main "$@"
