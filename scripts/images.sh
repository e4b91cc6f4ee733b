#!/bin/bash
# Builds every image the chart runs, without a Docker engine, and saves each as an OCI
# archive that containerd imports (ctr -n k8s.io images import):
#   - the public bases the Dockerfiles start FROM, made locally from Debian packages with
#     mmdebstrap (minbase) and tagged with the public names, because no container registry
#     is reachable here (python:3.11.14-slim-bookworm is Debian's Python 3.11.2);
#   - one service image per line of the service registry (docker/service.Dockerfile);
#   - the PostgreSQL and Kafka images for the in-cluster database and broker
#     (docker/postgresql.Dockerfile, docker/kafka.Dockerfile).
# podman runs with its own configuration and storage under $FASTLOANS_CACHE/images (nothing
# written to /etc), the cgroupfs manager, runc and the rlimits this kind of machine allows.
# An image whose inputs did not change is not rebuilt. Usage: scripts/images.sh [image…]
# (default: all; names: gateway risk approval recorder postgresql kafka).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR/.. source=docker/images.env
source "$ROOT/docker/images.env"
CACHE="${FASTLOANS_CACHE:-$HOME/.cache/fastloans}"
IMAGES_DIR="$CACHE/images"
ROOTFS_DIR="$IMAGES_DIR/rootfs"
STATE_DIR="$IMAGES_DIR/state"
LOG_DIR="$IMAGES_DIR/logs"
PODMAN_CONF_DIR="$IMAGES_DIR/podman"
RUN_DIR="/run/fastloans-images"
HOST_CA=/etc/ssl/certs/ca-certificates.crt
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
STARTED=$SECONDS

# Progress goes to standard error (standard output carries values between functions).
log() { printf '[images %4ds] %s\n' "$((SECONDS - STARTED))" "$*" >&2; }

die() {
  printf '[images] error: %s\n' "$*" >&2
  exit 1
}

# --- tools -----------------------------------------------------------------------------

ensure_packages() {
  local missing=() tool package
  for tool in podman:podman runc:runc mmdebstrap:mmdebstrap catatonit:catatonit; do
    package="${tool#*:}"
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
  log "installing ${missing[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } \
    || die "apt-get install ${missing[*]} failed"
}

write_podman_config() {
  mkdir -p "$PODMAN_CONF_DIR" "$PODMAN_CONF_DIR/cni" "$IMAGES_DIR/storage" "$RUN_DIR" "$STATE_DIR" "$LOG_DIR" "$ROOTFS_DIR"
  # No systemd (cgroupfs, file events), runc (crun refuses the hybrid cgroup layout),
  # rlimits within the machine's hard limits (no CAP_SYS_RESOURCE), and network
  # configuration kept out of /etc/cni/net.d, which belongs to the cluster's runtime.
  cat >"$PODMAN_CONF_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$RUN_DIR/events.log"
runtime = "runc"
tmp_dir = "$RUN_DIR/libpod"

[network]
network_config_dir = "$PODMAN_CONF_DIR/cni"
EOF
  cat >"$PODMAN_CONF_DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$IMAGES_DIR/storage"
runroot = "$RUN_DIR/storage"
EOF
  # Short names (python:…, debian:…) resolve to Docker Hub's, which are only ever found
  # locally: every build runs with --pull=never.
  cat >"$PODMAN_CONF_DIR/registries.conf" <<'EOF'
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
}

pm() {
  CONTAINERS_CONF="$PODMAN_CONF_DIR/containers.conf" \
    CONTAINERS_STORAGE_CONF="$PODMAN_CONF_DIR/storage.conf" \
    CONTAINERS_REGISTRIES_CONF="$PODMAN_CONF_DIR/registries.conf" \
    podman "$@"
}

# Runs a long step with its output in a log file; on failure prints the log's tail.
logged() {
  local name="$1"
  shift
  if ! "$@" >"$LOG_DIR/$name.log" 2>&1; then
    tail -n 40 "$LOG_DIR/$name.log" >&2
    die "$name failed (full log: $LOG_DIR/$name.log)"
  fi
}

