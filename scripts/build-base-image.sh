#!/usr/bin/env bash
# Build an offline base image (Debian bookworm + python3 + python3-venv) from Debian's packages,
# without pulling anything from a container registry:
#   mmdebstrap --variant=essential --include=python3,python3-venv,... | docker import
# (essential, not apt: no package manager in the image, ~10 MB less; libstdc++6 is included because
# manylinux wheels expect it from the system; glibc's gconv modules, docs and locales are left out;
# the standard library's bytecode is kept, since compiling it at every start would slow the server.)
# The image is cached as `docker save | gzip -1` under the cache dir and loaded from there when the
# engine does not have it; it is rebuilt only when neither the engine nor the cache has it.
#
# Usage: scripts/build-base-image.sh [IMAGE]      (default: mldeploy-base:bookworm-v2)
# Env:   MLDEPLOY_CACHE_DIR   cache dir (default: ${XDG_CACHE_HOME:-~/.cache}/mldeploy)
#        MLDEPLOY_BASE_REBUILD=1   ignore the engine's copy and the cache
#        DOCKER               docker CLI to use (default: docker)
# Prints the image reference on its last line of stdout. Needs root (mmdebstrap) and an engine.
set -euo pipefail

image="${1:-mldeploy-base:bookworm-v2}"
docker_cli="${DOCKER:-docker}"
cache_dir="${MLDEPLOY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mldeploy}/base-images"
cache_file="$cache_dir/$(printf '%s' "$image" | tr '/:' '__').tar.gz"
sources="${MLDEPLOY_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}"

log() { echo "build-base-image: $*" >&2; }

if ! "$docker_cli" info >/dev/null 2>&1; then
    log "no Docker engine answers (start dockerd first; see scripts/install-docker.sh)"
    exit 1
fi

# One build at a time (the test session and the Compose images' background builder may both ask):
# the second waits, then finds the image in the engine.
mkdir -p "$cache_dir"
exec 9>"$cache_dir/.build.lock"
flock 9

if [ "${MLDEPLOY_BASE_REBUILD:-0}" != 1 ]; then
    if "$docker_cli" image inspect "$image" >/dev/null 2>&1; then
        log "engine already has $image"
        echo "$image"
        exit 0
    fi
    if [ -s "$cache_file" ]; then
        log "loading $image from $cache_file"
        if gzip -dc "$cache_file" | "$docker_cli" load >/dev/null \
            && "$docker_cli" image inspect "$image" >/dev/null 2>&1; then
            echo "$image"
            exit 0
        fi
        log "cache file is unusable; rebuilding"
        rm -f "$cache_file"
    fi
fi

command -v mmdebstrap >/dev/null 2>&1 || {
    log "mmdebstrap is missing (run scripts/install-docker.sh)"
    exit 1
}
mirror_args=()
if [ -f "$sources" ]; then mirror_args=("$sources"); fi

start=$(date +%s)
log "building $image with mmdebstrap (about 30 s)"
# Docs, manuals and locales are excluded; apt lists and caches are removed from the tree.
# setsid: when writing the tarball fails (say `docker import` died), mmdebstrap sends SIGHUP to
# its whole process group; in a group of its own that cannot reach the caller (.ci/run).
setsid --wait mmdebstrap --quiet --variant=essential --architectures=amd64 \
    --include=python3,python3-venv,ca-certificates,libstdc++6 \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*' \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log' \
    bookworm - "${mirror_args[@]}" \
    | "$docker_cli" import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        --message "mldeploy offline base: Debian bookworm + python3 (mmdebstrap)" \
        - "$image" >/dev/null
log "built $image in $(( $(date +%s) - start )) s"

mkdir -p "$cache_dir"
tmp="$cache_file.tmp.$$"
"$docker_cli" save "$image" | gzip -1 > "$tmp"
mv -f "$tmp" "$cache_file"
log "cached at $cache_file ($(du -h "$cache_file" | cut -f1))"
echo "$image"
