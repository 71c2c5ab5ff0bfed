#!/usr/bin/env bash
# Run mldeploy's tests on this machine, installing what they need first (idempotent):
#   bash scripts/test.sh [pytest args...]
# Creates .venv with the [dev,mlserver] extras, installs the Docker engine for the image tests where
# the machine allows it (root + apt) and LocalStack in its own Python 3.13 venv, then runs pytest
# over tests/ and integration/. Integration tests whose engine or emulator cannot start are skipped
# with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,mlserver]'
# The Azure ML SDK on its own: resolved together with [dev,mlserver] pip backtracks for minutes.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[azureml]'

if [ -f scripts/install-docker.sh ] && [ "${MLDEPLOY_SKIP_DOCKER_INSTALL:-0}" != 1 ]; then
    bash scripts/install-docker.sh || echo "scripts/test.sh: Docker engine not installed; image tests will skip" >&2
fi

bash scripts/install-compose.sh >/dev/null || echo "scripts/test.sh: Docker Compose not installed; compose tests will skip" >&2
[ "${MLDEPLOY_SKIP_COMPOSE_IMAGES:-0}" = 1 ] || bash scripts/build-compose-test-images.sh --background || true  # offline stack images, awaited by integration/test_compose_live.py

if [ "${MLDEPLOY_SKIP_LOCALSTACK_INSTALL:-0}" != 1 ]; then
    bash scripts/install-localstack.sh || echo "scripts/test.sh: LocalStack not installed; its tests will skip" >&2
fi

bash scripts/install-azurite.sh || echo "scripts/test.sh: Azurite not installed; Azure ML integration tests will skip" >&2

[ "${MLDEPLOY_SKIP_SAGEMAKER_SDK_INSTALL:-0}" = 1 ] || bash scripts/install-sagemaker-sdk.sh --background || true  # SDK v2/v3 client venvs, awaited by integration/test_sagemaker_sdk.py
exec .venv/bin/python -m pytest "$@"