image_id() { pm image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

label_of() { pm image inspect --format "{{ index .Labels \"$2\" }}" "$1" 2>/dev/null || true; }

# --- base images -------------------------------------------------------------------------

# Makes (once) a minbase rootfs of SUITE with the given packages; slim-like: no manuals,
# documentation beyond copyright files, or translations.
rootfs() {
  local suite="$1" include="$2" key tarball
  key="$(printf '%s|%s|minbase|slim' "$suite" "$include" | sha256sum | cut -c1-12)"
  tarball="$ROOTFS_DIR/$suite-$key.tar"
  if [ ! -s "$tarball" ]; then
    log "making the $suite rootfs (mmdebstrap minbase${include:+, $include})"
    logged "rootfs-$suite-$key" mmdebstrap --variant=minbase --mode=root \
      ${include:+--include="$include"} \
      --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      "$suite" "$ROOTFS_DIR/partial-$suite-$key.tar" </dev/null
    mv "$ROOTFS_DIR/partial-$suite-$key.tar" "$tarball"
  fi
  printf '%s\n' "$tarball"
}

# Imports a rootfs tarball as REF unless REF already is that tarball.
import_base() {
  local ref="$1" tarball="$2" cmd="$3" sum
  sum="$(sha256sum "$tarball" | cut -c1-64)"
  if [ "$(label_of "$ref" io.fastloans.rootfs.sha256)" = "$sum" ]; then
    return 0
  fi
  log "importing $ref from $(basename "$tarball")"
  logged "import-${ref//[\/:]/_}" pm import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change "CMD [\"$cmd\"]" \
    --change "LABEL io.fastloans.rootfs.sha256=$sum" \
    --change "LABEL org.opencontainers.image.description=Local stand-in made from Debian packages (mmdebstrap), not the registry's image" \
    "$tarball" "$ref"
}

python_base_ref() {
  local name
  name="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$ROOT/docker/service.Dockerfile")"
  [ -n "$name" ] || die "docker/service.Dockerfile has no ARG PYTHON_IMAGE=<image>"
  qualify "$name"
}

debian_base_ref() {
  local dockerfile="$1" name
  name="$(sed -n 's/^ARG DEBIAN_IMAGE=//p' "$dockerfile")"
  [ -n "$name" ] || die "$dockerfile has no ARG DEBIAN_IMAGE=<image>"
  qualify "$name"
}

# docker.io/library/NAME for an official image's short name, docker.io/NAME for user/name.
qualify() {
  case "$1" in
    */*/*) printf '%s\n' "$1" ;;
    */*) printf 'docker.io/%s\n' "$1" ;;
    *) printf 'docker.io/library/%s\n' "$1" ;;
  esac
}

make_bases() {
  local python_ref
  python_ref="$(python_base_ref)"
  import_base "$python_ref" "$(rootfs "$BASE_SUITE" python3,python3-venv,python-is-python3,ca-certificates)" python3
  import_base "$(debian_base_ref "$ROOT/docker/postgresql.Dockerfile")" "$(rootfs "$POSTGRES_SUITE" "")" bash
  import_base "$(debian_base_ref "$ROOT/docker/kafka.Dockerfile")" "$(rootfs "$KAFKA_SUITE" "")" bash
}

# --- images ------------------------------------------------------------------------------

# A hash of everything a build reads: the base image, the Dockerfile, the build options
# and the context files (as the contexts' ignore rules see them).
inputs_hash() {
  local base="$1" dockerfile="$2" options="$3"
  shift 3
  {
    printf '%s\n%s\n' "$(image_id "$base")" "$options"
    cat "$dockerfile"
    tar -P --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
      --exclude=__pycache__ --exclude='*.py[cod]' --exclude='*.egg-info' --exclude=.pytest_cache \
      --exclude=.mypy_cache --exclude=.ruff_cache --exclude=build --exclude=dist --exclude=.venv \
      --exclude='.env' --exclude='.env.*' --exclude=node_modules -cf - "$@"
  } | sha256sum | cut -c1-64
}

