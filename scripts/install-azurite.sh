#!/usr/bin/env bash
# Install Azurite (Microsoft's Azure Storage emulator, npm `azurite@3`) into .azurite/ for the
# Azure ML integration tests' model uploads. Idempotent; without npm it exits 1 and those tests
# skip with the reason. The tests start it with --disableTelemetry on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.azurite
if [ -x "$DIR/node_modules/.bin/azurite-blob" ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "install-azurite: npm not found; the Azure ML integration tests will skip" >&2
    exit 1
fi
mkdir -p "$DIR"
npm install --silent --no-audit --no-fund --prefix "$DIR" 'azurite@3' >/dev/null
test -x "$DIR/node_modules/.bin/azurite-blob"
