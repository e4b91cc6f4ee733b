#!/usr/bin/env bash
# Installs the pinned command-line tools the chart tests need (helm, kube-score)
# into ${FASTLOANS_CACHE:-$HOME/.cache/fastloans}/bin. Both are built from source
# with the Go toolchain through the Go module proxy (no release downloads), so a
# first run takes a few minutes; later runs skip any binary whose version matches.
# Idempotent: safe to call before every test run.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.19.0}"
# The Kubernetes version helm assumes when no cluster is asked (helm template /
# lint): the release build stamps the minor of its client-go (v0.34 for helm 3.19);
# a plain go install would leave 1.20 and refuse charts that require a newer one.
HELM_K8S_MINOR="${HELM_K8S_MINOR:-34}"
KUBE_SCORE_VERSION="${KUBE_SCORE_VERSION:-v1.20.0}"

CACHE_DIR="${FASTLOANS_CACHE:-$HOME/.cache/fastloans}"
BIN_DIR="$CACHE_DIR/bin"
mkdir -p "$BIN_DIR"

log() { printf '[install-k8s-tools] %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "the Go toolchain (go) is required to build helm and kube-score"
  exit 1
fi

# go install <module>/cmd/<tool>@<version>, stamping the version into the binary
# so that "already installed" can be checked by asking the binary itself.
build() {
  local name="$1" pkg="$2" version="$3" ldflags="$4"
  log "building $name $version (go install $pkg@$version)"
  GOBIN="$BIN_DIR" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-}" \
    go install -trimpath -ldflags "$ldflags" "$pkg@$version"
}

# What was built is recorded beside the binary, so a change of either pin rebuilds.
helm_build="helm $HELM_VERSION kubernetes 1.$HELM_K8S_MINOR"
if [[ -x "$BIN_DIR/helm" && "$(cat "$BIN_DIR/.helm-build" 2>/dev/null)" == "$helm_build" ]]; then
  log "$helm_build already installed"
else
  build helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
     -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR \
     -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR"
  printf '%s\n' "$helm_build" > "$BIN_DIR/.helm-build"
fi

current_ks=""
if [[ -x "$BIN_DIR/kube-score" ]]; then
  current_ks="$("$BIN_DIR/kube-score" version 2>/dev/null | sed -n 's/^kube-score version: \([^,]*\),.*/\1/p' || true)"
fi
if [[ "$current_ks" == "$KUBE_SCORE_VERSION" ]]; then
  log "kube-score $KUBE_SCORE_VERSION already installed"
else
  build kube-score github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE_VERSION" \
    "-s -w -X main.version=$KUBE_SCORE_VERSION"
fi

"$BIN_DIR/helm" version --template 'helm {{.Version}}{{"\n"}}'
"$BIN_DIR/kube-score" version
