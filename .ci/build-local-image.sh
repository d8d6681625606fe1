#!/usr/bin/env bash
# Build a local container image of an engine the tests run (Prometheus, Alertmanager,
# VictoriaMetrics, the blackbox exporter) from the binary installed on this machine (Debian's packages in CI),
# for hosts that have Docker but cannot pull from a registry.
#
#   .ci/build-local-image.sh prometheus|alertmanager|victoria-metrics|blackbox-exporter
#
# The image is a `docker import` of a minimal root filesystem (no base image): the
# binary, the shared libraries `ldd` reports for it, and the layout of the official
# image (entrypoint, configuration and data paths, user, port), so that the test
# harness treats it exactly like the official one.
#
# stdout: exactly one line, the image tag (export it as <ENGINE>_IMAGE).
# Idempotent: skipped when the tag exists and was built from the same binary.
#
# Environment:
#   <ENGINE>_BIN     binary to package (default: the Debian binary on PATH), e.g. PROMETHEUS_BIN,
#                    BLACKBOX_EXPORTER_BIN
#   LOCAL_IMAGE_TAG  tag to build (default login-metrics/<engine>:<version>-debian-local)
set -euo pipefail

log() { echo "build-local-image: $*" >&2; }

engine="${1:-}"
extra_dirs=()
companions=()
# What each official image looks like:   binary on PATH | Debian package | entrypoint | user | port | data dir | default command
case "$engine" in
prometheus)
    bin_var=PROMETHEUS_BIN; binary=prometheus; package=prometheus
    entrypoint=/bin/prometheus; user=65534; port=9090; data=/prometheus; config_dir=/etc/prometheus
    cmd='["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
    default_config='global:
  scrape_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]'
    config_file=prometheus.yml
    # The official image ships promtool next to prometheus; the book runs it there.
    companions=(promtool)
    ;;
alertmanager)
    bin_var=ALERTMANAGER_BIN; binary=prometheus-alertmanager; package=prometheus-alertmanager
    entrypoint=/bin/alertmanager; user=65534; port=9093; data=/alertmanager; config_dir=/etc/alertmanager
    cmd='["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]'
    default_config='route:
  receiver: default
receivers:
  - name: default'
    config_file=alertmanager.yml
    # Debian's build reads its notification templates from here, not from the binary.
    extra_dirs=(/usr/share/prometheus/alertmanager)
    ;;
victoria-metrics)
    bin_var=VICTORIA_METRICS_BIN; binary=victoria-metrics; package=victoria-metrics
    entrypoint=/victoria-metrics-prod; user=0; port=8428; data=/victoria-metrics-data; config_dir=""
    cmd='[]'; default_config=""; config_file=""
    ;;
blackbox-exporter)
    # The official image up to v0.28.0 runs as root (the exporter's ICMP prober
    # needs it), keeps no data, and reads /etc/blackbox_exporter/config.yml.
    bin_var=BLACKBOX_EXPORTER_BIN; binary=prometheus-blackbox-exporter; package=prometheus-blackbox-exporter
    entrypoint=/bin/blackbox_exporter; user=0; port=9115; data=""; config_dir=/etc/blackbox_exporter
    cmd='["--config.file=/etc/blackbox_exporter/config.yml"]'
    default_config='modules:
  http_2xx:
    prober: http'
    config_file=config.yml
    ;;
*)
    log "usage: $0 prometheus|alertmanager|victoria-metrics|blackbox-exporter"
    exit 2
    ;;
esac

bin="${!bin_var:-$(command -v "$binary" || true)}"
if [[ -z "$bin" || ! -x "$bin" ]]; then
    log "no $binary binary (install Debian's '$package' package or set $bin_var)"
    exit 1
fi
bin="$(readlink -f "$bin")"

version="$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null || true)"           # e.g. 2.42.0+ds-5+deb12u1
if [[ -z "$version" ]]; then
    version="$("$bin" --version 2>&1 | head -n 1 | awk '{print $3}')"
fi
short_version="$(cut -d. -f1,2 <<<"${version%%[+-]*}")"                              # e.g. 2.42
TAG="${LOCAL_IMAGE_TAG:-login-metrics/${engine}:${short_version}-debian-local}"
# The binary and this script: a change to either rebuilds the image.
checksum="$(cat "$bin" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
LABEL_KEY="org.login-metrics.binary-sha256"

existing="$(docker image inspect -f "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$TAG" 2>/dev/null || true)"
if [[ "$existing" == "$checksum" ]]; then
    log "$TAG is up to date ($engine $version)"
    echo "$TAG"
    exit 0
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
root="$context/rootfs"
mkdir -p "$root/$(dirname "$entrypoint")" "$root/etc" "$root/tmp"
if [[ -n "$data" ]]; then mkdir -p "$root$data"; fi
install -m 0755 "$bin" "$root$entrypoint"

for companion in "${companions[@]}"; do
    companion_bin="$(command -v "$companion" || true)"
    if [[ -z "$companion_bin" ]]; then
        log "no $companion next to $binary (Debian's '$package' package ships it)"
        exit 1
    fi
    install -m 0755 "$(readlink -f "$companion_bin")" "$root/bin/$companion"
    log "companion /bin/$companion"
done

# Shared libraries and the dynamic loader, at the paths the binary asks for.
# ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
ldd_out="$(ldd "$bin" 2>&1 || true)"
if grep -q "not a dynamic executable" <<<"$ldd_out"; then
    log "$bin is static; no libraries to copy"
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
if [[ -n "$config_dir" ]]; then
    mkdir -p "$root$config_dir"
    printf '%s\n' "$default_config" >"$root$config_dir/$config_file"
    chmod 0644 "$root$config_dir/$config_file"
fi
for dir in "${extra_dirs[@]}"; do
    if [[ -d "$dir" ]]; then
        mkdir -p "$root$(dirname "$dir")"
        cp -a "$dir" "$root$dir"
        log "files of $dir"
    fi
done
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"

# A root filesystem tarball: everything owned by root except the data directory (if the
# engine keeps data), which belongs to the image's user, so no root privileges are
# needed to build it.
if [[ -n "$data" ]]; then
    tar -C "$root" -c --numeric-owner --owner=0 --group=0 --exclude=".$data" -f "$context/rootfs.tar" .
    tar -C "$root" -r --numeric-owner --owner="$user" --group="$user" -f "$context/rootfs.tar" ".$data"
else
    tar -C "$root" -c --numeric-owner --owner=0 --group=0 -f "$context/rootfs.tar" .
fi

log "importing $TAG from $bin ($version)"
docker import \
    --change "LABEL $LABEL_KEY=$checksum" \
    --change 'ENV PATH=/bin' \
    --change "USER $user" \
    --change "EXPOSE $port" \
    --change "WORKDIR ${data:-/}" \
    --change "ENTRYPOINT [\"$entrypoint\"]" \
    --change "CMD $cmd" \
    --message "$engine $version from $bin" \
    "$context/rootfs.tar" "$TAG" >&2

# Smoke check: the image runs its binary.
docker run --rm "$TAG" --version >&2 || docker run --rm "$TAG" -version >&2
echo "$TAG"
