#!/usr/bin/env bash
# Build a local Prometheus image from the Prometheus binary installed on this machine
# (Debian's `prometheus` package in CI), for hosts that have Docker but cannot pull
# from a registry.
#
# The image is a `docker import` of a minimal root filesystem (no base image): the
# binary, the shared libraries `ldd` reports for it, and the layout of the official
# prom/prometheus image (ENTRYPOINT /bin/prometheus, config at
# /etc/prometheus/prometheus.yml, data in /prometheus owned by nobody, USER nobody,
# port 9090). The tests treat it like any other Prometheus image.
#
# stdout: exactly one line, the image tag (export it as PROMETHEUS_IMAGE).
# Idempotent: skipped when the tag exists and was built from the same binary.
#
# Environment:
#   PROMETHEUS_BIN        binary to package (default: `prometheus` on PATH)
#   PROMETHEUS_LOCAL_TAG  tag to build (default login-metrics/prometheus:<version>-debian-local)
set -euo pipefail

log() { echo "build-prometheus-image: $*" >&2; }

PROMETHEUS_BIN="${PROMETHEUS_BIN:-$(command -v prometheus || true)}"
if [[ -z "$PROMETHEUS_BIN" || ! -x "$PROMETHEUS_BIN" ]]; then
    log "no prometheus binary (install Debian's 'prometheus' package or set PROMETHEUS_BIN)"
    exit 1
fi
PROMETHEUS_BIN="$(readlink -f "$PROMETHEUS_BIN")"

version="$("$PROMETHEUS_BIN" --version 2>&1 | head -n 1 | awk '{print $3}')"  # e.g. 2.42.0+ds
short_version="$(cut -d. -f1,2 <<<"${version%%+*}")"                           # e.g. 2.42
TAG="${PROMETHEUS_LOCAL_TAG:-login-metrics/prometheus:${short_version}-debian-local}"
checksum="$(sha256sum "$PROMETHEUS_BIN" | cut -d' ' -f1)"
LABEL_KEY="org.login-metrics.prometheus-sha256"

existing="$(docker image inspect -f "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$TAG" 2>/dev/null || true)"
if [[ "$existing" == "$checksum" ]]; then
    log "$TAG is up to date (prometheus $version)"
    echo "$TAG"
    exit 0
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
root="$context/rootfs"
mkdir -p "$root"/{bin,etc/prometheus,prometheus,tmp}

install -m 0755 "$PROMETHEUS_BIN" "$root/bin/prometheus"

# Shared libraries and the dynamic loader, at the paths the binary asks for.
# ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
ldd_out="$(ldd "$PROMETHEUS_BIN" 2>&1 || true)"
if grep -q "not a dynamic executable" <<<"$ldd_out"; then
    log "$PROMETHEUS_BIN is static; no libraries to copy"
else
    while read -r lib; do
        [[ -n "$lib" ]] || continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
        log "library $lib"
    done < <(awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
fi

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/home:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
GROUP
echo "hosts: files dns" >"$root/etc/nsswitch.conf"

# The same default configuration as the official image: Prometheus scrapes itself.
cat >"$root/etc/prometheus/prometheus.yml" <<'YAML'
global:
  scrape_interval: 15s
  evaluation_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
YAML
chmod 0644 "$root/etc/prometheus/prometheus.yml" "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"

# A root filesystem tarball: everything owned by root except /prometheus (nobody, like
# the official image), so no root privileges are needed to build it.
tar -C "$root" -c --numeric-owner --owner=0 --group=0 --exclude=./prometheus -f "$context/rootfs.tar" .
tar -C "$root" -r --numeric-owner --owner=65534 --group=65534 -f "$context/rootfs.tar" ./prometheus

log "importing $TAG from $PROMETHEUS_BIN ($version)"
docker import \
    --change "LABEL $LABEL_KEY=$checksum" \
    --change 'ENV PATH=/bin' \
    --change 'USER 65534' \
    --change 'EXPOSE 9090' \
    --change 'WORKDIR /prometheus' \
    --change 'ENTRYPOINT ["/bin/prometheus"]' \
    --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]' \
    --message "prometheus $version from $PROMETHEUS_BIN" \
    "$context/rootfs.tar" "$TAG" >&2

# Smoke check: the image runs and reports its version.
docker run --rm "$TAG" --version >&2
echo "$TAG"
