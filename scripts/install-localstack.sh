#!/usr/bin/env bash
# Create .venv-localstack: LocalStack community in host mode (no image) for the integration tests
# that split AWS services between LocalStack and moto. LocalStack needs Python 3.13 and pins its
# own boto3/moto fork, so it never goes into the project's venv. Idempotent; failing here only
# makes those tests skip with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-localstack
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import localstack" 2>/dev/null; then
    exit 0
fi
py=""
for candidate in "$HOME"/.pyenv/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 \
                 /usr/bin/python3.13 "$(command -v python3.13 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import venv' 2>/dev/null; then
        py=$candidate
        break
    fi
done
if [ -z "$py" ]; then
    echo "install-localstack: no Python 3.13 found; the LocalStack tests will skip" >&2
    exit 1
fi
"$py" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    'localstack-core[runtime]==2026.3.0' 'cbor2<6' 'pyopenssl>=25,<26' \
    'cryptography>=45.0.7,<47' service-identity
