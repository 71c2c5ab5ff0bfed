#!/usr/bin/env bash
# Install what the Docker integration tests and benchmarks need, from Debian's packages:
#   docker.io        dockerd + Debian's docker CLI (the tests drive the engine with the docker SDK)
#   mmdebstrap       builds the offline base image (scripts/build-base-image.sh)
#   docker-registry  a local registry (distribution 2.8) for the push test, served on 127.0.0.1
# Idempotent: does nothing when everything is present. Does not start any daemon (the pytest
# fixtures in integration/conftest.py start dockerd loopback-safe when no engine answers).
# Needs root (apt-get). Exit code 0 when everything is installed afterwards.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v gzip >/dev/null 2>&1 || need+=(gzip)

if [ "${#need[@]}" -eq 0 ]; then
    echo "install-docker: dockerd, mmdebstrap and docker-registry already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-docker: needs root to install ${need[*]} (run it with sudo)" >&2
    exit 1
fi

echo "install-docker: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps it small; policy-rc.d stops the packages from starting services
# (there is no systemd; the fixtures start dockerd themselves with --bridge=none).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "install-docker: done ($(dockerd --version 2>/dev/null || echo 'dockerd missing'))"