# build NAME REF BASE DOCKERFILE INPUT… -- PODMAN-BUILD-OPTIONS… CONTEXT
build() {
  local name="$1" ref="$2" base="$3" dockerfile="$4" inputs=() options sum stamp archive started
  shift 4
  while [ "$1" != -- ]; do inputs+=("$1"); shift; done
  shift
  archive="$IMAGES_DIR/$name.tar"
  stamp="$STATE_DIR/$name.inputs"
  # The options with the checkout's own path left out: another clone of the same inputs reuses the image.
  options="$*"
  sum="$(cd "$ROOT" && inputs_hash "$base" "$dockerfile" "${options//"$ROOT"/.}" "${inputs[@]}")"
  if [ -s "$archive" ] && [ -n "$(image_id "$ref")" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
    log "$ref: inputs unchanged, kept ($archive)"
    return 0
  fi
  started=$SECONDS
  log "building $ref ($dockerfile)"
  # --pull=never: every base is local. --network=host: the RUN steps reach only the package
  # registries (pip, apt), and no bridge, CNI state or iptables rule is made on the host.
  logged "build-$name" pm build --pull=never --network=host --layers -f "$ROOT/$dockerfile" -t "$ref" "$@"
  rm -f "$IMAGES_DIR/partial-$name.tar"
  logged "save-$name" pm save --format oci-archive -o "$IMAGES_DIR/partial-$name.tar" "$ref"
  mv "$IMAGES_DIR/partial-$name.tar" "$archive"
  printf '%s\n' "$sum" >"$stamp"
  log "$ref built and saved in $((SECONDS - started))s"
}

# Each image of the registry, with its ports: "<image> <port>…" per line.
registry_images() {
  [ -x "$PYTHON" ] || die "no $PYTHON: run make venv first (or set PYTHON)"
  (cd "$ROOT" && "$PYTHON" -m fastloans.services)
}

build_service() {
  local image="$1" ports="$2" mount=()
  # pip inside the build trusts the host's CA bundle (package registries' HTTPS may be
  # re-signed here); it is mounted for the RUN steps only and never stored in a layer.
  [ -s "$HOST_CA" ] && mount=(-v "$HOST_CA:$HOST_CA:ro")
  build "$image" "$(ref_of "$image")" "$(python_base_ref)" docker/service.Dockerfile \
    constraints.txt docker/requirements-from-pyproject.py shared "services/$image" -- \
    --build-arg "SERVICE=$image" --build-arg "PORTS=$ports" "${mount[@]}" "$ROOT"
}

kafka_version() {
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/devtools/fastloans_dev/devstack/kafka-pom.xml"
}

# The broker's jars, resolved once by the local stack's code into $FASTLOANS_CACHE.
kafka_libs() {
  [ -x "$PYTHON" ] || die "no $PYTHON: run make venv first (or set PYTHON)"
  FASTLOANS_CACHE="$CACHE" "$PYTHON" -c 'from fastloans_dev.devstack.kafka import ensure_jars; print(ensure_jars())'
}

build_postgresql() {
  build postgresql "$POSTGRES_IMAGE" "$(debian_base_ref "$ROOT/docker/postgresql.Dockerfile")" \
    docker/postgresql.Dockerfile docker/postgresql -- \
    --build-arg "PG_MAJOR=$POSTGRES_MAJOR" "$ROOT/docker/postgresql"
}

build_kafka() {
  local version libs
  version="$(kafka_version)"
  libs="$(kafka_libs | tail -n 1)"
  [ -d "$libs" ] || die "no Kafka jars in $libs"
  build kafka "$(ref_of kafka)" "$(debian_base_ref "$ROOT/docker/kafka.Dockerfile")" docker/kafka.Dockerfile \
    docker/kafka "$libs" -- \
    --build-arg "KAFKA_VERSION=$version" --build-arg "JAVA_PACKAGE=$KAFKA_JAVA_PACKAGE" \
    --build-context "kafka-libs=$libs" "$ROOT/docker/kafka"
}

print_sizes() {
  local name ref
  log "images (size in storage, OCI archive):"
  for name in "$@"; do
    ref="$(ref_of "$name")"
    printf '  %-46s %6s MB  %s (%s MB)\n' "$ref" \
      "$(($(pm image inspect --format '{{.Size}}' "$ref") / 1000000))" \
      "$IMAGES_DIR/$name.tar" "$(($(stat -c %s "$IMAGES_DIR/$name.tar") / 1000000))"
  done
}

ref_of() {
  case "$1" in
    postgresql) printf '%s\n' "$POSTGRES_IMAGE" ;;
    kafka) printf '%s:%s%s\n' "$KAFKA_IMAGE_REPOSITORY" "$(kafka_version)" "$KAFKA_IMAGE_SUFFIX" ;;
    *) printf 'docker.io/fastloans/%s:%s\n' "$1" "$SERVICE_TAG" ;;
  esac
}

main() {
  local wanted=("$@") services image ports built=()
  ensure_packages
  write_podman_config
  services="$(registry_images)"
  [ ${#wanted[@]} -gt 0 ] || mapfile -t wanted < <(cut -d' ' -f1 <<<"$services"; printf '%s\n' postgresql kafka)
  make_bases
  for image in "${wanted[@]}"; do
    case "$image" in
      postgresql) build_postgresql ;;
      kafka) build_kafka ;;
      *)
        ports="$(awk -v i="$image" '$1 == i { $1 = ""; sub(/^ /, ""); print }' <<<"$services")"
        [ -n "$ports" ] || die "unknown image $image (the registry has: $(cut -d' ' -f1 <<<"$services" | xargs), plus postgresql, kafka)"
        build_service "$image" "$ports"
        ;;
    esac
    built+=("$image")
  done
  print_sizes "${built[@]}"
  log "done in $((SECONDS - STARTED))s; import with: ctr -n k8s.io images import <archive>"
}

main "$@"
