#!/usr/bin/env bash
# Build the compose target's offline test images (mldeploy.plugins.compose.testing): the Debian
# image (PostgreSQL + Prometheus from Debian's packages) and the Python image (the MLflow tracking
# server + an S3 store on moto's server), on the offline base image. Nothing is pulled.
#   bash scripts/build-compose-test-images.sh [--background]
# Idempotent: an image the engine has is kept. Markers in .cache/compose-test-images/: `building`
# (the builder's pid) while it runs, then `ready` (the image references and build seconds) or
# `failed`; the log is `log`. --background returns at once; integration/test_compose_live.py waits
# for a marker while the builder lives.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/compose-test-images

if [ "${1:-}" = --background ]; then
    mkdir -p "$dir"
    rm -f "$dir/ready" "$dir/failed"
    : > "$dir/building"
    # its own session: nothing it runs can signal the caller's process group (mmdebstrap does)
    setsid nohup bash "$0" >/dev/null 2>&1 < /dev/null &
    exit 0
elif [ $# -gt 0 ]; then
    echo "usage: $0 [--background]" >&2; exit 2
fi

mkdir -p "$dir"
rm -f "$dir/ready" "$dir/failed"
echo $$ > "$dir/building"
start=$SECONDS
# scripts/test.sh starts this before any engine runs (the test session starts dockerd): wait for one.
engine_wait=${MLDEPLOY_COMPOSE_ENGINE_WAIT:-1200}
until docker info >/dev/null 2>&1; do
    if [ $((SECONDS - start)) -ge "$engine_wait" ]; then
        echo "build-compose-test-images.sh: no Docker engine answered in $engine_wait s" > "$dir/log"
        touch "$dir/failed"; rm -f "$dir/building"; exit 1
    fi
    sleep 3
done
build() {
    local base
    base=$(bash scripts/build-base-image.sh | tail -n 1) && [ -n "$base" ] || return 1
    .venv/bin/python -m mldeploy.plugins.compose.testing build "$base" > "$dir/ready.tmp"
}
if build >"$dir/log" 2>&1; then
    mv "$dir/ready.tmp" "$dir/ready"
    echo "build-compose-test-images.sh: ready in $((SECONDS - start)) s" >> "$dir/log"
else
    touch "$dir/failed"
    echo "build-compose-test-images.sh: failed, see $dir/log; the compose stack tests build in the foreground" >&2
fi
rm -f "$dir/building" "$dir/ready.tmp"
